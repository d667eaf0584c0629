"""Preference losses and the NaPO objective as pure functions of sequence log-probs.

No model, tokenizer or trainer in here: every function takes :class:`SeqLogps` (summed log-probs and token counts,
for the policy and the reference) and returns per-example losses with detached rewards. See docs/losses.md.

- Pairwise losses (one table, :data:`LOSSES`): DPO, cDPO, robust DPO, IPO, hinge, SimPO, NaPO (Eq. 9).
- NaPO's dynamic q (Eq. 12) and γ weights (Eq. 13): :func:`noise_q`, :func:`dynamic_gamma`, :func:`global_means`.
- mDPO's conditional image term and anchor: :func:`conditional_image_loss`, :func:`anchor_loss`.
- The objective (Eq. 14): :func:`objective_loss` with an :class:`ObjectiveConfig` (a named preset:
  :func:`objective_preset`, ``preset: NAME`` in YAML).
"""

from unprior.losses.base import LossOutput, SeqLogps
from unprior.losses.config import ORIGINAL_ROLE, PRESETS, KindConfig, ObjectiveConfig, objective_preset
from unprior.losses.distributed import global_mean, global_means
from unprior.losses.dpo import cdpo_loss, dpo_loss, hinge_loss, ipo_loss, nll_loss, robust_dpo_loss, simpo_loss
from unprior.losses.mdpo import anchor_loss, conditional_image_loss
from unprior.losses.napo import dynamic_gamma, lq_loss, napo_loss, noise_q, q_margin
from unprior.losses.objective import ObjectiveOutput, Responses, objective_loss
from unprior.losses.table import LOSSES, LossSpec

__all__ = [
    "LOSSES",
    "ORIGINAL_ROLE",
    "PRESETS",
    "KindConfig",
    "LossOutput",
    "LossSpec",
    "ObjectiveConfig",
    "ObjectiveOutput",
    "Responses",
    "SeqLogps",
    "anchor_loss",
    "cdpo_loss",
    "conditional_image_loss",
    "dpo_loss",
    "dynamic_gamma",
    "global_mean",
    "global_means",
    "hinge_loss",
    "ipo_loss",
    "lq_loss",
    "napo_loss",
    "nll_loss",
    "noise_q",
    "objective_loss",
    "objective_preset",
    "q_margin",
    "robust_dpo_loss",
    "simpo_loss",
]
