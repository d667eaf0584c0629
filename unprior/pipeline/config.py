"""The pipeline's configs (pool, pairs, training, the whole run: ``DemoConfig``), plus what the demo and the study
share: the method table, the one builder of a method's or arm's train config (:func:`train_config`) and its key."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unprior.config import check_range, config_hash, fail
from unprior.losses import KindConfig, ObjectiveConfig, objective_preset
from unprior.train.config import LoraSettings, TrainConfig
from unprior.world.config import BaseConfig

NO_PRIOR = 1 / 8
"""Colour prior strength of the control world: every colour equally likely (8 colours)."""
DEMO_FORMAT_VERSION = 1
TASKS = ("describe", "attribute", "exists")
METHOD_OBJECTIVES = {"sft": "sft", "dpo": "bpo", "napo": "napo"}
"""Demo method -> the objective it trains, named as a study arm names it (:func:`objective_for`)."""
METHODS = tuple(METHOD_OBJECTIVES)
STRATEGIES = ["image_weakening", "rules", "language_bias", "vision_bias"]
"""All four negative strategies: BPO's two (rules is the offline error injection) and NaPO's two."""

LABELS = {"base": "base", "control": "control", "sft": "SFT", "dpo": "DPO (BPO pairs)", "napo": "NaPO"}
DESCRIPTIONS = {
    "base": "the biased base model (text-only prior pretraining, then a short multimodal SFT)",
    "control": "the same model trained on the same images with every colour equally likely: the visual ceiling",
    "sft": "SFT on the chosen (ground-truth) answers of the pairs only, same rows, steps and lr: the papers' baseline",
    "dpo": "DPO on BPO's pairs (image-weakened and rule-based error-injected negatives), plus the SFT anchor",
    "napo": "the NaPO objective (Eq. 14: DPO on the error-injected pair, NaPO loss with dynamic q on the language- "
            "and vision-biased answers, dynamic γ) on NaPO's pairs, plus the SFT anchor",
}
METRICS = {
    "id": ("world", "id_attribute_accuracy", "ID attr acc", True),
    "cf": ("world", "cf_attribute_accuracy", "CF attr acc", True),
    "prior_follow": ("world", "cf_prior_follow", "CF prior-follow", False),
    "frontier": ("frontier", "cf_at_id_0.90", "CF@ID≥0.90", True),
    "pope_adv_fp": ("world", "cf_pope_adversarial_fp", "CF POPE adv FP", False),
    "pope_adv_f1": ("world", "cf_pope_adversarial_f1", "CF POPE adv F1", True),
    "chair_i": ("world", "cf_chair_i", "CF CHAIR_i", False),
    "partner_hall": ("world", "cf_partner_hallucination", "CF partner hall.", False),
}
"""The study's metrics, short name -> (eval run: the world benchmark or the grounding frontier, metric, column title,
higher is better)."""
COLUMNS = [(f"{'world_frontier' if run == 'frontier' else run}/{metric}", title)
           for name, (run, metric, title, _) in METRICS.items() if name != "pope_adv_f1"]
"""The demo's table (the study's metrics but POPE's F1): ``benchmark/metric`` (as ``unprior eval compare`` names
them) and a short title."""


@dataclass
class PoolConfig:
    """The images the pairs are built from: a subset of the world's train split (the base model's own pool)."""

    images: int = 1600
    """Train-split images in the pool (their describe and attribute rows become pairs: about 4 rows each)."""
    tasks: list[str] = field(default_factory=lambda: ["describe", "attribute"])
    """Row tasks taken from each pool image: describe, attribute, exists."""
    noncanonical_share: float | None = 0.5
    """Share of pool images holding at least one object in a non-canonical colour. null: images drawn uniformly,
    as in training (about 12 % hold one). The pool's balance, not the loss, moves counterfactual accuracy here
    (docs/world.md, "What the design runs showed", item 7; docs/demo.md has the natural pool's numbers)."""
    seed: int = 0
    """Seed of the image draw."""

    def validate(self) -> None:
        check_range(self, "images", 1, 10_000_000)
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            fail("tasks", f"choose among {', '.join(TASKS)}; got {self.tasks}")
        if self.noncanonical_share is not None:
            check_range(self, "noncanonical_share", 0.0, 1.0)


@dataclass
class DemoPairsConfig:
    """The demo's knobs of ``unprior pairs``, each set on several of its sections (``steps.pairs_config``)."""

    max_new_tokens: int = 32
    """Answer budget of every generating strategy (world answers are under 30 tokens)."""
    weakening_t: int = 900
    """Diffusion step of BPO's image weakening (BPO: 900)."""
    num_beams: int = 3
    """Beams of NaPO's language- and vision-biased answers (NaPO: 3)."""
    batch_size: int = 128
    """Prompts per generate call."""

    def validate(self) -> None:
        check_range(self, "max_new_tokens", 1, 4096)
        check_range(self, "weakening_t", 0, 999)
        check_range(self, "num_beams", 1, 16)
        check_range(self, "batch_size", 1, 100_000)


@dataclass
class DemoTrainConfig(TrainConfig):
    """``unprior train``'s config (:class:`~unprior.train.config.TrainConfig`) at the demo's settings, shared by
    every trained method: full fine-tuning of the tiny model (vision side frozen), the SFT anchor. The recipe fills
    ``model``, ``pairs``, ``out`` and ``threads``, and each method's ``objective``: its preset with ``beta`` and
    ``sft_weight`` (:func:`train_config`)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-4
    """Peak AdamW learning rate. 5e-5 to 2e-4 is usable at this size with the SFT anchor (docs/world.md, "What the
    design runs showed", item 5); 1e-4 gave the same picture, slightly weaker (docs/demo.md)."""
    warmup_ratio: float = 0.05
    max_length: int = 128
    resume: bool = True
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=False))
    train_vision: bool = False
    """Also train the vision tower and projector. Both papers freeze them; in this world the base's tower encodes
    non-canonical colours poorly, and training it helps every method (docs/experiments.md §5 and §7)."""
    log_every: int = 5
    score_batch_size: int = 64
    objective: ObjectiveConfig | None = None  # type: ignore[assignment]
    """Set per method by the recipe (its preset with ``beta`` and ``sft_weight``); leave unset."""
    beta: float = 0.1
    """β of every pairwise term (both papers: 0.1)."""
    sft_weight: float = 1.0
    """Weight of the SFT anchor in DPO and NaPO (SFT is the anchor alone, weight 1); without it every pairwise loss
    breaks the tiny model's output format (docs/world.md, "What the design runs showed", item 6)."""

    def validate(self) -> None:
        for name in ("model", "pairs", "out", "objective", "threads"):
            if getattr(self, name):
                fail(name, "is filled by the recipe for each method (the objective's knobs are beta and sft_weight)")
        check_range(self, "beta", 1e-6, 1e6)
        train_config(self, objective_for("napo", self.beta, self.sft_weight), model="-", pairs="-", out="-").validate()


