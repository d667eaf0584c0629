"""AMBER: the discriminative part exactly ("No" positive, 0.001 starts, rounded P/R), the generative matching loop,
and the labelled approximation when the NLP resources are missing."""

from __future__ import annotations

import json

import pytest

from unprior.config import ConfigError, from_dict
from unprior.eval.benchmarks.amber import (
    Resources,
    builtin_nouns,
    discriminative_counts,
    discriminative_metrics,
    generative_metrics,
    parse_yes_no,
    score_description,
)
from unprior.eval.config import EvalConfig
from unprior.eval.registry import DataError, make_benchmark
from unprior.eval.runner import run_eval

from .helpers import ScriptedGenerator, touch_images, write_json

RELATION = {"dog": ["puppy"], "person": ["man", "woman"], "man": ["person"], "cat": [], "frisbee": [],
            "grass": ["ground"], "ground": ["floor"], "car": ["light"]}
RES = Resources(RELATION, frozenset({"light", "orange"}))


def test_parse_yes_no():
    assert [parse_yes_no(a) for a in ("Yes", "No", "Yes.", "yes", " No", "")] == ["Yes", "No"] + ["other"] * 4
    assert [parse_yes_no(a, "normalized") for a in ("Yes.", "no, it is not", "Nope", "maybe")] == [
        "Yes", "No", "No", "other"]


def test_discriminative_by_hand():
    """4 questions: (truth, answer) = (no, No), (no, Yes), (yes, Yes), (yes, No.) — "No." is not "No".

    correct = 2 of 4 -> 2 / 4.001; truth "no" = 2, answered No among them = 1 -> recall 1 / 2.001;
    answered "No" = 1 (the "No." does not count), of which truth no = 1 -> precision 1 / 1.001.
    P = 99.9, R = 50.0 (rounded first), F1 = 2PR / (P + R + 1e-4) on fractions.
    """
    c = {"correct_score": 0, "correct_num": 0.001, "no_score": 0, "no_num": 0.001, "ans_no_score": 0,
         "ans_no_num": 0.001}
    for truth, answer in [("no", "No"), ("no", "Yes"), ("yes", "Yes"), ("yes", "No.")]:
        discriminative_counts(parse_yes_no(answer), truth, c)
    m = discriminative_metrics(c)
    assert m["accuracy"] == round(2 / 4.001 * 100, 1) == 50.0
    assert m["precision"] == round(1 / 1.001 * 100, 1) == 99.9
    assert m["recall"] == round(1 / 2.001 * 100, 1) == 50.0
    assert m["f1"] == round(2 * 0.999 * 0.5 / (0.999 + 0.5 + 0.0001) * 100, 1) == 66.6


def test_generative_matching_follows_reference_order():
    """truth [man, person, grass], hallu [cat, frisbee]; nouns person, ground, light, cat, dog, tree.

    - "tree" is not in the vocabulary (keys and values of relation.json): dropped.
    - "person" first matches man's association list, so it covers *man*, not *person* (reference quirk).
    - "ground" is grass's association: covers *grass*.
    - "light" is a global safe word: counted, not hallucinated.
    - "cat" is a hallu object: hit, and hallucinated.  "dog" matches nothing: hallucinated.
    """
    s = score_description(["person", "ground", "light", "cat", "dog", "tree"], ["man", "person", "grass"],
                          ["cat", "frisbee"], RES)
    assert s["nouns"] == ["person", "ground", "light", "cat", "dog"]
    assert s["hallucinated"] == ["cat", "dog"]
    assert s["covered"] == ["grass", "man"]
    assert s["hit"] == ["cat"]
    # word-vector similarity (stubbed): "dog" similar to "man" rescues it; "cat" similar to "frisbee" hits both
    similar = {("dog", "man"), ("cat", "frisbee")}
    s = score_description(["dog", "cat"], ["man"], ["frisbee", "cat"], RES, lambda a, b: (a, b) in similar)
    assert s["hallucinated"] == ["cat"] and s["covered"] == ["man"] and s["hit"] == ["cat", "frisbee"]


def test_generative_metrics_by_hand():
    """Two responses: the first as above (5 nouns, 2 hallucinated, 2 of 3 truth covered, 1 of 2 hallu hit), the
    second with no nouns (1 truth, 1 hallu). Every denominator starts at 0.001:
    CHAIR = 2/5.001, Cover = 2/4.001, Hal = 100 - 1/2.001 (one response of two is clean), Cog = 1/3.001."""
    first = score_description(["person", "ground", "light", "cat", "dog"], ["man", "person", "grass"],
                              ["cat", "frisbee"], RES)
    second = score_description([], ["car"], ["dog"], RES)
    m = generative_metrics([first, second])
    assert m == {"chair": round(2 / 5.001 * 100, 1), "cover": round(2 / 4.001 * 100, 1),
                 "hal": round(100 - 1 / 2.001 * 100, 1), "cog": round(1 / 3.001 * 100, 1)}
    assert m == {"chair": 40.0, "cover": 50.0, "hal": 50.0, "cog": 33.3}


