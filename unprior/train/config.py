"""Config of ``unprior train``: model, data, objective (nested, from the losses stage), optimisation and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from unprior.config import Renamed, check_range, fail
from unprior.formats.pairs import NEGATIVE_KINDS
from unprior.losses import ObjectiveConfig
from unprior.score.config import CorruptionConfig


@dataclass
class LoraSettings:
    """PEFT LoRA on every linear layer of the language model (never the vision side or the LM head, as BPO)."""

    enabled: bool = True
    """Train LoRA adapters (true) or fine-tune the weights themselves (false)."""
    r: int = 32
    """Rank (BPO's LLaVA script: 32)."""
    alpha: int = 256
    """Scaling numerator lora_alpha (BPO: 256, i.e. a scale of alpha/r = 8)."""
    dropout: float = 0.05
    """Dropout on the LoRA input (BPO: 0.05)."""

    def validate(self) -> None:
        check_range(self, "r", 1, 4096)
        check_range(self, "alpha", 1, 1_000_000)
        check_range(self, "dropout", 0.0, 0.9)


@dataclass
class TrainConfig:
    """Preference optimisation of a VLM on a pairs dataset with cached reference log-probs."""

    RENAMED: ClassVar[dict[str, Renamed]] = {  # old keys, read until unprior 0.2
        "max_steps": Renamed("steps"),
        "precision": Renamed("dtype", {"fp32": "float32", "bf16": "bfloat16"}),
    }

    model: str = ""
    """The starting model (a local directory or hub id); also the frozen reference."""
    pairs: str = ""
    """Training pairs (.parquet or .jsonl) from ``unprior pairs``."""
    image_root: str = ""
    """Root of relative image paths in ``pairs`` and ``eval_pairs``; empty: the root recorded in the file."""
    eval_pairs: str = ""
    """Held-out pairs scored every ``eval_every`` steps and at the end (preference accuracy per kind)."""
    out: str = ""
    """Output directory: metrics.jsonl, checkpoints/, model/ (the final model), train_config.yaml."""
    overwrite: bool = False
    """Start over in a non-empty ``out`` (its checkpoints and metrics are deleted)."""
    resume: bool = False
    """Continue from the newest complete checkpoint in ``out`` (start fresh if there is none)."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """The objective (docs/losses.md); ``preset: napo`` starts from a named one, other keys override it. Its kind
    names must be negative kinds of the pairs data. Default: DPO on the error-injected negatives (preset ``dpo``)."""
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    """The corrupted image of mDPO's conditional term (used only when objective.conditional_weight > 0): seeded per
    row, identical for the reference (cached by ``unprior score``) and the policy."""
    max_length: int = 1024
    """Most tokens of prompt + response (image tokens included); responses are cut from the end, prompts that do
    not fit are dropped and counted."""
    batch_size: int = 4
    """Rows (prompts) per process per micro-step; each row brings its chosen answer and one negative per kind."""
    grad_accum: int = 1
    """Micro-steps per optimizer step. Global batch = batch_size × processes × grad_accum rows."""
    steps: int = 0
    """Optimizer steps; 0: ``epochs`` passes over the data."""
    epochs: float = 1.0
    """Passes over the usable rows when ``steps`` is 0."""
    lr: float = 2e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (not on biases and norms)."""
    warmup_ratio: float = 0.1
    """Share of the steps with a linear warm-up; cosine decay to 0 afterwards."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0: off)."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A step whose loss or gradient norm is NaN or infinite: ``stop`` the run there (exit 1, naming the step and
    its rows; the checkpoints so far are kept, no final model is saved) or ``skip`` the batch (no optimizer step;
    logged and counted as ``nonfinite_skipped``). Either way no weight is ever updated with a non-finite gradient
    (docs/train.md, "Non-finite steps")."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """float32, or bfloat16 autocast (accelerate mixed precision, float32 weights). The reference is scored with the
    model loaded in the same dtype (``unprior score dtype=``)."""
    activation_checkpointing: bool = False
    """Recompute each layer's activations in backward (works with the shared prefix)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    train_vision: bool = False
    """Full fine-tuning only: also train the vision tower and projector (frozen by default)."""
    method: Literal["auto", "prefix", "naive"] = "auto"
    """auto: the shared-prefix forward where the family supports it, else naive (logged); or force one."""
    seed: int = 0
    """Seed of the data order, LoRA initialisation and dropout."""
    log_every: int = 1
    """Write metrics every N steps (averaged over those steps' micro-batches and processes)."""
    save_every: int = 0
    """Checkpoint every N steps (0: no intermediate checkpoints)."""
    keep_checkpoints: int = 2
    """Keep only the newest N checkpoints (0: keep all)."""
    eval_every: int = 0
    """Evaluate on ``eval_pairs`` every N steps (0: only at the end)."""
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    """Also send metrics to this tracker: tensorboard (event files in out/tensorboard; needs the tensorboard package,
    extra ``unprior[tensorboard]``) or wandb (needs the wandb package)."""
    merge_lora: bool = False
    """Save the final model with the LoRA weights merged in (a plain model) instead of the adapter."""
    reference_dir: str = ""
    """Root of the reference cache (as ``unprior score reference_dir=``); empty: ``$UNPRIOR_CACHE/reference``."""
    score_batch_size: int = 8
    """Rows per forward when the reference log-probs have to be computed first."""
    threads: int = 0
    """torch threads per process (0: leave torch's default)."""

    def validate(self) -> None:
        for name in ("model", "pairs", "out"):
            if not getattr(self, name):
                fail(name, "is required")
        unknown = sorted(set(self.objective.kinds) - set(NEGATIVE_KINDS))
        if unknown:
            known = ", ".join(NEGATIVE_KINDS)
            fail(f"objective.kinds.{unknown[0]}", f"is not a negative kind of the pairs data ({known})")
        check_range(self, "max_length", 2, 1_000_000)
        for name in ("batch_size", "grad_accum", "log_every", "score_batch_size"):
            check_range(self, name, 1, 1_000_000)
        for name in ("steps", "save_every", "keep_checkpoints", "eval_every", "threads"):
            check_range(self, name, 0, 100_000_000)
        check_range(self, "epochs", 0.0, 1e6)
        if self.steps == 0 and self.epochs <= 0:
            fail("epochs", "must be > 0 when steps is 0")
        check_range(self, "lr", 0.0, 1.0)
        check_range(self, "weight_decay", 0.0, 10.0)
        check_range(self, "warmup_ratio", 0.0, 1.0)
        check_range(self, "max_grad_norm", 0.0, 1e6)
        if self.merge_lora and not self.lora.enabled:
            fail("merge_lora", "needs lora.enabled")
        self.lora.validate()
        self.objective.validate()
        self.corruption.validate()