@dataclass
class DemoConfig:
    """The demo pipeline on the embedded default."""

    base: BaseConfig = field(default_factory=BaseConfig)
    """The biased base model (and, through ``base.world``, the world)."""
    world_dir: str = ""
    """Use this existing world directory instead of building ``base.world`` (the control is then skipped: its world
    is derived from ``base.world``)."""
    base_dir: str = ""
    """Use this existing base model directory instead of training ``base``."""
    control: bool = True
    """Also train the no-colour-prior control on the same images (the visual ceiling)."""
    control_sft_steps: int = 2600
    """Multimodal SFT steps of the control (0: the base's ``sft_steps``). With no prior to fall back on, the control
    must learn to read colour during SFT, a late transition: a budget that leaves the base biased can leave the
    control unable to read (docs/demo.md, "The control"). It trains beside pairs, score and train, so a larger
    budget costs no wall time until it outlasts them."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    pairs: DemoPairsConfig = field(default_factory=DemoPairsConfig)
    train: DemoTrainConfig = field(default_factory=DemoTrainConfig)
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Trained methods: sft, dpo (DPO on BPO's pairs), napo (the NaPO objective on NaPO's pairs)."""
    frontier: bool = True
    """Also measure the grounding frontier (CF accuracy at matched ID accuracy) of every model."""
    limit: int = 0
    """Evaluate on the first N images of each test split only (0: all)."""
    eval_batch_size: int = 64
    """Prompts per generate call in the evaluation."""
    out: str = "runs/demo"
    """Report folder (rewritten by every run; the trained models and eval runs stay in the cache)."""
    threads: int = 1
    """torch threads per process (0: torch's default). One is the robust choice on a small shared machine: with two
    threads torch spin-waits whenever another process wants a core, 5-10x slower; the base and the control train
    side by side in two processes instead."""

    def validate(self) -> None:
        check_range(self, "control_sft_steps", 0, 10_000_000)
        check_range(self, "limit", 0, 10_000_000)
        check_range(self, "eval_batch_size", 1, 100_000)
        check_range(self, "threads", 0, 1024)
        if not self.out:
            fail("out", "set the report folder")
        for m in self.methods:
            if m not in METHODS:
                fail("methods", f"unknown method {m!r}; known: {', '.join(METHODS)}")


def control_config(base: BaseConfig, sft_steps: int = 0) -> BaseConfig:
    """The same world and training with the colour prior removed (same seed: same layouts and shapes); with
    ``sft_steps``, that many multimodal SFT steps instead of the base's."""
    ctrl = copy.deepcopy(base)
    ctrl.sft_steps = sft_steps or base.sft_steps
    ctrl.world.prior_strength = NO_PRIOR
    ctrl.world.out = ""
    ctrl.world_dir = ""
    ctrl.out = ""
    return ctrl


def objective_for(name: str, beta: float, sft_weight: float) -> ObjectiveConfig:
    """The objective a demo method or a study arm names: ``sft``, or a preset of :mod:`unprior.losses` with ``beta``
    and the SFT anchor's weight ``sft_weight``.

    ``sft`` is the trainer with only the anchor (weight 1): one pairwise kind kept at weight 0 (the trainer needs a
    kind to pick its rows), so SFT sees exactly the rows, order, steps and learning rate of the other methods.
    """
    if name == "sft":
        return ObjectiveConfig(kinds={"error_injection": KindConfig(loss="dpo", weight=0.0)}, gamma="fixed",
                               beta=beta, sft_weight=1.0)
    objective = objective_preset(name)
    objective.beta, objective.sft_weight = beta, sft_weight
    return objective


def train_config(train: DemoTrainConfig, objective: ObjectiveConfig, **recipe: Any) -> TrainConfig:
    """``unprior train``'s config of one demo method or study arm: the demo's ``train`` section with ``objective``
    and the recipe's fields (``model``, ``pairs``, ``out``, ``threads``, a study's ``seed``)."""
    own = {f.name: copy.deepcopy(getattr(train, f.name)) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**own, "objective": objective, **recipe})


def train_key(train: dict[str, Any], **context: Any) -> str:
    """Cache key of a trained model: its whole train config but ``out`` and ``threads`` (which do not change the
    result), and ``context`` (a format version, the pairs' key)."""
    return config_hash({**context, "train": {k: v for k, v in train.items() if k not in ("out", "threads")}})
