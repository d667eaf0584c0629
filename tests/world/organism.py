"""The test suite's model organism: the tiny world and biased base every quality test uses, what those tests
measure, and the thresholds they assert with the worst case measured over seeds 0-4 at 1 and 2 threads.

Shared by the session fixtures (``tests/conftest.py``), the quality tests, and ``bench/margins.py``, which trains
the organism for each seed and thread count and prints every quality against its threshold. A threshold is set
with a margin below the measured worst case; ``worst`` records that worst case (portable AVX2 kernels, see
:mod:`unprior.numerics`; regenerate with ``python bench/margins.py``; the table is in docs/tests.md).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unprior.numerics import torch_threads
from unprior.world.config import BaseConfig, ImageConfig, WorldConfig

TINY_IMAGE = ImageConfig(saturation_lo=0.5, saturation_hi=0.9, hue_jitter=4.0)
"""Colours easier to read than the default world's, so that a base trained for a few seconds already looks at the
image, while the colour prior (0.95) still dominates counterfactual answers."""


def tiny_world_config(out: Path) -> WorldConfig:
    """800 train / 60 test images per split."""
    return WorldConfig(out=str(out), n_train=800, n_test=60, image=TINY_IMAGE)


def tiny_base_config(world: Path, out: Path, seed: int = 0, threads: int = 1) -> BaseConfig:
    """The session's base: 30 text-only steps (the prior), 900 multimodal SFT steps, on ``threads`` threads."""
    return BaseConfig(world_dir=str(world), out=str(out), pretrain_steps=30, sft_steps=900, batch_size=32, lr=2e-3,
                      threads=threads, seed=seed)  # fmt: skip


@dataclass(frozen=True)
class Threshold:
    """``metric op value``, and the worst value of ``metric`` measured by bench/margins.py."""

    metric: str
    op: str
    value: float
    worst: float

    def holds(self, measured: dict[str, float]) -> bool:
        return _OPS[self.op](measured[self.metric], self.value)

    def margin(self, measured: dict[str, float]) -> float:
        gap = measured[self.metric] - self.value
        return gap if self.op == ">=" else -gap


_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}

DIRECT_THRESHOLDS = (
    Threshold("pope_random_accuracy", ">=", 0.75, worst=0.875),
    Threshold("pope_blank_drop", ">=", 0.15, worst=0.283),
    Threshold("id_attribute_accuracy", ">=", 0.85, worst=0.959),
    Threshold("id_attribute_unparsed", "<=", 0.0, worst=0.0),
    Threshold("id_minus_cf_accuracy", ">=", 0.3, worst=0.68),
    Threshold("cf_prior_follow", ">=", 0.3, worst=0.412),
    Threshold("sft_loss_ratio", "<=", 0.5, worst=0.025),
)
"""What tests/world/test_base.py asserts (greedy answers through ``generate``)."""
EVAL_THRESHOLDS = (
    Threshold("eval_id_attribute_accuracy", ">=", 0.6, worst=0.959),
    Threshold("eval_id_minus_cf_accuracy", ">=", 0.3, worst=0.68),
    Threshold("eval_cf_prior_follow", ">=", 0.3, worst=0.412),
    Threshold("eval_unparsed", "<=", 0.05, worst=0.01),
)
"""What tests/eval/test_world_model.py asserts (``unprior eval run benchmark=world``)."""
BASE_THRESHOLDS = DIRECT_THRESHOLDS + EVAL_THRESHOLDS


def _answers(model, processor, world: Path, rows: list[dict[str, Any]], blank: bool = False) -> list[str]:
    from unprior.models.generate import Prompt, generate

    prompts = []
    for r in rows:
        image = Image.open(world / r["image"]).convert("RGB")
        if blank:
            image = Image.fromarray(np.full_like(np.asarray(image), 160))
        prompts.append(Prompt(r["prompt"], image))
    return generate(model, processor, prompts, batch_size=64, max_new_tokens=24)


def direct_quality(base: Path, world: Path) -> dict[str, float]:
    """Greedy answers through :func:`unprior.models.generate.generate`: POPE with the image and with a blank one,
    attribute accuracy on the ID and CF test splits, the prior-follow share, and the SFT loss drop."""
    from unprior.io import read_jsonl
    from unprior.models.families import load_model
    from unprior.world.metrics import split_metrics

    model, processor = load_model(base)
    ident = list(read_jsonl(world / "test_id.jsonl"))
    pope = [r for r in ident if r["task"] == "exists" and r["meta"]["pope"] == "random"]
    seen = split_metrics(pope, _answers(model, processor, world, pope))["pope"]["random"]
    blind = split_metrics(pope, _answers(model, processor, world, pope, blank=True))["pope"]["random"]
    attr_id = [r for r in ident if r["task"] == "attribute"]
    attr_cf = [r for r in read_jsonl(world / "test_cf.jsonl") if r["task"] == "attribute"]
    m_id = split_metrics(attr_id, _answers(model, processor, world, attr_id))["attribute"]
    m_cf = split_metrics(attr_cf, _answers(model, processor, world, attr_cf))["attribute"]
    sft = [r["loss"] for r in read_jsonl(base / "train_log.jsonl") if r["phase"] == "sft"]
    return {
        "pope_random_accuracy": seen["accuracy"],
        "pope_blank_drop": seen["accuracy"] - blind["accuracy"],
        "id_attribute_accuracy": m_id["accuracy"],
        "id_attribute_unparsed": m_id["unparsed"],
        "id_minus_cf_accuracy": m_id["accuracy"] - m_cf["accuracy"],
        "cf_prior_follow": m_cf["prior_follow"],
        "sft_loss_ratio": float(np.mean(sft[-20:]) / np.mean(sft[:5])),
    }


def eval_quality(metrics: dict[str, float]) -> dict[str, float]:
    """The same qualities from ``unprior eval run benchmark=world``'s metrics."""
    return {
        "eval_id_attribute_accuracy": metrics["id_attribute_accuracy"],
        "eval_id_minus_cf_accuracy": metrics["id_attribute_accuracy"] - metrics["cf_attribute_accuracy"],
        "eval_cf_prior_follow": metrics["cf_prior_follow"],
        "eval_unparsed": max(metrics["id_attribute_unparsed"], metrics["cf_attribute_unparsed"]),
    }


def run_world_eval(base: Path, world: Path, out: Path) -> dict[str, Any]:
    """``unprior eval run benchmark=world`` on the base, quietly; returns the results."""
    from io import StringIO

    from rich.console import Console

    from unprior.config import from_dict
    from unprior.eval.config import EvalConfig
    from unprior.eval.generation import make_generate_fn
    from unprior.eval.runner import run_eval

    cfg = from_dict(EvalConfig, {"benchmark": "world", "model": str(base), "out": str(out), "batch_size": 64,
                                 "options": {"world_dir": str(world)}})  # fmt: skip
    return run_eval(cfg, make_generate_fn(cfg), console=Console(file=StringIO()))


def base_quality(base: Path, world: Path, scratch: Path | None = None, threads: int = 1) -> dict[str, float]:
    """The qualities of :data:`DIRECT_THRESHOLDS` (and of :data:`EVAL_THRESHOLDS` when given a ``scratch``
    directory for the eval run), measured on ``threads`` torch threads."""
    with torch_threads(threads):
        direct = direct_quality(base, world)
        evaluated = eval_quality(run_world_eval(base, world, scratch)["metrics"]) if scratch else {}
    return {**direct, **evaluated}
