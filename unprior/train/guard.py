"""Non-finite steps: a NaN or infinite loss or gradient norm never reaches the weights.

The trainer notes each micro-batch's per-row losses (no device sync) and, once per optimizer step, after clipping and
before ``optimizer.step()``, asks :meth:`StepGuard.check` whether the step was finite. The answer is reduced over
the processes, so every process takes the same branch: stop the run (``nonfinite: stop``, the default: a
:class:`~unprior.guards.NonFiniteError` naming the step and its rows) or skip the batch (``nonfinite: skip``: no
optimizer step, counted). Checkpoints written before are untouched, so the last one is the last good state
(docs/train.md, "Non-finite steps").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from unprior.guards import some_ids
from unprior.train.data import Order, PreferenceData


@dataclass
class StepGuard:
    """Per optimizer step: were the losses of every row and the gradient norm finite, on every process?"""

    accelerator: Any
    data: PreferenceData
    order: Order
    skipped: int = 0
    """Steps skipped so far (``nonfinite: skip``), resumed runs included."""
    _finite: list[torch.Tensor] = field(default_factory=list)

    def note(self, losses: torch.Tensor) -> None:
        """Record a micro-batch's ``(B,)`` per-row losses (kept on the device; nothing is synchronised)."""
        self._finite.append(torch.isfinite(losses.detach()))

    def check(self, step: int, grad_norm: Any) -> str | None:
        """None when step ``step`` (0-based) was finite on every process; else one line saying what was not."""
        finite, self._finite = self._finite, []
        device = self.accelerator.device
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP2
            grad_norm = grad_norm.full_tensor()
        rows_ok = torch.cat(finite).all() if finite else torch.tensor(True, device=device)
        norm_ok = torch.isfinite(torch.as_tensor(grad_norm)).all() if grad_norm is not None else rows_ok.new_ones(())
        flags = torch.stack([~rows_ok.to(device), ~norm_ok.to(device)]).float()
        if self.accelerator.num_processes > 1:
            flags = self.accelerator.reduce(flags, reduction="sum")
        bad_loss, bad_norm = (flags > 0).tolist()
        if not (bad_loss or bad_norm):
            return None
        what = []
        if bad_loss:
            rows = self._bad_rows(step, finite)
            what.append(f"loss in rows {some_ids(rows)}" if rows else "loss (in another process's rows)")
        if bad_norm:
            what.append(f"gradient norm ({float(torch.as_tensor(grad_norm))})")
        return (f"step {step + 1}: non-finite {' and '.join(what)}; the step's rows: "
                f"{some_ids(self._ids(self.order.global_rows(step)), 16)}")

    def _bad_rows(self, step: int, finite: list[torch.Tensor]) -> list[str]:
        """Ids of this process's rows whose loss was non-finite in step ``step``."""
        bad = []
        for micro, ok in enumerate(finite):
            positions = self.order.micro_rows(step, micro, self.accelerator.process_index)
            bad += [p for p, fine in zip(positions, ok.tolist(), strict=True) if not fine]
        return self._ids(bad)

    def _ids(self, positions: list[int]) -> list[str]:
        return [self.data.pairs[self.data.rows[p]].id for p in positions]
