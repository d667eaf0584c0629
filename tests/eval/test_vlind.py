"""VLind-Bench: the True/False parser, the pipelined gating by hand, loading the image tree, an end-to-end run."""

from __future__ import annotations

import pytest

from unprior.config import from_dict
from unprior.eval.benchmarks.vlind import parse_true_false, vlind_scores
from unprior.eval.common import check_images
from unprior.eval.config import EvalConfig
from unprior.eval.registry import DataError, make_benchmark
from unprior.eval.runner import run_eval

from .helpers import touch_images, write_json

P, T, F, NA = ("True", "False"), "True", "False", "NA"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("True", T), ("False.", F), ("true, the statement holds", T), ("The statement is false.", F),
     ("Answer:\nTrue", T), ("It is not true", T), ("Truly false", F), ("TRUE", T), ("Yes", NA), ("", NA),
     ("True/False", NA)],
)
def test_parse_true_false(answer, expected):
    assert parse_true_false(answer) == expected


def test_pipelined_gating_by_hand():
    """Five instances (CK, VP, CB pairs; LP pairs per good image):

    1. everything passes; 2 LP images pass                     a b c cpass bc; d 2/2, dpass 2/2
    2. CK fails (True, True)                                    - b c -     -  ; d 1/1, dpass 0
    3. VP fails (NA, False); LP 1 of 2                          a - c cpass -  ; d 1/2, dpass 0
    4. CB fails (False, True)                                   a b - -     -  ; d 1/1, dpass 0
    5. all pass; LP 1 of 3 (one NA, one True/True)              a b c cpass bc; d 1/3, dpass 1/3

    S_CK = 4/5, S_VP = 4/5, S_CB = cpass/a = 3/4, S_LP = (1 + 1/3) / bc (2) = 2/3,
    CB_acc = 4/5, LP_acc = (1 + 1 + 1/2 + 1 + 1/3) / 5.
    """
    instances = [
        {"ck": P, "vp": P, "cb": P, "lp": [P, P]},
        {"ck": (T, T), "vp": P, "cb": P, "lp": [P]},
        {"ck": P, "vp": (NA, F), "cb": P, "lp": [P, (F, F)]},
        {"ck": P, "vp": P, "cb": (F, T), "lp": [P]},
        {"ck": P, "vp": P, "cb": P, "lp": [P, (NA, F), (T, T)]},
    ]
    s = vlind_scores(instances)
    assert s["s_ck"] == pytest.approx(80.0) and s["s_vp"] == pytest.approx(80.0)
    assert s["s_cb"] == pytest.approx(75.0)
    assert s["s_lp"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert s["cb_acc"] == pytest.approx(80.0)
    assert s["lp_acc"] == pytest.approx(100 * (1 + 1 + 0.5 + 1 + 1 / 3) / 5)


def test_zero_denominators_give_zero():
    # CK never passes: S_CB's denominator is 0; nothing reaches LP: S_LP's denominator is 0
    s = vlind_scores([{"ck": (F, T), "vp": P, "cb": P, "lp": [P]}])
    assert s["s_cb"] == 0.0 and s["s_lp"] == 0.0 and s["lp_acc"] == 100.0
    assert vlind_scores([]) == {k: 0.0 for k in ("s_ck", "s_vp", "s_cb", "s_lp", "cb_acc", "lp_acc")}


def _instance(concept, cid, votes, best="1"):
    return {"concept": concept, "context_id": cid, "context": f"{concept} are purple", "factual_context":
            f"{concept} are green", "true_statement": f"{concept} are purple.", "false_statement":
            f"{concept} are green.", "existent_noun": "a leaf", "non-existent_noun": "a car",
            "aggregated_human_label_good_images": votes, "best_img_id": best}


def _vlind_data(tmp_path):
    data = write_json(tmp_path / "vlind" / "data.json", [
        _instance("leaves", 0, {"0": 1, "1": 3, "5": 2, "9": 0}),
        _instance("grass", 1, {"0": 1}),  # no good image: skipped, as in the reference
        _instance("sky", 2, {"4": 2}, best="4"),
    ])
    names = ["factual/leaves/0_leaves are green/0.jpg", "counterfactual/leaves/0_leaves are purple/1.jpg",
             "counterfactual/leaves/0_leaves are purple/5.jpg", "factual/sky/2_sky are green/0.jpg",
             "counterfactual/sky/2_sky are purple/4.jpg"]
    return data, touch_images(tmp_path / "vlind" / "images", names)


def test_load_builds_four_tests_per_instance(tmp_path):
    data, images = _vlind_data(tmp_path)
    bench = make_benchmark("vlind", {"data": str(data), "image_root": str(images)})
    items = bench.load()
    ids = [it.id for it in items]
    assert ids[:10] == ["0000/ck1", "0000/ck2", "0000/vp1", "0000/vp2", "0000/cb1", "0000/cb2", "0000/lp1/1",
                        "0000/lp2/1", "0000/lp1/5", "0000/lp2/5"]
    assert ids[10:] == ["0002/ck1", "0002/ck2", "0002/vp1", "0002/vp2", "0002/cb1", "0002/cb2", "0002/lp1/4",
                        "0002/lp2/4"]
    by_id = {it.id: it for it in items}
    assert by_id["0000/ck1"].prompt == ("Statement: leaves are green.\nBased on the common sense, is the given "
                                        "statement true or false? Only respond in True or False.")
    assert by_id["0000/ck1"].image.parts[-2:] == ("0_leaves are green", "0.jpg")
    assert by_id["0000/vp2"].prompt.startswith("Statement: There is a car in the given image.\nBased on the image")
    assert by_id["0000/cb1"].prompt.startswith("Context: leaves are purple\nStatement: leaves are purple.\n")
    assert "Forget real-world common sense" in by_id["0000/lp1/5"].prompt
    assert by_id["0000/vp1"].image.name == "1.jpg"
    # NaPO's variant: the most-voted good image; a style filter keeps only illustration ids 4-7
    most = make_benchmark("vlind", {"data": str(data), "image_root": str(images), "best_image": "most_votes"})
    assert {it.id: it for it in most.load()}["0000/vp1"].image.name == "1.jpg"
    styled = make_benchmark("vlind", {"data": str(data), "image_root": str(images), "style": "illustration"})
    assert sorted({it.target["instance"] for it in styled.load()}) == ["0000", "0002"]
    assert bench.head(items, 1) == items[:10]  # limit counts whole instances


def test_missing_image_names_the_row(tmp_path):
    data, images = _vlind_data(tmp_path)
    (images / "counterfactual/sky/2_sky are purple/4.jpg").unlink()
    items = make_benchmark("vlind", {"data": str(data), "image_root": str(images)}).load()  # checked when used
    with pytest.raises(DataError, match=r"data.json\[2\]: image not found: .*4.jpg"):
        check_images(items)


def test_vlind_end_to_end(tmp_path, quiet_console):
    data, images = _vlind_data(tmp_path)
    cfg = from_dict(EvalConfig, {"benchmark": "vlind", "out": str(tmp_path / "run"),
                                 "options": {"data": str(data), "image_root": str(images)}})
    # A language-prior-bound model: right on common sense (CK), perception (VP) and context (CB), but with only
    # the image (LP) it answers from the prior ("green" is true): every test passes except LP.
    def gen(reqs):
        out = []
        for r in reqs:
            statement = r.prompt.split("\n")[1 if r.prompt.startswith("Context") else 0]
            if r.prompt.startswith("Context"):
                out.append("True" if "purple" in statement else "False")
            elif "There is" in statement:
                out.append("True" if "leaf" in statement else "False")
            else:  # CK and LP: the prior
                out.append("True" if "green" in statement else "False")
        return out

    res = run_eval(cfg, gen, console=quiet_console)
    m = res["metrics"]
    assert m["s_ck"] == 100.0 and m["s_vp"] == 100.0 and m["s_cb"] == 100.0
    assert m["s_lp"] == 0.0 and m["lp_acc"] == 0.0
    assert res["headline"] == ["s_cb", "s_lp"]
