"""mDPO's two extra terms (Wang et al. 2024, "mDPO: Conditional Preference Optimization for Multimodal LLMs",
https://arxiv.org/abs/2406.11839): a conditional image preference and a reward anchor.

mDPO = DPO + conditional term + anchor, each with weight 1. It is the strongest baseline in NaPO's Table 1
("L_MDPO w/ RLAIF-V"). Where DPO contrasts two answers under one image, the conditional term contrasts one answer
(the chosen one) under two images, so the policy cannot win by ignoring the image. The anchor keeps the chosen
reward from falling below δ, which pairwise losses alone allow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unprior.losses.base import LossOutput, SeqLogps, dpo_output, log_ratio
from unprior.losses.dpo import dpo_loss


def conditional_image_loss(policy_chosen: SeqLogps, policy_corrupted: SeqLogps, ref_chosen: SeqLogps,
                           ref_corrupted: SeqLogps, *, beta: float) -> LossOutput:
    """mDPO's conditional preference: the chosen answer with the original image beats it with a corrupted image.

    ``L = −log σ(β·log π_θ(y_w|m,x)/π_ref(y_w|m,x) − β·log π_θ(y_w|m',x)/π_ref(y_w|m',x))``, where ``m'`` is the
    corrupted image (mDPO crops it heavily; any image weakening works). It is DPO with the corrupted-image score
    of the chosen answer in the rejected slot.

    Args:
        policy_chosen: Policy log-probs of the chosen answer with the original image, ``(B,)`` each field.
        policy_corrupted: Policy log-probs of the same answer with the corrupted image.
        ref_chosen: Reference log-probs of the chosen answer with the original image.
        ref_corrupted: Reference log-probs of the same answer with the corrupted image.
        beta: Inverse temperature β.

    Returns:
        Per-example losses ``(B,)``; ``rejected_rewards`` are the corrupted-image rewards.
    """
    return dpo_loss(policy_chosen, policy_corrupted, ref_chosen, ref_corrupted, beta=beta)


def anchor_loss(policy_chosen: SeqLogps, ref_chosen: SeqLogps, *, beta: float, delta: float = 0.0) -> LossOutput:
    """mDPO's reward anchor: ``−log σ(β·log π_θ(y_w|m,x)/π_ref(y_w|m,x) − δ)``, pushing the chosen reward above δ.

    Args:
        policy_chosen: Policy log-probs of the chosen answer, ``(B,)`` each field.
        ref_chosen: Reference log-probs of the chosen answer.
        beta: Inverse temperature β.
        delta: Anchor δ (mDPO uses 0).

    Returns:
        Per-example losses ``(B,)``; ``rejected_rewards`` is the constant anchor δ.
    """
    chosen = log_ratio(policy_chosen, ref_chosen)
    losses = -F.logsigmoid(beta * chosen - delta)
    anchor = torch.full_like(chosen, delta / beta).detach()
    return dpo_output(losses, chosen, anchor, beta)
