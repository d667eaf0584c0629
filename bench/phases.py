"""Where a training step's time goes, on either side of the benchmark: wall time inside a few calls, per step.

:func:`install` times, by hooks around the calls themselves (no profiler, so the timed run stays the timed run):

- ``vision``: the vision tower and projector (LLaVA's ``vision_tower`` + ``multi_modal_projector``; Qwen2-VL's
  ``visual``, whose patch merger is the projector);
- ``decoder``: the language decoder (``get_decoder()``); unprior's shared prefix calls it twice per step (prompt,
  continuations), everything else once per forward;
- ``head``: the LM head and the log-softmax at the scored positions: TRL's fused chunked kernel, or unprior's
  ``head_logps`` (shared prefix) or ``lm_head`` plus ``sequence_logps`` (naive forward);
- ``backward`` (``Accelerator.backward``) and ``optimizer`` (``AcceleratedOptimizer.step``, clipping excluded);
- each forward phase split by whether autograd records it: TRL's reference forward is the ``(no grad)`` part.

:func:`snapshot` at the end of each optimizer step, then :func:`steady` gives milliseconds per steady step (the
steps after ``warmup``) with ``rest`` = wall time minus the timed phases (data, collation, loss, metrics, clipping,
the framework's own work).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

TOTALS: defaultdict[str, float] = defaultdict(float)
SNAPSHOTS: list[tuple[float, dict[str, float]]] = []
ORDER = ("vision", "decoder", "head")


def _add(phase: str, seconds: float) -> None:
    import torch

    TOTALS[phase if torch.is_grad_enabled() else phase + " (no grad)"] += seconds


def _time_module(module: nn.Module, phase: str) -> None:
    starts: list[float] = []

    def before(*_: Any, **__: Any) -> None:
        starts.append(time.perf_counter())

    def after(*_: Any, **__: Any) -> None:
        _add(phase, time.perf_counter() - starts.pop())

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def timed(fn: Callable, phase: str, grad_label: bool = True) -> Callable:
    """``fn`` that adds its wall time to ``phase``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            if grad_label:
                _add(phase, seconds)
            else:
                TOTALS[phase] += seconds

    return wrapper


def _hf_models(models: Iterable[nn.Module | None]) -> list[nn.Module]:
    from unprior.forward.prefix import base_model

    found = []
    for model in models:
        if model is None:
            continue
        model = getattr(model, "module", model)  # DDP
        model = getattr(model, "model", model) if not hasattr(model, "get_decoder") else model  # ResponseScorer
        found.append(base_model(model))
    return found


def install(models: Iterable[nn.Module | None], head_module: bool = True) -> None:
    """Hook the phases of every transformers model in ``models`` (the policy, TRL's reference) and the shared calls.

    ``head_module=False`` leaves the LM head module unhooked (unprior's side): a hooked head is called as a module,
    which moves :func:`unprior.forward.logps.head_logps` off its tiled path; ``head_logps`` itself is timed instead."""
    import accelerate
    import accelerate.optimizer

    import unprior.forward.prefix

    for model in _hf_models(models):
        inner = model.model
        for name in ("vision_tower", "multi_modal_projector", "visual"):
            if isinstance(getattr(inner, name, None), nn.Module):
                _time_module(getattr(inner, name), "vision")
        _time_module(model.get_decoder(), "decoder")
        if head_module:
            _time_module(model.get_output_embeddings(), "head")
    for name in ("head_logps", "sequence_logps"):
        setattr(unprior.forward.prefix, name, timed(getattr(unprior.forward.prefix, name), "head"))
    _install_trl_head()
    accelerate.Accelerator.backward = timed(accelerate.Accelerator.backward, "backward", grad_label=False)
    step = accelerate.optimizer.AcceleratedOptimizer.step
    accelerate.optimizer.AcceleratedOptimizer.step = timed(step, "optimizer", grad_label=False)


def _install_trl_head() -> None:
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    original = trl_utils._ChunkedLogProbFunction
    if isinstance(original, _TimedFunction):
        return
    trl_utils._ChunkedLogProbFunction = _TimedFunction(original)


class _TimedFunction:
    """Stands in for TRL's fused-head autograd function: ``apply`` timed as ``head``."""

    def __init__(self, function: Any) -> None:
        self.apply = timed(function.apply, "head")


def snapshot() -> None:
    SNAPSHOTS.append((time.perf_counter(), dict(TOTALS)))


def steady(warmup: int) -> dict[str, float]:
    """Milliseconds per step of every phase over the steps after ``warmup``, and ``rest`` and ``step``."""
    if len(SNAPSHOTS) <= warmup:
        return {}
    (t0, first), (t1, last) = SNAPSHOTS[warmup - 1], SNAPSHOTS[-1]
    steps = len(SNAPSHOTS) - warmup
    out = {k: 1e3 * (v - first.get(k, 0.0)) / steps for k, v in last.items()}
    out["step"] = 1e3 * (t1 - t0) / steps
    out["rest"] = out["step"] - sum(v for k, v in out.items() if k != "step")
    return out


def columns(per_side: dict[str, dict[str, float]]) -> list[str]:
    names = {k for phases in per_side.values() for k in phases}
    ordered = [p + s for p in ORDER for s in ("", " (no grad)") if p + s in names]
    return [*ordered, *(k for k in ("backward", "optimizer", "rest", "step") if k in names)]


def table(per_side: dict[str, dict[str, float]]) -> str:
    """A markdown table: ms per steady step of each phase, one row per side."""
    cols = columns(per_side)
    lines = ["| ms per step | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for side, phases in per_side.items():
        lines.append(f"| {side} | " + " | ".join(f"{phases.get(c, 0.0):.0f}" for c in cols) + " |")
    return "\n".join(lines)
