"""A study's configs (arms, seeds, pools, noise), the metrics it reports, and each arm's objective."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unprior.config import ConfigError, check_choice, check_range, fail, from_dict, set_dotted, to_dict
from unprior.losses.config import ObjectiveConfig
from unprior.pipeline.config import DemoConfig, objective_for
from unprior.train.config import TrainConfig

STUDY_FORMAT_VERSION = 1
PROBE = {"probe_cf": ("colour probe, CF objects", True), "probe_id": ("colour probe, ID objects", True)}
"""With ``probe: true``: a linear colour probe on the model's image features (``unprior world probe``)."""
DERIVED = {"gap_closed": ("frontier gap closed", True), "id_cost": ("ID cost", False)}
"""Per-seed derived numbers: (frontier − base frontier) / (ceiling − base frontier); base ID − ID."""


@dataclass
class ArmConfig:
    """One arm of a study: an objective trained on one pool's pairs, with or without planted noise."""

    objective: str = "napo"
    """"sft" (the chosen answers only, as in the demo) or a preset of ``unprior.losses`` (dpo, bpo, napo, ...)."""
    set: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides of the objective, e.g. ``{"gamma": "fixed", "kinds.language_bias.loss": "dpo"}``."""
    drop: list[str] = field(default_factory=list)
    """Negative kinds removed from the objective (NaPO Table 2's "w/o VB data": ``[vision_bias]``)."""
    pool: str = "balanced"
    """Which of the study's ``pools`` the pairs come from."""
    noise: float = 0.0
    """Share of the ``noise_kinds`` negatives noised (``unprior pairs noise``), as ``noise_mode`` says."""
    noise_mode: str = "rewrite"
    """``rewrite``: replaced by a correct answer of another form; ``same_form``: by another valid phrasing of the
    chosen answer (needs ``demo.base.world.phrasings`` ≥ 2); ``flip``: the pair is reversed (cDPO/rDPO's noise)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Overrides of the arm's ``unprior train`` config, e.g. ``{train_vision: true}`` or ``{steps: 600}``."""
    group: str = ""
    """Row of the noise pivot table (arms differing only in ``noise`` share a group). Empty: the arm's name."""
    label: str = ""
    """Row title in the tables. Empty: the arm's name."""

    def validate(self) -> None:
        check_range(self, "noise", 0.0, 0.999)
        check_choice(self, "noise_mode", ("rewrite", "same_form", "flip"))
        allowed = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "pairs", "out", "objective", "seed"}
        for key in self.train:
            if key not in allowed:
                fail("train", f"{key!r} cannot be overridden per arm; allowed: {', '.join(sorted(allowed))}")


@dataclass
class StudyConfig:
    """A grid of arms × seeds on the embedded world, at the demo's settings unless ``demo.*`` says otherwise."""

    demo: DemoConfig = field(default_factory=DemoConfig)
    """World, base model, pool size, pair generation, training and evaluation settings (``unprior demo``'s; every
    arm trains with ``demo.train``, its ``train`` overrides and its objective); its ``pool.noncanonical_share``,
    ``pool.seed``, ``train.seed`` and ``base.seed`` are set per pool and seed."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds; each is a separately trained base model, pool draw, pair set, noise draw and training order."""
    vary_base: bool = True
    """Train a base model per seed (``base.seed = seed``); false keeps ``demo.base.seed`` for every seed."""
    pools: dict[str, float | None] = field(default_factory=lambda: {"balanced": 0.5, "natural": None})
    """Pool name -> its share of images holding a non-canonical colour (null: drawn as in training)."""
    noise_kinds: list[str] = field(default_factory=lambda: ["language_bias", "vision_bias"])
    """Kinds that receive planted noise (NaPO's biased kinds; the original pair stays clean, as the paper assumes)."""
    arms: dict[str, ArmConfig] = field(default_factory=dict)
    """Arm name -> arm."""
    compare: list[list[str]] = field(default_factory=list)
    """Pairs ``[a, b]`` of arms whose per-seed difference a − b is reported (mean ± std and wins)."""
    probe: bool = False
    """Also fit a linear colour probe on every model's image features (``unprior world probe``): does the colour
    reach the language model at all?"""
    baselines: bool = True
    """Evaluate each seed's base model and the no-prior control (needed for the gap and the ID cost)."""
    control_per_seed: bool = False
    """Train the no-prior control for every seed (``base.seed = seed``), so each seed's gap is measured against its
    own ceiling. False: one control, of ``demo.base``'s seed, for every seed."""
    workers: int = 2
    """Processes running units side by side."""
    threads: int = 1
    """torch threads per process (one: see ``unprior demo``'s ``threads``)."""
    out: str = "experiments/results/study"
    """Study folder: ``runs/<arm>-s<seed>.json`` per unit, ``summary.md``, ``summary.json``, ``config.yaml``."""
    title: str = ""
    """Heading of summary.md."""

    def validate(self) -> None:
        if not self.seeds:
            fail("seeds", "give at least one seed")
        if not self.arms:
            fail("arms", "give at least one arm")
        check_range(self, "workers", 1, 256)
        check_range(self, "threads", 0, 1024)
        for name, arm in self.arms.items():
            if arm.pool not in self.pools:
                fail(f"arms.{name}.pool", f"unknown pool {arm.pool!r}; the study's pools: {', '.join(self.pools)}")
            objective_for_arm(arm, self.demo.train.beta, self.demo.train.sft_weight)  # fails early on a typo
        for pair in self.compare:
            if len(pair) != 2 or any(a not in self.arms for a in pair):
                fail("compare", f"each entry is [arm, arm] of known arms; got {pair}")


def objective_for_arm(arm: ArmConfig, beta: float, sft_weight: float) -> ObjectiveConfig:
    """The arm's objective: ``sft`` or a loss preset (:func:`~unprior.pipeline.config.objective_for`, as the demo's
    methods), with ``set`` applied and ``drop`` kinds removed."""
    data = to_dict(objective_for(arm.objective, beta, sft_weight))
    for key, value in arm.set.items():
        set_dotted(data, key, value)
    for kind in arm.drop:
        if kind not in data["kinds"]:
            raise ConfigError(f"drop: the objective has no kind {kind!r} (it has {', '.join(data['kinds'])})")
        del data["kinds"][kind]
    return from_dict(ObjectiveConfig, data, prefix="objective.")
