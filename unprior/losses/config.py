"""The objective's config (Eq. 14, per negative kind) and its named presets.

The named presets (:data:`PRESETS`, defined here only): :func:`objective_preset`, or in YAML ``objective: {preset:
napo, kinds: {vision_bias: {alpha: 0.05}}}`` (the preset with the other keys merged over it, docs/losses.md).

Kind names are the negative kinds of the pairs data (:data:`unprior.formats.pairs.NEGATIVE_KINDS`: ``original``,
``image_weakening``, ``error_injection``, ``language_bias``, ``vision_bias``); the name of a kind in ``kinds`` says
which negatives play that term's role. NaPO's Eq. 14 has an "original pair" term (RLAIF-V's own rejected answer,
kind ``original``). Generated datasets such as the embedded world have no source rejected answer, so the default
presets give that role to the error-injected negatives (``error_injection``, BPO's text-LLM rewrites of the chosen
answer); the ``*_original`` presets keep the paper's ``original``. The objective refuses inputs whose kinds differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from unprior.config import ConfigError, check_choice, check_range, fail
from unprior.losses.table import LOSSES

KIND_NAME = re.compile(r"[A-Za-z0-9_-]+")

ORIGINAL_ROLE = "error_injection"
"""The kind that plays NaPO's "original pair" role (Eq. 14's L_DPO term) in the default presets: generated pairs
have no source rejected answer, so BPO's error-injected negative stands in for it. The ``*_original`` presets use
``original`` (the source dataset's rejected answer, e.g. RLAIF-V)."""


@dataclass
class KindConfig:
    """How one negative kind enters the objective: its loss, β, fixed weight, and (for NaPO) its q."""

    loss: str = "dpo"
    """Pairwise loss, a key of unprior.losses.LOSSES: dpo, cdpo, robust, ipo, hinge, simpo, napo."""
    weight: float = 1.0
    """Fixed weight γ_k of this kind's loss in Eq. 14; used when the objective's gamma is "fixed"."""
    beta: float | None = None
    """β for this kind; null uses the objective's beta."""
    label_smoothing: float = 0.0
    """ε of cdpo (label smoothing) and robust (assumed preference-flip rate), in [0, 0.5)."""
    target_margin: float = 0.5
    """SimPO's target reward margin γ (simpo only; unrelated to the γ weights of Eq. 13)."""
    q_mode: Literal["fixed", "dynamic"] = "dynamic"
    """napo only: "dynamic" sets q each step from the global-batch mean margin (Eq. 12); "fixed" uses q."""
    q: float = 0.5
    """napo with q_mode fixed: q in [0, 1]; 0 is DPO exactly, 1 is MAE 1 − σ(z)."""
    q_formula: Literal["code", "paper"] = "code"
    """napo dynamic q: "code" = clamp(2·(1 − σ(α·ψ̄)), 0.001, 1), the official code (α was tuned with it);
    "paper" = clamp(1 − σ(α·ψ̄), 0.01, 1), Eq. 12 as printed."""
    alpha: float = 0.5
    """napo dynamic q: scale α of the margin (paper: 0.5 for language-biased "avg", 0.01 for vision-biased "sum")."""
    margin: Literal["avg", "sum"] = "avg"
    """napo dynamic q: margin ψ̄ on length-averaged ("avg", ψ_μ) or summed ("sum", ψ_Σ) log-probs, without β."""

    def validate(self) -> None:
        check_choice(self, "loss", LOSSES)
        check_range(self, "weight", lo=0.0)
        if self.beta is not None and self.beta <= 0:
            fail("beta", f"must be > 0 (or null for the objective's beta), got {self.beta!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            fail("label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing!r}")
        check_range(self, "q", lo=0.0, hi=1.0)
        check_range(self, "alpha", lo=0.0)


@dataclass
class ObjectiveConfig:
    """The training objective ``Σ_k γ_k·L_k`` over negative kinds (NaPO Eq. 14), plus optional extra terms."""

    kinds: dict[str, KindConfig] = field(default_factory=lambda: {ORIGINAL_ROLE: KindConfig()})
    """Negative kinds of the pairs data, by name (letters, digits, _ and -), each with its loss; the default is plain
    DPO on the error-injected negatives (preset ``dpo``)."""
    beta: float = 0.1
    """β shared by every kind that does not set its own, and by the mDPO terms (both papers use 0.1)."""
    gamma: Literal["fixed", "dynamic"] = "fixed"
    """Weights γ_k: "fixed" uses each kind's weight; "dynamic" uses Eq. 13 with a guard (ignores the weights)."""
    gamma_eps: float = 0.01
    """Dynamic γ: ε added to each clamped mean reward margin max(mean β·ψ_Σ, 0) before normalising (N4)."""
    sft_weight: float = 0.0
    """Weight of an SFT anchor, the length-normalised NLL of the chosen answer (RPO-style; our addition)."""
    conditional_weight: float = 0.0
    """Weight of mDPO's conditional image term (chosen answer, original vs corrupted image); mDPO uses 1."""
    anchor_weight: float = 0.0
    """Weight of mDPO's reward anchor −log σ(β·log π_θ/π_ref(chosen) − δ); mDPO uses 1."""
    anchor_delta: float = 0.0
    """mDPO's anchor δ (mDPO uses 0)."""

    def validate(self) -> None:
        if not self.kinds:
            fail("kinds", "needs at least one negative kind")
        for name, kind in self.kinds.items():
            if not KIND_NAME.fullmatch(name):
                fail(f"kinds.{name}", "kind names may hold only letters, digits, '_' and '-'")
            _validate_kind(name, kind)
        if self.beta <= 0:
            fail("beta", f"must be > 0, got {self.beta!r}")
        if self.gamma_eps <= 0:
            fail("gamma_eps", f"must be > 0, got {self.gamma_eps!r}")
        for name in ("sft_weight", "conditional_weight", "anchor_weight"):
            check_range(self, name, lo=0.0)
        if self.gamma == "dynamic":
            free = [name for name, kind in self.kinds.items() if not LOSSES[kind.loss].needs_reference]
            if free:
                fail("gamma", f"dynamic γ (Eq. 13) needs reference rewards; kind '{free[0]}' is reference-free")

    @property
    def needs_reference(self) -> bool:
        """Whether any term reads reference log-probs (False only for reference-free losses and SFT)."""
        mdpo = self.conditional_weight > 0 or self.anchor_weight > 0
        return mdpo or any(LOSSES[kind.loss].needs_reference for kind in self.kinds.values())

    def kind_beta(self, name: str) -> float:
        """β of kind ``name``: its own, else the objective's."""
        beta = self.kinds[name].beta
        return self.beta if beta is None else beta

    @staticmethod
    def preset(name: str) -> ObjectiveConfig:
        return objective_preset(name)  # what ``preset: NAME`` reads as (unprior.config.from_dict)


def _validate_kind(name: str, kind: KindConfig) -> None:
    try:
        kind.validate()
    except ConfigError as e:
        raise ConfigError(str(e).replace("config field '", f"config field 'kinds.{name}.", 1)) from None


def _napo_kinds(original: str, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> dict[str, KindConfig]:
    """NaPO's three terms (Eq. 14) and their fixed weights; ``original`` names the kind playing the original pair."""
    w_original, w_language, w_vision = weights
    return {
        original: KindConfig(loss="dpo", weight=w_original),
        "language_bias": KindConfig(loss="napo", q_mode="dynamic", margin="avg", alpha=0.5, weight=w_language),
        "vision_bias": KindConfig(loss="napo", q_mode="dynamic", margin="sum", alpha=0.01, weight=w_vision),
    }


BIASED_KINDS = ("language_bias", "vision_bias")
"""The kinds whose loss NaPO makes noise-robust (Eq. 14); the baselines below swap the loss of these two only."""
NOISE_EPS = 0.1
"""ε of the cdpo and rdpo presets: not tuned to a noise rate, which a user does not know (docs/experiments.md §4)."""


def _napo_swapped(**biased: Any) -> ObjectiveConfig:
    """NaPO's Eq. 14 (DPO on the original pair, dynamic γ) with ``KindConfig(**biased)`` on both biased kinds."""
    kinds = _napo_kinds(ORIGINAL_ROLE)
    kinds.update({name: KindConfig(**biased) for name in BIASED_KINDS})
    return ObjectiveConfig(kinds=kinds, gamma="dynamic")


PRESETS: dict[str, Callable[[], ObjectiveConfig]] = {
    "dpo": lambda: ObjectiveConfig(kinds={ORIGINAL_ROLE: KindConfig(loss="dpo")}),
    "dpo_original": lambda: ObjectiveConfig(kinds={"original": KindConfig(loss="dpo")}),
    "bpo": lambda: ObjectiveConfig(
        kinds={"image_weakening": KindConfig(loss="dpo"), "error_injection": KindConfig(loss="dpo")}
    ),
    "napo": lambda: ObjectiveConfig(kinds=_napo_kinds(ORIGINAL_ROLE), gamma="dynamic"),
    "napo_original": lambda: ObjectiveConfig(kinds=_napo_kinds("original"), gamma="dynamic"),
    "napo_fixed": lambda: ObjectiveConfig(kinds=_napo_kinds(ORIGINAL_ROLE, (0.04, 0.48, 0.48)), gamma="fixed"),
    "napo_fixed_q": lambda: _napo_swapped(loss="napo", q_mode="fixed", q=0.5),
    "cdpo": lambda: _napo_swapped(loss="cdpo", label_smoothing=NOISE_EPS),
    "rdpo": lambda: _napo_swapped(loss="robust", label_smoothing=NOISE_EPS),
    "mdpo": lambda: ObjectiveConfig(
        kinds={ORIGINAL_ROLE: KindConfig(loss="dpo")}, conditional_weight=1.0, anchor_weight=1.0
    ),
}
"""Named objectives, the only definition of each (a config names one as ``preset: NAME``)."""


def objective_preset(name: str) -> ObjectiveConfig:
    """A fresh, validated copy of a named objective.

    The original-pair role is played by ``error_injection`` (:data:`ORIGINAL_ROLE`) unless the name ends in
    ``_original``, where it is the source dataset's own rejected answer (``original``).

    - ``dpo`` / ``dpo_original``: DPO on the original pair only (NaPO Table 1, "L_DPO w/ RLAIF-V").
    - ``bpo``: plain DPO, weight 1, on BPO's (arXiv 2403.08730) two kinds, ``image_weakening`` and ``error_injection``.
    - ``napo`` / ``napo_original``: the paper (Eq. 14): DPO on the original pair; NaPO on ``language_bias`` with
      dynamic q from ψ_μ, α = 0.5; NaPO on ``vision_bias`` with dynamic q from ψ_Σ, α = 0.01; β = 0.1; dynamic γ
      (Eq. 13).
    - ``napo_fixed``: as ``napo`` with the fixed weights 0.04 / 0.48 / 0.48 of the official code's later runs.
    - ``napo_fixed_q``: as ``napo`` with a fixed q = 0.5 on both biased kinds instead of Eq. 12's dynamic q.
    - ``cdpo`` / ``rdpo``: as ``napo`` with conservative DPO (Mitchell 2023) / robust DPO (Chowdhury et al. 2024,
      arXiv 2403.00409) at ε = 0.1 on both biased kinds instead of the NaPO loss: the label-noise baselines.
    - ``mdpo``: DPO plus mDPO's (arXiv 2406.11839) conditional image term and anchor, weight 1 each (NaPO's strongest
      baseline); the trainer then scores the chosen answers with a corrupted image too.

    Args:
        name: A key of :data:`PRESETS`.

    Returns:
        The config; mutating it does not change the preset.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown objective preset {name!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    cfg.validate()
    return cfg
