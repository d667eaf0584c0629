"""The two small types every loss shares: sequence log-probs in, per-example losses and detached rewards out."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class SeqLogps:
    """Log-probabilities of a batch of responses under one model, summed over the response tokens.

    Attributes:
        sum: ``(B,)`` sum of the response tokens' log-probs, ``log π(y|x)``; prompt and image tokens excluded.
        count: ``(B,)`` number of response tokens ``|y|`` (int or float). A fully masked row has ``count == 0``
            and should carry ``sum == 0``.
    """

    sum: Tensor
    count: Tensor

    @property
    def mean(self) -> Tensor:
        """``(B,)`` length-averaged log-prob ``log π(y|x) / |y|``; a row with no tokens gives 0, not NaN."""
        return self.sum / self.count.clamp_min(1).to(self.sum.dtype)


@dataclass(frozen=True)
class LossOutput:
    """What every preference loss returns.

    Attributes:
        losses: ``(B,)`` per-example losses, not reduced; the only field that carries gradient.
        chosen_rewards: ``(B,)`` detached implicit reward of the chosen response.
        rejected_rewards: ``(B,)`` detached implicit reward of the rejected response.
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor

    @property
    def margins(self) -> Tensor:
        """``(B,)`` detached reward margin, chosen minus rejected."""
        return self.chosen_rewards - self.rejected_rewards


def log_ratio(policy: SeqLogps, reference: SeqLogps) -> Tensor:
    """``(B,)`` summed log-ratio ``log π_θ(y|x) − log π_ref(y|x)`` (Eq. 1 without β and Z)."""
    return policy.sum - reference.sum


def mean_log_ratio(policy: SeqLogps, reference: SeqLogps) -> Tensor:
    """``(B,)`` length-averaged log-ratio ``(log π_θ(y|x) − log π_ref(y|x)) / |y|``."""
    return policy.mean - reference.mean


def dpo_output(losses: Tensor, chosen_logratio: Tensor, rejected_logratio: Tensor, beta: float) -> LossOutput:
    """Wrap ``losses`` with the DPO implicit rewards ``β · log π_θ/π_ref`` of Eq. 1 (summed log-probs), detached."""
    return LossOutput(losses, beta * chosen_logratio.detach(), beta * rejected_logratio.detach())