def test_builtin_nouns_lemmatize_and_keep_case():
    vocab = RES.vocabulary
    assert builtin_nouns("Dogs chase two cats and puppies on the grass.", vocab) == [
        "Dogs", "chase", "two", "cat", "and", "puppy", "on", "the", "grass", "."]


def _amber_data(tmp_path):
    data = tmp_path / "amber" / "data"
    write_json(data / "relation.json", RELATION)
    (data / "safe_words.txt").write_text("light\norange")
    annotations = [
        {"id": 1, "type": "generative", "truth": ["man", "grass"], "hallu": ["cat", "frisbee"]},
        {"id": 2, "type": "generative", "truth": ["dog"], "hallu": ["car"]},
        {"id": 3, "type": "discriminative-hallucination", "truth": "no"},
        {"id": 4, "type": "discriminative-attribute-state", "truth": "yes"},
        {"id": 5, "type": "discriminative-attribute-number", "truth": "no"},
        {"id": 6, "type": "discriminative-attribute-action", "truth": "yes"},
        {"id": 7, "type": "relation", "truth": "no"},
        {"id": 8, "type": "discriminative-relation", "truth": "yes"},
    ]
    write_json(data / "annotations.json", annotations)
    queries = [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
               {"id": 2, "image": "AMBER_2.jpg", "query": "Describe this image."},
               {"id": 3, "image": "AMBER_1.jpg", "query": "Is there a cat in this image?"},
               {"id": 4, "image": "AMBER_1.jpg", "query": "Is the grass green in this image?"},
               {"id": 5, "image": "AMBER_1.jpg", "query": "Are there two men in this image?"},
               {"id": 6, "image": "AMBER_1.jpg", "query": "Is the man running in this image?"},
               {"id": 7, "image": "AMBER_2.jpg", "query": "Is there direct contact between the dog and car?"},
               {"id": 8, "image": "AMBER_2.jpg", "query": "Is there direct contact between the dog and ground?"}]
    write_json(data / "query" / "query_all.json", queries)
    images = touch_images(tmp_path / "amber" / "images", ["AMBER_1.jpg", "AMBER_2.jpg"])
    return data, images


def test_amber_run_all_tasks_labelled_approximate(tmp_path, quiet_console):
    data, images = _amber_data(tmp_path)
    cfg = from_dict(EvalConfig, {"benchmark": "amber", "out": str(tmp_path / "run"),
                                 "options": {"data_dir": str(data), "image_root": str(images)}})
    gen = ScriptedGenerator({"Describe": "A man and a dog on the grass.", "cat": "No", "green": "Yes",
                             "two men": "Yes", "running": "Yes", "and car": "No", "and ground": "Yes"})
    res = run_eval(cfg, gen, console=quiet_console)
    m = res["metrics"]
    # image 1 (truth man, grass): man, grass covered, dog hallucinated; image 2 (truth dog): dog covered, man and
    # grass hallucinated. 3 of 6 nouns hallucinated, every truth object covered, both responses hallucinate.
    assert m["chair"] == round(3 / 6.001 * 100, 1) and m["cover"] == round(3 / 3.001 * 100, 1)
    assert m["hal"] == round(100 - 0 / 2.001 * 100, 1) and m["cog"] == 0.0
    assert m["existence/accuracy"] == round(1 / 1.001 * 100, 1)
    assert m["number/accuracy"] == 0.0  # truth no, answered Yes
    # attribute pools three counters, each started at 0.001: 2 correct of 3 questions
    assert m["attribute/accuracy"] == round(2 / 3.003 * 100, 1)
    # the overall discriminative counter starts once at 0.001: 5 correct of 6
    assert m["discriminative/accuracy"] == round(5 / 6.001 * 100, 1)
    assert m["amber_score"] == pytest.approx(((100 - m["chair"]) + m["discriminative/f1"]) / 2)
    assert res["provenance"]["approximate"] is True
    assert "no POS tagger" in res["provenance"]["approximation"]
    assert res["headline"] == ["chair", "cover", "hal", "cog", "discriminative/f1", "amber_score"]


