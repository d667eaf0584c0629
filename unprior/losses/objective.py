"""The training objective (NaPO Eq. 14): ``Σ_k γ_k·L_k`` over negative kinds, plus optional SFT and mDPO terms.

Per example ``i``::

    loss_i = Σ_k γ_k · m_ik · L_k(chosen_i, negative_ik)          # Eq. 14; m_ik = 1 where kind k exists for row i
           + sft_weight · NLL(chosen_i) / |chosen_i|               # RPO-style SFT anchor (our addition)
           + conditional_weight · L_cond(chosen_i; image vs corrupted image) + anchor_weight · L_anchor(chosen_i)

γ_k is fixed or dynamic (Eq. 13 with the N4 guard); q of each NaPO kind is fixed or dynamic (Eq. 12). Both dynamic
quantities come from global-batch means taken with one ``all_reduce`` before any loss is computed, and carry no
gradient. The caller reduces ``losses`` (usually ``.mean()``); a kind missing from a row adds 0 for that row, so
its share of the batch mean is the fraction of rows that have it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from unprior.losses.base import LossOutput, SeqLogps
from unprior.losses.config import KindConfig, ObjectiveConfig
from unprior.losses.distributed import global_means
from unprior.losses.dpo import nll_loss
from unprior.losses.mdpo import anchor_loss, conditional_image_loss
from unprior.losses.napo import dynamic_gamma, noise_q, q_margin
from unprior.losses.table import LOSSES


@dataclass(frozen=True)
class Responses:
    """One set of responses for a batch: their policy log-probs, reference log-probs, and which rows have one.

    Attributes:
        policy: Policy log-probs, ``(B,)`` each field; carries gradient.
        reference: Reference log-probs, or None when no term needs them.
        mask: ``(B,)`` bool, True where the row has this response; None = every row. Absent rows must still hold
            finite values (e.g. sum 0, count 0): they are excluded from the loss, the means and q / γ.
    """

    policy: SeqLogps
    reference: SeqLogps | None = None
    mask: Tensor | None = None


@dataclass(frozen=True)
class ObjectiveOutput:
    """Result of :func:`objective_loss`.

    Attributes:
        losses: ``(B,)`` total per-example loss; reduce it (``.mean()``) and back-propagate.
        metrics: Flat ``{name: detached scalar tensor}``. The keys depend only on the config: ``loss``,
            ``logps/chosen``; per kind ``loss/<k>``, ``rewards/chosen/<k>``, ``rewards/rejected/<k>``,
            ``rewards/margins/<k>``, ``accuracy/<k>``, ``logps/rejected/<k>``, ``present/<k>``, ``gamma/<k>``;
            ``q/<k>`` for NaPO kinds and ``q_margin/<k>`` (global ψ̄) for dynamic-q kinds; ``loss/sft``,
            ``loss/conditional``, ``rewards/margins/conditional``, ``loss/anchor`` when those terms are on.
            Per-kind values are local means over the rows present; q, q_margin and gamma are global.
    """

    losses: Tensor
    metrics: dict[str, Tensor]


def objective_loss(chosen: Responses, negatives: Mapping[str, Responses], config: ObjectiveConfig, *,
                   corrupted: Responses | None = None) -> ObjectiveOutput:
    """NaPO's objective (Eq. 14) for one batch, configured per negative kind.

    In data-parallel training every rank must call this with the same config, since the dynamic q and γ use one
    collective ``all_reduce`` (see :func:`unprior.losses.global_means`).

    Args:
        chosen: The chosen responses (``chosen.mask`` is ignored: every row has a chosen answer).
        negatives: ``{kind: Responses}`` with exactly the config's kinds.
        config: The objective.
        corrupted: The chosen answers scored with a corrupted image; needed when ``config.conditional_weight > 0``.

    Returns:
        Per-example losses ``(B,)`` and detached metrics.
    """
    _check_inputs(chosen, negatives, config, corrupted)
    stats = global_means(_batch_statistics(chosen, negatives, config))
    gammas = _gammas(config, stats, like=chosen.policy.sum)
    losses = torch.zeros_like(chosen.policy.sum)
    metrics = {"logps/chosen": chosen.policy.sum.detach().mean()}
    for name, kind in config.kinds.items():
        negative = negatives[name]
        present = _present(negative, like=losses)
        q = _q(kind, stats.get(f"q_margin/{name}"), like=losses)
        out = _kind_loss(config, name, chosen, negative, q)
        losses = losses + gammas[name] * torch.where(present, out.losses, 0)
        metrics |= _kind_metrics(name, out, negative, present)
        metrics[f"gamma/{name}"] = gammas[name]
        if q is not None:
            metrics[f"q/{name}"] = q
        if f"q_margin/{name}" in stats:
            metrics[f"q_margin/{name}"] = stats[f"q_margin/{name}"]
    extra, extra_metrics = _extra_terms(chosen, corrupted, config)
    losses = losses + extra
    metrics |= extra_metrics
    metrics["loss"] = losses.detach().mean()
    return ObjectiveOutput(losses, metrics)


def _check_inputs(
    chosen: Responses, negatives: Mapping[str, Responses], config: ObjectiveConfig, corrupted: Responses | None
) -> None:
    if set(negatives) != set(config.kinds):
        raise ValueError(f"negative kinds {sorted(negatives)} do not match the objective's {sorted(config.kinds)}")
    with_reference = {
        name: negatives[name] for name, kind in config.kinds.items() if LOSSES[kind.loss].needs_reference
    }
    if config.needs_reference:
        with_reference["chosen"] = chosen
    missing = sorted(name for name, responses in with_reference.items() if responses.reference is None)
    if missing:
        raise ValueError(f"reference log-probs are needed for {', '.join(missing)}")
    if config.conditional_weight > 0 and (corrupted is None or corrupted.reference is None):
        raise ValueError("conditional_weight > 0 needs `corrupted` with policy and reference log-probs")


def _present(responses: Responses, like: Tensor) -> Tensor:
    if responses.mask is None:
        return torch.ones_like(like, dtype=torch.bool)
    return responses.mask.to(torch.bool)


def _batch_statistics(
    chosen: Responses, negatives: Mapping[str, Responses], config: ObjectiveConfig
) -> dict[str, tuple[Tensor, Tensor | None]]:
    """The per-row columns whose global means drive the dynamic q (``q_margin/k``) and γ (``reward_margin/k``)."""
    columns: dict[str, tuple[Tensor, Tensor | None]] = {}
    for name, kind in config.kinds.items():
        neg = negatives[name]
        logps = (chosen.policy, neg.policy, chosen.reference, neg.reference)
        if LOSSES[kind.loss].uses_q and kind.q_mode == "dynamic":
            columns[f"q_margin/{name}"] = (q_margin(*logps, kind.margin), neg.mask)
        if config.gamma == "dynamic":
            columns[f"reward_margin/{name}"] = (config.kind_beta(name) * q_margin(*logps, "sum"), neg.mask)
    return columns


def _gammas(config: ObjectiveConfig, stats: Mapping[str, Tensor], like: Tensor) -> dict[str, Tensor]:
    if config.gamma == "dynamic":
        margins = {name: stats[f"reward_margin/{name}"] for name in config.kinds}
        return dynamic_gamma(margins, eps=config.gamma_eps)
    return {
        name: torch.tensor(kind.weight, dtype=like.dtype, device=like.device) for name, kind in config.kinds.items()
    }


def _q(kind: KindConfig, mean_margin: Tensor | None, like: Tensor) -> Tensor | None:
    if not LOSSES[kind.loss].uses_q:
        return None
    if kind.q_mode == "fixed":
        return torch.tensor(kind.q, dtype=like.dtype, device=like.device)
    return noise_q(mean_margin, alpha=kind.alpha, formula=kind.q_formula)


def _kind_loss(
    config: ObjectiveConfig, name: str, chosen: Responses, negative: Responses, q: Tensor | None
) -> LossOutput:
    kind = config.kinds[name]
    spec = LOSSES[kind.loss]
    options = {option: getattr(kind, option) for option in spec.options}
    if spec.uses_q:
        options["q"] = q
    beta = config.kind_beta(name)
    return spec.fn(chosen.policy, negative.policy, chosen.reference, negative.reference, beta=beta, **options)


def _masked_mean(values: Tensor, present: Tensor) -> Tensor:
    values = values.detach()
    return torch.where(present, values, 0).sum() / present.sum().clamp_min(1)


def _kind_metrics(name: str, out: LossOutput, negative: Responses, present: Tensor) -> dict[str, Tensor]:
    return {
        f"loss/{name}": _masked_mean(out.losses, present),
        f"rewards/chosen/{name}": _masked_mean(out.chosen_rewards, present),
        f"rewards/rejected/{name}": _masked_mean(out.rejected_rewards, present),
        f"rewards/margins/{name}": _masked_mean(out.margins, present),
        f"accuracy/{name}": _masked_mean((out.margins > 0).to(out.margins.dtype), present),
        f"logps/rejected/{name}": _masked_mean(negative.policy.sum, present),
        f"present/{name}": present.to(out.margins.dtype).mean(),
    }


def _extra_terms(
    chosen: Responses, corrupted: Responses | None, config: ObjectiveConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """The terms outside Eq. 14: the SFT anchor and mDPO's conditional image term and reward anchor."""
    total = torch.zeros_like(chosen.policy.sum)
    metrics: dict[str, Tensor] = {}
    if config.sft_weight > 0:
        nll = nll_loss(chosen.policy)
        total = total + config.sft_weight * nll
        metrics["loss/sft"] = nll.detach().mean()
    if config.conditional_weight > 0:
        cond = conditional_image_loss(
            chosen.policy, corrupted.policy, chosen.reference, corrupted.reference, beta=config.beta
        )
        total = total + config.conditional_weight * cond.losses
        metrics["loss/conditional"] = cond.losses.detach().mean()
        metrics["rewards/margins/conditional"] = cond.margins.mean()
    if config.anchor_weight > 0:
        anchor = anchor_loss(chosen.policy, chosen.reference, beta=config.beta, delta=config.anchor_delta)
        total = total + config.anchor_weight * anchor.losses
        metrics["loss/anchor"] = anchor.losses.detach().mean()
    return total, metrics
