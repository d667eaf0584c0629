"""Several valid phrasings per answer (``WorldConfig.phrasings``): the default world is unchanged, every phrasing is
drawn, rebuilt from meta, and parsed by the world's metrics."""

from __future__ import annotations

import pytest

from unprior.config import ConfigError, config_hash, from_dict
from unprior.io import read_jsonl
from unprior.world.build import _content, attribute_qa, build_world, describe, exists_qa
from unprior.world.config import WorldConfig
from unprior.world.metrics import attribute_metrics, describe_metrics, parse_colour, parse_objects, parse_yes_no
from unprior.world.phrasings import (
    MAX_PHRASINGS,
    answer_from_meta,
    attribute_text,
    describe_text,
    exists_text,
)
from unprior.world.render import Placed
from unprior.world.spec import CATEGORY_NAMES, COLOUR_NAMES

DEFAULT_HASH = "ee65163d2694"
"""The default world's content hash before phrasings existed: cached worlds and base models are keyed by it."""


def small(tmp_path, name: str, **kw) -> WorldConfig:
    return WorldConfig(out=str(tmp_path / name), n_train=40, n_test=12, **kw)


def test_default_config_keeps_its_hash_and_phrasing_zero_is_the_original_form():
    assert config_hash(_content(WorldConfig())) == DEFAULT_HASH
    assert config_hash(_content(WorldConfig(phrasings=2))) != DEFAULT_HASH
    objects = [Placed("apple", "red", 0), Placed("banana", "yellow", 1)]
    assert describe(objects) == "A red apple and a yellow banana."
    assert attribute_qa("apple", "red") == ("What color is the apple?", "The apple is red.")
    assert exists_qa("apple", True) == ("Is there an apple in the image?", "Yes, there is an apple.")
    assert exists_qa("pig", False)[1] == "No, there is no pig."


def test_phrasings_change_answers_only(tmp_path):
    """Same images, ids, prompts and ground truth; answers drawn from every phrasing and recorded in meta."""
    one = build_world(small(tmp_path, "one"))
    three = build_world(small(tmp_path, "three", phrasings=3))
    for split in ("train", "test_id", "test_cf"):
        rows1, rows3 = list(read_jsonl(one / f"{split}.jsonl")), list(read_jsonl(three / f"{split}.jsonl"))
        assert [(r["id"], r["image"], r["prompt"]) for r in rows1] == [(r["id"], r["image"], r["prompt"])
                                                                      for r in rows3]
        for r1, r3 in zip(rows1, rows3, strict=True):
            assert "phrasing" not in r1["meta"]
            phrasing = r3["meta"].pop("phrasing")
            assert r3["meta"].pop("phrasings") == 3 and r3["meta"] == r1["meta"]
            assert r3["answer"] == answer_from_meta(r3["task"], r3["meta"], phrasing)
            assert r1["answer"] == answer_from_meta(r1["task"], r1["meta"], 0)
    for image in sorted((one / "images" / "train").iterdir())[:5]:
        assert image.read_bytes() == (three / "images" / "train" / image.name).read_bytes()
    rows = list(read_jsonl(three / "train.jsonl"))
    for task in ("describe", "attribute", "exists"):
        assert {r["meta"]["phrasing"] for r in rows if r["task"] == task} == {0, 1, 2}


@pytest.mark.parametrize("phrasing", range(MAX_PHRASINGS))
def test_every_phrasing_parses(phrasing):
    """The world's parsers (also the eval benchmark's: unprior.eval.benchmarks.world) read every template."""
    for category in CATEGORY_NAMES:
        for colour in COLOUR_NAMES:
            assert parse_colour(attribute_text(category, colour, phrasing)) == colour
        assert parse_yes_no(exists_text(category, True, phrasing)) == "yes"
        assert parse_yes_no(exists_text(category, False, phrasing)) == "no"
    objects = [("apple", "orange"), ("banana", "yellow"), ("frog", "green")]
    for n in (1, 2, 3):
        assert parse_objects(describe_text(objects[:n], phrasing)) == [(c, o) for o, c in objects[:n]]


@pytest.mark.parametrize("phrasing", range(MAX_PHRASINGS))
def test_metrics_score_every_phrasing_of_the_truth_as_right(phrasing):
    meta = {"objects": [{"category": "apple", "colour": "green"}, {"category": "banana", "colour": "blue"},
                        {"category": "frog", "colour": "pink"}]}
    attr = [{"meta": {**meta, "target": "apple", "colour": "green", "canonical": False, "busy": True}}]
    out = attribute_metrics(attr, [attribute_text("apple", "green", phrasing)])
    assert (out["accuracy"], out["prior_follow"], out["busy_overdescribe"]) == (1.0, 0.0, 0.0)
    text = describe_text([(o["category"], o["colour"]) for o in meta["objects"]], phrasing)
    out = describe_metrics([{"meta": meta}], [text])
    assert (out["chair_i"], out["recall"], out["colour_accuracy"]) == (0.0, 1.0, 1.0)


def test_answer_from_meta_needs_the_world_fields():
    assert answer_from_meta("attribute", {"target": "pig", "colour": "pink"}, 1) == "The pig is coloured pink."
    assert answer_from_meta("exists", {"target": "apple", "label": "no"}, 1) == "No, an apple is not there."
    assert answer_from_meta("describe", {"objects": [{"category": "whale", "colour": "orange"}]}, 2) == (
        "The image shows an orange whale.")
    assert answer_from_meta("chat", {}, 0) is None and answer_from_meta("exists", {"target": "pig"}, 0) is None
    with pytest.raises(ValueError, match="phrasing 3"):
        attribute_text("pig", "pink", 3)


def test_phrasings_field_is_validated():
    for bad in (0, MAX_PHRASINGS + 1):
        with pytest.raises(ConfigError, match="phrasings"):
            from_dict(WorldConfig, {"phrasings": bad})
