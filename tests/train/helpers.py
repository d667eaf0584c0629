"""Small shared pieces of the train tests."""

from __future__ import annotations

import json
from pathlib import Path

from accelerate.state import AcceleratorState, GradientState, PartialState

from unprior.losses import objective_preset
from unprior.train.config import LoraSettings, TrainConfig


def config(model: Path, pairs: Path, out: Path, **overrides) -> TrainConfig:
    """A tiny NaPO run: LoRA r=8, lr 1e-3, max_length 64, SFT anchor; the reference cache beside ``out``."""
    objective = objective_preset("napo")
    objective.sft_weight = 1.0
    base = dict(model=str(model), pairs=str(pairs), out=str(out), max_length=64, batch_size=4, steps=4,
                lr=1e-3, warmup_ratio=0.0, lora=LoraSettings(r=8, alpha=16, dropout=0.0), objective=objective,
                reference_dir=str(out.parent / "reference"))
    cfg = TrainConfig(**{**base, **overrides})
    cfg.validate()
    return cfg


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in metrics(out) if "loss" in m]


CONTINUOUS_EVAL = ("eval/margin/",)
"""Evaluation keys that equivalence tests compare. The accuracies are counts of thresholded margins: where a margin
sits at zero (step 0, the policy equal to the reference) fp32 reduction order decides them, so comparing them across
process counts or CPUs compares rounding, not training; their margins are compared instead."""


def assert_same_run(a: Path, b: Path, loss_atol: float = 1e-5, eval_atol: float = 1e-4) -> None:
    """Two runs logged the same steps, losses within ``loss_atol`` and evaluation margins within ``eval_atol``."""
    for (s1, l1), (s2, l2) in zip(losses(a), losses(b), strict=True):
        assert s1 == s2 and abs(l1 - l2) < loss_atol, (s1, l1, s2, l2)
    evals = [[m for m in metrics(out) if any(k.startswith(CONTINUOUS_EVAL) for k in m)] for out in (a, b)]
    assert evals[0] and len(evals[0]) == len(evals[1])
    for x, y in zip(*evals, strict=True):
        keys = [k for k in x if k.startswith(CONTINUOUS_EVAL)]
        assert keys and set(keys) == {k for k in y if k.startswith(CONTINUOUS_EVAL)}
        assert all(abs(x[k] - y[k]) < eval_atol for k in keys), {k: (x[k], y[k]) for k in keys}


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run in this process starts a fresh Accelerator."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
