"""Response log-probabilities from logits: per token at the response positions only, then summed and counted.

``log π(y|x) = Σ_t log softmax(logits_t)[y_t]`` over the response tokens (NaPO Eq. 2's ψ_Σ; ψ_μ divides by |y|).
The vocabulary-sized log-softmax is taken only at the positions that are scored, so padding and prompt positions
never get a ``(T, V)`` float32 copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unprior.losses import SeqLogps


def token_logps(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Log-probability of each target token where ``mask`` is set, 0 elsewhere.

    Args:
        logits: ``(N, T, V)`` next-token logits; ``logits[n, t]`` predicts ``targets[n, t]``.
        targets: ``(N, T)`` token ids (any value where ``mask`` is False).
        mask: ``(N, T)`` bool, True at the scored positions.

    Returns:
        ``(N, T)`` float32 (or float64 for float64 logits) log-probs, exactly 0 outside ``mask``.
    """
    mask = mask.to(torch.bool)
    picked = logits[mask]  # (M, V): only the scored positions
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))
    chosen = picked.gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
    values = chosen - torch.logsumexp(picked, dim=-1)
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return out.masked_scatter(mask, values)


def sequence_logps(logits: Tensor, targets: Tensor, mask: Tensor) -> SeqLogps:
    """Summed response log-probs and token counts, ``(N,)`` each; a row with no scored token gives sum 0, count 0."""
    per_token = token_logps(logits, targets, mask)
    return SeqLogps(sum=per_token.sum(-1), count=mask.sum(-1).to(per_token.dtype))
