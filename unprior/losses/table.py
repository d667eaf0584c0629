"""The one table of pairwise losses: name -> function and what it needs. Adding a loss is one function, one row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unprior.losses.base import LossOutput
from unprior.losses.dpo import cdpo_loss, dpo_loss, hinge_loss, ipo_loss, robust_dpo_loss, simpo_loss
from unprior.losses.napo import napo_loss


@dataclass(frozen=True)
class LossSpec:
    """A pairwise loss and what a caller must give it."""

    fn: Callable[..., LossOutput]
    """``fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, beta, **options) -> LossOutput``."""
    needs_reference: bool
    """False when the reference arguments are ignored (a trainer can then skip the reference forward)."""
    uses_q: bool = False
    """True when ``fn`` takes the noise-robustness ``q`` keyword (fixed, or dynamic from Eq. 12)."""
    options: tuple[str, ...] = ()
    """Per-kind config fields (:class:`unprior.losses.config.KindConfig`) passed to ``fn`` as keywords."""


LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec(dpo_loss, needs_reference=True),
    "cdpo": LossSpec(cdpo_loss, needs_reference=True, options=("label_smoothing",)),
    "robust": LossSpec(robust_dpo_loss, needs_reference=True, options=("label_smoothing",)),
    "ipo": LossSpec(ipo_loss, needs_reference=True),
    "hinge": LossSpec(hinge_loss, needs_reference=True),
    "simpo": LossSpec(simpo_loss, needs_reference=False, options=("target_margin",)),
    "napo": LossSpec(napo_loss, needs_reference=True, uses_q=True),
}
"""Every pairwise loss by config name. "dpo" is TRL's "sigmoid"."""
