"""``unprior pairs noise``: planted negatives are correct and differ from the chosen answer (in form, or in wording
only), flipped pairs are reversed into rows of their own, all at the asked rate."""

from __future__ import annotations

import json

import pytest

from unprior.config import ConfigError, from_dict
from unprior.formats.pairs import Negative, PairRow, read_pairs, write_pairs
from unprior.io import read_jsonl
from unprior.pairs.filters import filter_rows
from unprior.pairs.noise import (
    NoiseConfig,
    flip_pairs,
    inject_noise,
    plant_noise,
    same_form_noise,
    world_rewrite,
    world_same_form,
)
from unprior.world.build import build_world
from unprior.world.config import WorldConfig
from unprior.world.metrics import parse_colour, parse_objects, parse_yes_no
from unprior.world.phrasings import answer_from_meta

OBJECTS = [{"category": "apple", "colour": "red"}, {"category": "banana", "colour": "blue"}]


def _row(i: int, task: str, chosen: str, meta: dict, kinds=("language_bias", "vision_bias", "error_injection")):
    negatives = [Negative(f"wrong {k} {i}", k) for k in kinds]
    return PairRow(f"r{i}", None, "q", chosen, negatives, {"task": task, **meta})


def test_world_rewrite_is_correct_and_different():
    describe = _row(0, "describe", "A red apple and a blue banana.", {"objects": OBJECTS})
    assert world_rewrite(describe) == "A blue banana and a red apple."
    single = _row(1, "describe", "An orange whale.", {"objects": [{"category": "whale", "colour": "orange"}]})
    assert world_rewrite(single) == "There is an orange whale."
    attribute = _row(2, "attribute", "The banana is blue.", {"objects": OBJECTS, "colour": "blue"})
    assert world_rewrite(attribute) == "It is blue."
    assert world_rewrite(_row(3, "exists", "Yes, there is an apple.", {})) == "Yes."
    assert world_rewrite(_row(4, "chat", "Hello.", {})) is None


def test_plant_noise_rate_per_kind_and_provenance():
    rows = [_row(i, "attribute", "The apple is red.", {"colour": "red"}) for i in range(40)]
    noised, summary = plant_noise(rows, 0.25, ["language_bias", "vision_bias"], world_rewrite, seed=3)
    assert summary["replaced"] == {"language_bias": 10, "vision_bias": 10}
    assert summary["realised_rate"]["language_bias"] == 0.25
    planted = [n for r in noised for n in r.negatives if n.provenance.get("noise")]
    assert len(planted) == 20 and all(n.text == "It is red." for n in planted)
    assert all(n.provenance["replaced"].startswith("wrong") for n in planted)
    assert all(n.kind != "error_injection" for n in planted)  # the original pair stays clean
    again, _ = plant_noise(rows, 0.25, ["language_bias", "vision_bias"], world_rewrite, seed=3)
    assert again == noised  # seeded
    clean, summary0 = plant_noise(rows, 0.0, ["language_bias"], world_rewrite, seed=0)
    assert clean == rows and summary0["replaced"] == {"language_bias": 0}


def test_plant_noise_refuses_a_rate_it_cannot_reach():
    rows = [_row(0, "chat", "Hi.", {}), _row(1, "attribute", "The apple is red.", {"colour": "red"})]
    with pytest.raises(ValueError, match="only 1 of 2"):
        plant_noise(rows, 0.9, ["language_bias"], world_rewrite, seed=0)


def test_inject_noise_writes_a_pairs_file_and_counts(tmp_path):
    rows = [_row(i, "describe", "A red apple and a blue banana.", {"objects": OBJECTS}) for i in range(10)]
    src = tmp_path / "pairs.parquet"
    write_pairs(rows, src, image_root=tmp_path)
    summary = inject_noise(NoiseConfig(pairs=str(src), out=str(tmp_path / "noisy" / "pairs.parquet"), rate=0.3,
                                       kinds=["vision_bias"]))
    assert summary["replaced"] == {"vision_bias": 3}
    out = read_pairs(tmp_path / "noisy" / "pairs.parquet")
    assert sum(n.text == "A blue banana and a red apple." for r in out for n in r.negatives) == 3
    assert json.loads((tmp_path / "noisy" / "noise.json").read_text())["source"] == str(src)
    assert read_pairs(src) == rows  # the input is untouched


def test_noise_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="rate"):
        from_dict(NoiseConfig, {"pairs": "a.parquet", "out": "b.parquet", "rate": 1.5})
    with pytest.raises(ConfigError, match="out"):
        from_dict(NoiseConfig, {"pairs": "a.parquet", "out": "a.parquet"})
    with pytest.raises(ConfigError, match="kinds"):
        from_dict(NoiseConfig, {"pairs": "a.parquet", "out": "b.parquet", "kinds": ["bogus"]})


# ---------------------------------------------------------------------------------------------------- flip