def test_amber_discriminative_only_is_exact(tmp_path):
    data, images = _amber_data(tmp_path)
    bench = make_benchmark("amber", {"data_dir": str(data), "image_root": str(images), "task": "discriminative",
                                     "prompt_suffix": " Answer yes or no."})
    items = bench.load()
    assert [it.id for it in items] == ["3", "4", "5", "6", "7", "8"]
    assert items[0].prompt == "Is there a cat in this image? Answer yes or no."
    assert bench.provenance()["approximate"] is False
    assert [m.name for m in bench.metrics()][:4] == ["discriminative/accuracy", "discriminative/precision",
                                                     "discriminative/recall", "discriminative/f1"]


def test_amber_data_errors(tmp_path):
    data, images = _amber_data(tmp_path)
    write_json(data / "annotations.json", [{"id": 1, "type": "generative", "truth": ["unicorn"], "hallu": []}])
    write_json(data / "query" / "query_all.json", [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe."},
                                                   {"id": 9, "image": "AMBER_1.jpg", "query": "?"}])
    bench = make_benchmark("amber", {"data_dir": str(data), "image_root": str(images)})
    with pytest.raises(DataError, match=r"annotations.json\[0\]: objects \['unicorn'\] are not keys of relation"):
        bench.load()
    bench = make_benchmark("amber", {"data_dir": str(data), "image_root": str(images), "task": "discriminative"})
    with pytest.raises(DataError, match=r"query_all.json\[1\]: id 9 has no entry at position 8"):
        bench.load()
    (data / "relation.json").unlink()
    with pytest.raises(DataError, match=r"AMBER relation\.json: file not found"):
        make_benchmark("amber", {"data_dir": str(data), "image_root": str(images)}).load()
    with pytest.raises(ConfigError, match="spacy_model"):
        make_benchmark("amber", {"data_dir": "d", "image_root": "i", "similarity": "spacy"})


def test_amber_groups_without_items_read_na(tmp_path, quiet_console):
    """Issue 21 item 4: a limit that keeps only generative items leaves the discriminative groups n/a (null in
    results.json, "n/a" in the summary and in compare), and no amber_score is made from a missing part."""
    import io

    from rich.console import Console

    from unprior.eval.compare import compare_table, format_table, load_run

    data, images = _amber_data(tmp_path)
    cfg = from_dict(EvalConfig, {"benchmark": "amber", "out": str(tmp_path / "run"), "limit": 2,
                                 "options": {"data_dir": str(data), "image_root": str(images)}})
    out = io.StringIO()
    res = run_eval(cfg, ScriptedGenerator({"Describe": "A man and a dog on the grass."}),
                   console=Console(file=out, width=200))
    m = res["metrics"]
    assert res["n_items"] == 2 and m["chair"] is not None
    for group in ("discriminative", "existence", "attribute", "state", "number", "action", "relation"):
        assert all(m[f"{group}/{k}"] is None for k in ("accuracy", "precision", "recall", "f1"))
    assert m["amber_score"] is None
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert saved["discriminative/f1"] is None and saved["amber_score"] is None
    assert "discriminative/f1 n/a" in out.getvalue() and "amber_score n/a" in out.getvalue()
    table = format_table(*compare_table([load_run(tmp_path / "run")]))
    assert "n/a" in table.splitlines()[-1]
    # only discriminative items: the generative metrics are n/a instead
    disc = from_dict(EvalConfig, {"benchmark": "amber", "out": str(tmp_path / "disc"),
                                  "options": {"data_dir": str(data), "image_root": str(images),
                                              "query_file": str(_queries(data, range(3, 9)))}})
    m = run_eval(disc, ScriptedGenerator(default="No"), console=quiet_console)["metrics"]
    assert m["chair"] is None and m["cover"] is None and m["amber_score"] is None
    assert m["discriminative/f1"] is not None


def _queries(data, ids):
    rows = [q for q in json.loads((data / "query" / "query_all.json").read_text()) if q["id"] in ids]
    return write_json(data / "query" / "some.json", rows)


def test_amber_nltk_without_data_fails_before_generation(tmp_path, quiet_console, monkeypatch):
    pytest.importorskip("nltk")
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no-nltk-data")])
    data, images = _amber_data(tmp_path)
    cfg = from_dict(EvalConfig, {"benchmark": "amber", "out": str(tmp_path / "run"),
                                 "options": {"data_dir": str(data), "image_root": str(images), "nlp": "nltk"}})
    gen = ScriptedGenerator()
    with pytest.raises(DataError, match=r"options.nlp: nltk needs the NLTK data \['punkt_tab', "):
        run_eval(cfg, gen, console=quiet_console)
    assert gen.seen == []
    # discriminative only: no nouns to extract, so NLTK is not needed
    disc = make_benchmark("amber", {"data_dir": str(data), "image_root": str(images), "nlp": "nltk",
                                    "task": "discriminative"})
    assert len(disc.load()) == 6
