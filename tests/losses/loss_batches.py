"""Builders shared by the loss tests (imported as a sibling module, not a fixture)."""

from __future__ import annotations

import torch

from unprior.losses import SeqLogps


def seq(sums, counts=None, *, requires_grad: bool = False) -> SeqLogps:
    """SeqLogps in float64 from plain lists; counts default to 1 per row."""
    total = torch.tensor(sums, dtype=torch.float64, requires_grad=requires_grad)
    count = torch.ones_like(total.detach()) if counts is None else torch.tensor(counts, dtype=torch.float64)
    return SeqLogps(total, count)


def three_rows(*, requires_grad: bool = False) -> tuple[SeqLogps, SeqLogps, SeqLogps, SeqLogps]:
    """The batch most value tests use: summed log-ratio margins ψ = [2, 0, −2].

    policy chosen   [-1, -2, -3]  counts [1, 2, 4]
    policy rejected [-3, -2, -1]  counts [2, 2, 1]
    reference       all -2        (same counts)
    chosen log-ratio = [1, 0, -1], rejected log-ratio = [-1, 0, 1], ψ = [2, 0, -2]
    length-averaged log-ratios: chosen [1/1, 0/2, -1/4] = [1, 0, -0.25], rejected [-1/2, 0/2, 1/1] = [-0.5, 0, 1]
    """
    return (
        seq([-1.0, -2.0, -3.0], [1, 2, 4], requires_grad=requires_grad),
        seq([-3.0, -2.0, -1.0], [2, 2, 1], requires_grad=requires_grad),
        seq([-2.0, -2.0, -2.0], [1, 2, 4]),
        seq([-2.0, -2.0, -2.0], [2, 2, 1]),
    )