def test_flip_reverses_the_drawn_pairs_into_rows_of_their_own():
    rows = [_row(i, "attribute", "The apple is red.", {"colour": "red"}) for i in range(40)]
    flipped, summary = flip_pairs(rows, 0.25, ["language_bias", "vision_bias"], seed=3)
    assert summary["replaced"] == {"language_bias": 10, "vision_bias": 10}
    assert summary["rows_added"] == 20 and summary["rows_dropped"] == 0 and len(flipped) == 60
    by_id = {r.id: r for r in flipped}
    new = [r for r in flipped if "-flip" in r.id]
    for row in new:
        (truth,) = row.negatives
        source = by_id[truth.provenance["source_row"]]
        assert truth.text == "The apple is red." and row.chosen == f"wrong {truth.kind} {source.id[1:]}"
        assert truth.provenance["noise"] == "flip" and row.meta == source.meta and row.prompt == source.prompt
        assert truth.kind not in {n.kind for n in source.negatives}  # the pair moved, it is not also kept clean
        assert flipped.index(row) > flipped.index(source)  # written right after its source row
    assert sum(len(r.negatives) for r in flipped) == sum(len(r.negatives) for r in rows)
    assert all(n.text.startswith("wrong") for r in flipped if "-flip" not in r.id for n in r.negatives)
    assert flip_pairs(rows, 0.25, ["language_bias", "vision_bias"], seed=3)[0] == flipped  # seeded
    assert flip_pairs(rows, 0.0, ["language_bias"], seed=0)[0] == rows


def test_flip_of_a_rows_only_negative_swaps_the_row():
    rows = [_row(i, "exists", "Yes, there is a pig.", {}, kinds=("language_bias",)) for i in range(4)]
    flipped, summary = flip_pairs(rows, 0.5, ["language_bias"], seed=0)
    assert summary["rows_dropped"] == 2 and len(flipped) == 4
    swapped = [r for r in flipped if "-flip" in r.id]
    assert [(r.chosen.split()[0], r.negatives[0].text) for r in swapped] == [("wrong", "Yes, there is a pig.")] * 2


# ---------------------------------------------------------------------------------------------------- same form


def _phrased(i: int, task: str, meta: dict, phrasing: int) -> PairRow:
    meta = {**meta, "phrasing": phrasing, "phrasings": 3}
    return _row(i, task, answer_from_meta(task, meta, phrasing), meta)


def test_same_form_negatives_are_other_phrasings_of_the_chosen_answer():
    rows = [_phrased(i, "attribute", {"target": "banana", "colour": "blue", "objects": OBJECTS}, i % 3)
            for i in range(30)]
    rows += [_phrased(30 + i, "exists", {"target": "pig", "label": "no", "objects": OBJECTS}, i % 3)
             for i in range(30)]
    noised, summary = same_form_noise(rows, 0.5, ["language_bias", "vision_bias"], seed=1)
    assert summary["replaced"] == {"language_bias": 30, "vision_bias": 30}
    planted = [(r, n) for r in noised for n in r.negatives if n.provenance.get("noise") == "same_form"]
    assert len(planted) == 60
    others = set()
    for row, neg in planted:
        phrasings = {answer_from_meta(row.meta["task"], row.meta, k) for k in range(3)}
        assert neg.text in phrasings and neg.text != row.chosen  # same content, same family, another wording
        assert parse_colour(neg.text) == parse_colour(row.chosen) and parse_yes_no(neg.text) == parse_yes_no(
            row.chosen)
        others.add((row.meta["phrasing"], neg.text))
    assert len(others) > 6  # both other phrasings are drawn, not always the same one
    kept, report = filter_rows(noised)
    assert kept == noised and report.negatives_kept == report.negatives_in  # the filters keep them all


def test_same_form_needs_a_world_with_several_phrasings():
    rows = [_row(i, "attribute", "The apple is red.", {"colour": "red", "target": "apple"}) for i in range(5)]
    with pytest.raises(ValueError, match="phrasings >= 2"):
        same_form_noise(rows, 0.3, ["language_bias"], seed=0)
    edited = _phrased(0, "attribute", {"target": "apple", "colour": "red"}, 1)
    edited = PairRow(edited.id, None, "q", "The apple is green.", edited.negatives, edited.meta)
    assert world_same_form(edited, 0) is None  # a chosen answer that is not the world's own is not rephrased


def test_same_form_from_a_built_world(tmp_path):
    world = build_world(WorldConfig(out=str(tmp_path / "w"), n_train=20, n_test=4, phrasings=3))
    rows = [PairRow(r["id"], None, r["prompt"], r["answer"], [Negative("No.", "language_bias")],
                    {"task": r["task"], **r["meta"]}) for r in read_jsonl(world / "train.jsonl")]
    noised, summary = same_form_noise(rows, 0.99, ["language_bias"], seed=0)
    assert summary["realised_rate"]["language_bias"] > 0.98
    for row in noised:
        if row.negatives[0].provenance:
            assert row.negatives[0].text != row.chosen
            assert parse_objects(row.negatives[0].text) == parse_objects(row.chosen)


def test_inject_noise_modes_write_counts(tmp_path):
    rows = [_phrased(i, "attribute", {"target": "apple", "colour": "red"}, i % 3) for i in range(10)]
    src = tmp_path / "pairs.jsonl"
    write_pairs(rows, src, image_root=tmp_path)
    for mode in ("flip", "same_form"):
        out = tmp_path / mode / "pairs.jsonl"
        summary = inject_noise(NoiseConfig(pairs=str(src), out=str(out), mode=mode, rate=0.3, kinds=["vision_bias"]))
        written = json.loads((tmp_path / mode / "noise.json").read_text())
        assert written["mode"] == mode and written["replaced"] == {"vision_bias": 3} == summary["replaced"]
        assert written["rows"] == {"in": 10, "out": 13 if mode == "flip" else 10}
        assert sum(n.provenance.get("noise") == mode for r in read_pairs(out) for n in r.negatives) == 3
    with pytest.raises(ConfigError, match="mode"):
        from_dict(NoiseConfig, {"pairs": "a.parquet", "out": "b.parquet", "mode": "shuffle"})
