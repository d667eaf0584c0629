"""The DPO family as pure functions of sequence log-probs: DPO, cDPO, robust DPO, IPO, hinge, SimPO, and the SFT NLL.

Every pairwise loss takes the same four :class:`SeqLogps` (policy and reference, chosen and rejected) plus keyword
hyperparameters, and returns a :class:`LossOutput` of per-example losses with detached rewards. Write
``ψ = log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x)`` for the summed log-ratio margin; NaPO's Eq. 2
calls ``β·ψ`` "ψ_Σ" (the β-scaled margin). Rewards are DPO's implicit rewards ``β·log π_θ/π_ref`` on summed
log-probs (Eq. 1) for every loss that uses a reference, so that margins and accuracies compare across losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unprior.losses.base import LossOutput, SeqLogps, dpo_output, log_ratio, mean_log_ratio


def _log_ratios(
    policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps
) -> tuple[Tensor, Tensor]:
    return log_ratio(policy_chosen, ref_chosen), log_ratio(policy_rejected, ref_rejected)


def dpo_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps, *,
             beta: float) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290; NaPO Eq. 3): ``−log σ(β·ψ)``.

    This is BPO's loss (TRL's default ``sigmoid`` loss on summed log-probs, arXiv 2403.08730; docs/papers.md, BPO
    step 5) and the loss of the original pair in NaPO's Eq. 14.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Inverse temperature β of the implicit reward.

    Returns:
        Per-example losses ``(B,)`` and detached rewards ``β·log π_θ/π_ref``.
    """
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return dpo_output(losses, chosen, rejected, beta)


def cdpo_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps, *,
              beta: float, label_smoothing: float) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): DPO with label smoothing ε.

    ``L = −(1 − ε)·log σ(β·ψ) − ε·log σ(−β·ψ)``: the binary cross-entropy against the soft label ``1 − ε``.
    It is minimised at a finite margin ``β·ψ = log((1 − ε)/ε)``, so the policy stops pushing confident pairs.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Inverse temperature β.
        label_smoothing: ε in [0, 0.5); 0 is DPO.

    Returns:
        Per-example losses ``(B,)`` and detached rewards.
    """
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    z = beta * (chosen - rejected)
    losses = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return dpo_output(losses, chosen, rejected, beta)


def robust_dpo_loss(
    policy_chosen: SeqLogps,
    policy_rejected: SeqLogps,
    ref_chosen: SeqLogps,
    ref_rejected: SeqLogps,
    *,
    beta: float,
    label_smoothing: float,
) -> LossOutput:
    """Robust DPO (Chowdhury et al. 2024, https://arxiv.org/abs/2403.00409) for a known flip rate ε.

    ``L = [(1 − ε)·ℓ(β·ψ) − ε·ℓ(−β·ψ)] / (1 − 2ε)`` with ``ℓ(z) = −log σ(z)``: an unbiased estimate of the
    clean-label DPO loss when each preference is flipped with probability ε. Unlike cDPO it can be negative, and it
    has no finite minimiser. Same form as TRL's ``robust`` loss.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Inverse temperature β.
        label_smoothing: Assumed flip rate ε in [0, 0.5); 0 is DPO.

    Returns:
        Per-example losses ``(B,)`` and detached rewards.
    """
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    z = beta * (chosen - rejected)
    eps = label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    return dpo_output(losses, chosen, rejected, beta)


def ipo_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps, *,
             beta: float) -> LossOutput:
    """IPO (Azar et al. 2023, https://arxiv.org/abs/2310.12036, Eq. 17): ``(ψ_avg − 1/(2β))²``, β playing τ.

    Deviation from the paper, shared with TRL: ``ψ_avg`` uses *length-averaged* log-ratios
    ``(log π_θ(y|x) − log π_ref(y|x)) / |y|``, so the squared target does not scale with response length (TRL says
    the IPO authors confirmed this form). Rewards are still the summed ``β·log π_θ/π_ref``.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Regularisation strength τ; the target margin is ``1/(2β)``.

    Returns:
        Per-example losses ``(B,)`` and detached rewards.
    """
    avg_margin = mean_log_ratio(policy_chosen, ref_chosen) - mean_log_ratio(policy_rejected, ref_rejected)
    losses = (avg_margin - 1 / (2 * beta)) ** 2
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return dpo_output(losses, chosen, rejected, beta)


def hinge_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps, *,
               beta: float) -> LossOutput:
    """Hinge loss on the DPO margin (SLiC, Zhao et al. 2023, https://arxiv.org/abs/2305.10425): ``max(0, 1 − β·ψ)``.

    As in the DPO paper's and TRL's ``hinge``, β plays the inverse of SLiC's margin δ, and the margin is taken
    relative to the reference.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Reference log-probs of the chosen responses.
        ref_rejected: Reference log-probs of the rejected responses.
        beta: Inverse margin β.

    Returns:
        Per-example losses ``(B,)`` and detached rewards.
    """
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    losses = torch.relu(1 - beta * (chosen - rejected))
    return dpo_output(losses, chosen, rejected, beta)


def simpo_loss(policy_chosen: SeqLogps, policy_rejected: SeqLogps, ref_chosen: SeqLogps | None = None,
               ref_rejected: SeqLogps | None = None, *, beta: float, target_margin: float) -> LossOutput:
    """SimPO (Meng et al. 2024, https://arxiv.org/abs/2405.14734), reference-free and length-normalised.

    ``L = −log σ(β·(log π_θ(y_w|x)/|y_w| − log π_θ(y_l|x)/|y_l|) − γ)``, with γ the *target reward margin*
    (``target_margin`` here, not NaPO's γ weights). The reference arguments are accepted so that every loss has
    the same signature, and ignored. The SimPO paper uses a much larger β than DPO (around 2) and γ around 1.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.
        policy_rejected: Policy log-probs of the rejected responses.
        ref_chosen: Ignored.
        ref_rejected: Ignored.
        beta: Reward scale β.
        target_margin: Target reward margin γ.

    Returns:
        Per-example losses ``(B,)`` and detached rewards ``β·log π_θ(y|x)/|y|`` (SimPO's reward).
    """
    chosen, rejected = beta * policy_chosen.mean, beta * policy_rejected.mean
    losses = -F.logsigmoid(chosen - rejected - target_margin)
    return LossOutput(losses, chosen.detach(), rejected.detach())


def nll_loss(policy_chosen: SeqLogps) -> Tensor:
    """Length-normalised negative log-likelihood of the chosen response, ``−log π_θ(y_w|x) / |y_w|``.

    The SFT anchor of RPO (Pang et al. 2024, https://arxiv.org/abs/2404.19733), used as an optional extra term of
    our objective; neither BPO nor NaPO has it.

    Args:
        policy_chosen: Policy log-probs of the chosen responses, ``(B,)`` each field.

    Returns:
        ``(B,)`` per-token NLL; 0 for a row with no tokens.
    """
    return -policy_chosen.mean
