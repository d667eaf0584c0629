"""Response log-probabilities from logits: per token at the response positions only, then summed and counted.

``log π(y|x) = Σ_t log softmax(logits_t)[y_t]`` over the response tokens (NaPO Eq. 2's ψ_Σ; ψ_μ divides by |y|).
The vocabulary-sized log-softmax is taken only at the positions that are scored, so padding and prompt positions
never get a ``(T, V)`` float32 copy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


HEAD_CHUNK_ELEMENTS = 1 << 24
"""Logits elements (rows × vocabulary) the chunked LM head computes at once: 64 MB in float32."""


def head_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    """``log softmax(head(hidden))[targets]`` per row, without keeping ``(rows, vocabulary)`` logits for backward.

    A plain ``nn.Linear`` head (the usual case: untied or tied, full fine-tuning or frozen) goes through
    :class:`_LinearHeadLogps`: chunks of rows, one logits tile at a time, recomputed in backward for a trainable head
    and not needed there for a frozen one, so the memory of the head is one tile instead of about three full
    ``(rows, vocabulary)`` float32 tensors. Other heads (LoRA-wrapped, sharded DTensor weights, hooked or offloaded
    modules, under autocast) run as ``log_softmax(head(hidden)).gather``, logits kept.

    Args:
        head: the model's output embedding.
        hidden: ``(M, H)`` final hidden states of the positions that predict a scored token.
        targets: ``(M,)`` token ids they predict.

    Returns:
        ``(M,)`` log-probs, float32 (float64 for float64 weights).
    """
    if _plain_linear(head, hidden):
        return _LinearHeadLogps.apply(hidden, head.weight, head.bias, targets)
    return plain_head_logps(head, hidden, targets)


def plain_head_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    """:func:`head_logps` without tiles: the head called as a module, ``log_softmax`` + gather, logits kept for
    backward (the path for heads that cannot be tiled; bench/ measures it against the tiled one)."""
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _plain_linear(head: nn.Module, hidden: Tensor) -> bool:
    return (
        type(head) is nn.Linear
        and type(head.weight) in (nn.Parameter, Tensor)
        and not torch.is_autocast_enabled(hidden.device.type)
        and "forward" not in vars(head)  # accelerate's offloading hooks replace the instance's forward
        and not head._forward_hooks
        and not head._forward_pre_hooks
        and head.weight.device == hidden.device
    )


def _row_chunks(rows: int, vocabulary: int) -> list[slice]:
    step = max(1, HEAD_CHUNK_ELEMENTS // max(1, vocabulary))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


class _LinearHeadLogps(torch.autograd.Function):
    """``z = h Wᵀ + b``, ``logp = log_softmax(z)[t]`` per row, tile by tile; ``∂logp/∂z = onehot(t) − softmax(z)``.

    A trainable head needs ``∂/∂W = Σ_rows g·(onehot − softmax)ᵀ h``, which depends on the upstream gradient ``g``,
    so backward recomputes each tile (one more ``h Wᵀ`` instead of keeping the logits). A frozen head (LoRA, the
    papers' recipe) needs only ``∂/∂h = g·(W[t] − softmax(z) W)``, whose second factor does not depend on ``g``:
    forward computes it per tile while the tile is at hand, keeps it (rows × width), and backward only scales it.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
        dtype = torch.promote_types(weight.dtype, torch.float32)
        out = torch.empty(hidden.shape[0], dtype=dtype, device=hidden.device)
        frozen_head = ctx.needs_input_grad[0] and not any(ctx.needs_input_grad[1:3])
        dlogp_dh = torch.empty(hidden.shape, dtype=dtype, device=hidden.device) if frozen_head else None
        for rows in _row_chunks(hidden.shape[0], weight.shape[0]):
            logits = nn.functional.linear(hidden[rows], weight, bias).to(dtype)
            logp = torch.log_softmax(logits, -1)
            out[rows] = logp.gather(-1, targets[rows, None]).squeeze(-1)
            if dlogp_dh is not None:
                probs = logp.exp_()
                dlogp_dh[rows] = weight[targets[rows]].to(dtype) - (probs.to(weight.dtype) @ weight).to(dtype)
        if dlogp_dh is not None:
            ctx.save_for_backward(dlogp_dh)
        else:
            ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.frozen_head, ctx.hidden_dtype = frozen_head, hidden.dtype
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        if ctx.frozen_head:
            (dlogp_dh,) = ctx.saved_tensors
            return (grad[:, None] * dlogp_dh).to(ctx.hidden_dtype), None, None, None
        hidden, weight, bias, targets = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=grad.dtype) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=grad.dtype) if need_b else None
        for rows in _row_chunks(hidden.shape[0], weight.shape[0]):
            h = hidden[rows]
            logits = nn.functional.linear(h, weight, bias).to(grad.dtype)
            # dL/dz = g · (onehot(t) − softmax(z)), built in the softmax tile.
            dz = torch.softmax(logits, -1).mul_(-grad[rows, None])
            dz.scatter_add_(-1, targets[rows, None], grad[rows, None])
            if grad_h is not None:
                grad_h[rows] = (dz.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(dz.t(), h.to(grad.dtype))
            if grad_b is not None:
                grad_b.add_(dz.sum(0))
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_h, grad_w, grad_b, None
