"""``unprior pairs noise``: planted negatives are correct, differ from the chosen answer, come at the asked rate."""

from __future__ import annotations

import json

import pytest

from unprior.config import ConfigError, from_dict
from unprior.pairs.noise import NoiseConfig, inject_noise, plant_noise, world_rewrite
from unprior.pairs.schema import Negative, PairRow, read_pairs, write_pairs

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
