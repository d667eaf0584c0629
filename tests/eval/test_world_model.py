"""World benchmarks and the grounding frontier on the tiny biased base (trained once per session, ~15 s)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from world.organism import EVAL_THRESHOLDS, eval_quality

from unprior.config import from_dict
from unprior.eval.config import EvalConfig
from unprior.eval.frontier import (
    _ending_logprobs,
    _single_token_scores,
    answer_prefix,
    attribute_rows,
    colour_token_ids,
    grounding_frontier,
)
from unprior.eval.generation import load_eval_model, load_image, make_generate_fn
from unprior.eval.runner import run_eval
from unprior.models.generate import chat_text
from unprior.world.spec import COLOUR_NAMES


@pytest.fixture(scope="module")
def model(tiny_base):
    return load_eval_model(str(tiny_base))


@pytest.fixture(scope="module")
def greedy(tiny_world, tiny_base, tmp_path_factory):
    """Greedy answers of the tiny base on the whole tiny world, through the hf backend: (results, scores by id)."""
    out = tmp_path_factory.mktemp("greedy")
    cfg = from_dict(EvalConfig, {"benchmark": "world", "model": str(tiny_base), "out": str(out),
                                 "batch_size": 64, "options": {"world_dir": str(tiny_world)}})
    from io import StringIO

    from rich.console import Console

    results = run_eval(cfg, make_generate_fn(cfg), console=Console(file=StringIO()))
    scores = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    return results, scores


@pytest.mark.parametrize("threshold", EVAL_THRESHOLDS, ids=lambda t: t.metric)
def test_biased_base_is_clearly_worse_on_counterfactual_than_in_distribution(greedy, threshold):
    """The CF errors are the language prior, not noise; thresholds sit below the worst case over seeds 0-4 at 1
    and 2 threads (``threshold.worst``, bench/margins.py)."""
    measured = eval_quality(greedy[0]["metrics"])
    assert threshold.holds(measured), (threshold, measured)


def test_frontier_at_zero_bias_reproduces_greedy(model, greedy, tiny_world):
    results, scores = greedy
    frontier = grounding_frontier(*model, tiny_world, batch_size=64)
    m = results["metrics"]
    assert frontier["at_zero"]["id_accuracy"] == pytest.approx(m["id_attribute_accuracy"], abs=0.02)
    assert frontier["at_zero"]["cf_accuracy"] == pytest.approx(m["cf_attribute_accuracy"], abs=0.02)
    # row by row: the slot argmax is the colour the model wrote
    rows = [r for split in frontier["rows"].values() for r in split]
    agree = [max(r["logprobs"], key=r["logprobs"].get) == scores[r["id"]]["parsed"] for r in rows]
    assert np.mean(agree) >= 0.98
    assert frontier["n"]["test_id"] == sum(s["task"] == "attribute" and s["split"] == "test_id"
                                           for s in scores.values())
    curve = frontier["curve"]
    assert curve[0]["id_accuracy"] <= frontier["at_zero"]["id_accuracy"]  # a large negative bias costs ID
    assert curve[0]["cf_accuracy"] >= frontier["at_zero"]["cf_accuracy"]  # ... and never costs CF
    assert frontier["best_cf_at_id"]["0.90"] is None or frontier["best_cf_at_id"]["0.90"]["id_accuracy"] >= 0.9


def test_multi_token_scoring_equals_single_token_scoring(model, tiny_world):
    net, processor = model
    rows = attribute_rows(tiny_world, "test_cf", limit=3)
    contexts = [chat_text(processor, r["prompt"], True) + answer_prefix(r["meta"]["target"]) for r in rows]
    images = [load_image(tiny_world / r["image"]) for r in rows]
    ids = [colour_token_ids(processor.tokenizer, c) for c in contexts]
    single = _single_token_scores(net, processor, contexts, images, ids)
    texts = [f"{c} {colour}" for c in contexts for colour in COLOUR_NAMES]
    multi = _ending_logprobs(net, processor, texts, [im for im in images for _ in COLOUR_NAMES],
                             [t for per_row in ids for t in per_row])
    np.testing.assert_allclose(multi.reshape(len(rows), -1), single, atol=1e-4)
