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
    base = dict(model=str(model), pairs=str(pairs), out=str(out), max_length=64, batch_size=4, max_steps=4,
                lr=1e-3, warmup_ratio=0.0, lora=LoraSettings(r=8, alpha=16, dropout=0.0), objective=objective,
                reference_dir=str(out.parent / "reference"))
    cfg = TrainConfig(**{**base, **overrides})
    cfg.validate()
    return cfg


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in metrics(out) if "loss" in m]


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run in this process starts a fresh Accelerator."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
