"""Batch means over all data-parallel ranks, for the statistics that NaPO's q and γ are computed from (N3)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor


def global_means(columns: Mapping[str, tuple[Tensor, Tensor | None]]) -> dict[str, Tensor]:
    """Masked means of several ``(B,)`` columns over the whole global batch, with one ``all_reduce``.

    Each rank contributes its sums and counts, so the result is the mean over all present rows of all ranks (not a
    mean of per-rank means). Outside ``torch.distributed`` (or before ``init_process_group``) it is the local mean.
    Every rank must call this with the same column names in the same order, since it is a collective.

    Args:
        columns: ``{name: (values, mask)}``; ``values`` ``(B,)``, ``mask`` ``(B,)`` bool (True = present) or None
            for all rows. Values of absent rows are ignored, even if not finite.

    Returns:
        ``{name: detached scalar mean}`` in ``values``' dtype (at least float32); 0 where no row is present.
    """
    if not columns:
        return {}
    stats = torch.stack([_sum_and_count(values, mask) for values, mask in columns.values()])  # (N, 2)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats, op=dist.ReduceOp.SUM)
    means = stats[:, 0] / stats[:, 1].clamp_min(1)
    return {
        name: mean.to(torch.promote_types(values.dtype, torch.float32))
        for (name, (values, _)), mean in zip(columns.items(), means, strict=True)
    }


def global_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Masked mean of one ``(B,)`` column over all ranks; see :func:`global_means`."""
    return global_means({"value": (values, mask)})["value"]


def _sum_and_count(values: Tensor, mask: Tensor | None) -> Tensor:
    values = values.detach().to(torch.float64)
    if mask is None:
        return torch.stack(
            [values.sum(), torch.tensor(float(values.numel()), dtype=torch.float64, device=values.device)]
        )
    present = mask.to(torch.bool)
    return torch.stack([torch.where(present, values, 0).sum(), present.sum().to(torch.float64)])
