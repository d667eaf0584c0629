"""NaPO (Zhang et al., CVPR 2025, https://arxiv.org/abs/2503.17928): the noise-robust loss, dynamic q and γ weights.

Equation numbers are the NaPO paper's. Where the paper and its official code (``zhangzef/NaPO``) disagree we follow
the code, because the published α values were tuned with it (docs/papers.md, N1–N4):

- **N1, q formula.** Eq. 12 says ``q = 1 − σ(α·ψ̄)``; the code computes ``q = clamp(2·(1 − σ(α·ψ̄)), 0.001, 1)``.
  Both are available (``formula="paper"`` / ``"code"``); the default is the code's.
- **N2, no β in the q margin.** Eq. 12 uses ψ from Eq. 2, which contains β; the code's margin does not. We use the
  β-free margin in both formulas, so α means the same thing in each. The paper's literal Eq. 12 is ``α' = α/β``.
- **N3, batch mean.** q is computed from the mean margin over the global batch (all data-parallel ranks), detached:
  one scalar per negative kind per step.
- **N4, γ guard.** Eq. 13 normalises mean margins that are ≈ 0 at step 0 and can be negative. We use
  ``w_k = max(mean β·ψ_Σ, 0) + ε``, normalise, and clip to [0.01, 1], all without gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unprior.losses.base import LossOutput, SeqLogps, dpo_output, log_ratio, mean_log_ratio

QFormula = Literal["code", "paper"]
MarginType = Literal["avg", "sum"]

GAMMA_MIN, GAMMA_MAX = 0.01, 1.0
"""Bounds of the dynamic γ weights (paper: "truncated to [0.01, 1]")."""

Q_FORMULAS: dict[str, Callable[[Tensor], Tensor]] = {
    # 1 − σ(x) is σ(−x), which keeps its precision for large x.
    "code": lambda x: (2 * torch.sigmoid(-x)).clamp(0.001, 1.0),
    "paper": lambda x: torch.sigmoid(-x).clamp(0.01, 1.0),
}
"""q as a function of ``x = α·ψ̄``: the official code's form (N1) and the paper's Eq. 12 with its [0.01, 1] clip."""


def lq_loss(z: Tensor, q: float | Tensor) -> Tensor:
    """Generalised cross-entropy ``(1 − σ(z)^q)/q`` (Eq. 9), elementwise.

    Computed as ``−expm1(q·log σ(z))/q``, which is accurate for every ``q`` in [0, 1] and every finite ``z``:
    ``log σ`` never underflows, and ``expm1`` keeps the small-q limit. ``q == 0`` gives ``−log σ(z)`` exactly
    (Eq. 10, DPO/BCE); ``q == 1`` gives ``1 − σ(z)`` (MAE); in between ``1 − σ(z) ≤ L ≤ −log σ(z)`` (Eq. 11).

    Args:
        z: Logits of any shape, e.g. ``(B,)`` margins ``β·ψ_Σ``.
        q: Scalar or tensor broadcastable to ``z``, in [0, 1].

    Returns:
        Losses with the broadcast shape of ``z`` and ``q``.
    """
    log_p = F.logsigmoid(z)
    q = torch.as_tensor(q, dtype=z.dtype, device=z.device)
    positive = q > 0
    # The q = 0 branch must not divide by zero: where() would still back-propagate 0·inf = NaN into z.
    safe_q = torch.where(positive, q, torch.ones_like(q))
    return torch.where(positive, -torch.expm1(safe_q * log_p) / safe_q, -log_p)


def napo_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps, *,
              beta: float, q: float | Tensor) -> LossOutput:
    """NaPO loss (Eq. 9): ``(1 − σ(β·ψ)^q)/q`` on the summed log-ratio margin, as in the official code.

    Its gradient is DPO's times ``σ(β·ψ)^q``, so pairs the policy currently gets wrong (where label noise sits)
    are down-weighted; the loss is bounded by ``1/q``. ``q = 0`` is DPO exactly, ``q = 1`` is MAE ``1 − σ(β·ψ)``.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Inverse temperature β.
        q: Robustness in [0, 1]: a float, a scalar tensor (dynamic q, :func:`noise_q`) or a ``(B,)`` tensor.
            It is treated as a constant; pass it detached.

    Returns:
        Per-example losses ``(B,)`` and detached DPO rewards.
    """
    chosen, rejected = log_ratio(policy_chosen, ref_chosen), log_ratio(policy_rejected, ref_rejected)
    losses = lq_loss(beta * (chosen - rejected), q)
    return dpo_output(losses, chosen, rejected, beta)


def q_margin(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps,
             margin: MarginType) -> Tensor:
    """Per-example margin that drives the dynamic q (Eq. 2 without β, as in the official code; N2).

    ``"sum"`` is ψ_Σ/β, on summed log-probs; ``"avg"`` is ψ_μ/β, on length-averaged log-probs. The paper uses
    ``"avg"`` for language-biased negatives and ``"sum"`` for vision-biased ones (Table 4).

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        margin: ``"avg"`` or ``"sum"``.

    Returns:
        ``(B,)`` detached margins.
    """
    ratio = mean_log_ratio if margin == "avg" else log_ratio
    return (ratio(policy_chosen, ref_chosen) - ratio(policy_rejected, ref_rejected)).detach()


def noise_q(mean_margin: Tensor | float, *, alpha: float, formula: QFormula = "code") -> Tensor:
    """Dynamic noise-robustness coefficient q (Eq. 12) from a batch-mean margin ψ̄.

    - ``"code"`` (default): ``q = clamp(2·(1 − σ(α·ψ̄)), 0.001, 1)``: q = 1 (MAE) while the margin is ≤ 0, and
      falls towards 0 (DPO) as the policy separates the pair. α = 0.5 (avg) and 0.01 (sum) were tuned with this.
    - ``"paper"``: ``q = clamp(1 − σ(α·ψ̄), 0.01, 1)``: q = 0.5 at a zero margin and never above 1/2.

    A small margin means likely-noisy negatives, hence a larger, more robust q.

    Args:
        mean_margin: Scalar ψ̄, the global-batch mean of :func:`q_margin` (see :func:`global_mean`).
        alpha: Scale α that puts the margin in the sigmoid's sensitive range.
        formula: ``"code"`` or ``"paper"``.

    Returns:
        Detached scalar tensor q.
    """
    return Q_FORMULAS[formula](alpha * torch.as_tensor(mean_margin).detach())


def dynamic_gamma(mean_margins: Mapping[str, Tensor], *, eps: float) -> dict[str, Tensor]:
    """Dynamic loss weights γ_k (Eq. 13) from per-kind global-batch mean reward margins, with the N4 guard.

    ``w_k = max(m_k, 0) + ε``, ``γ_k = clamp(w_k / Σ_j w_j, 0.01, 1)``, where ``m_k`` is the mean of
    ``β·ψ_Σ`` for kind k. Without the guard, Eq. 13 divides ≈ 0 by ≈ 0 at step 0 (policy = reference) and flips
    sign when margins are negative. With it, all-zero margins give equal weights ``1/K``, and a kind whose margin is
    ≤ 0 gets the floor weight. The official code leaves this branch commented out (it uses fixed weights); its
    commented form also took the margins without gradient and floored γ at 0.01.

    Args:
        mean_margins: ``{kind: scalar mean reward margin}``.
        eps: ε, in reward units; the margin size below which weights stay near uniform.

    Returns:
        ``{kind: detached scalar γ_k}``; they sum to 1 unless clipping moved them.
    """
    weights = {kind: torch.as_tensor(m).detach().clamp_min(0) + eps for kind, m in mean_margins.items()}
    total = sum(weights.values())
    return {kind: (w / total).clamp(GAMMA_MIN, GAMMA_MAX) for kind, w in weights.items()}
