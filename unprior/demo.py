"""``unprior demo`` (what ``make demo`` runs): the embedded default end to end on a laptop CPU, no downloads.

The pipeline is a list of steps (:data:`STEPS`); each calls one stage's public API with a config and leaves its
output in the cache (keyed by everything that decides it) or in the report folder:

1. ``world``    build (or reuse) the synthetic world (``unprior world build``);
2. ``base``     train (or reuse) the biased base model (``unprior world base``); the no-colour-prior control (the
                visual ceiling, same images) starts training in a second process;
3. ``pairs``    bootstrap negatives for a pool of train-split images with all four strategies: BPO's image weakening
                and rule-based error injection, NaPO's language- and vision-biased answers (``unprior pairs`` +
                ``pairs merge``);
4. ``score``    reference log-probs and the noise report (``unprior score``);
5. ``train``    (a) DPO on BPO's pairs, (b) the NaPO objective on NaPO's pairs, (c) SFT on the chosen answers only,
                (a) and (b) with the SFT anchor (``unprior train``);
6. ``control``  wait for the control (or reuse the cached one): it trains beside steps 3-5, on the other core;
7. ``eval``     every model on the world benchmark, greedy, and on the grounding frontier (``unprior eval run``,
                ``unprior eval frontier``);
8. ``report``   a table in the style of NaPO Table 1 and the report folder: ``report.md``, ``results.json``, PNGs,
                and the resolved config of every stage (``configs/``), so each step can be rerun by hand.

A second run finds every output complete (a ``manifest.json`` or ``summary.json`` written last) and only rewrites
the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unprior.config import dump_yaml
from unprior.io import write_json
from unprior.pipeline.config import (
    COLUMNS,
    LABELS,
    METHODS,
    DemoConfig,
    DemoPairsConfig,
    DemoTrainConfig,
    PoolConfig,
)
from unprior.pipeline.report import step_report
from unprior.pipeline.steps import (
    Demo,
    step_base,
    step_control,
    step_eval,
    step_pairs,
    step_score,
    step_train,
    step_world,
)

__all__ = ["COLUMNS", "LABELS", "METHODS", "STEPS", "DemoConfig", "DemoPairsConfig", "DemoTrainConfig", "PoolConfig",
           "run_demo"]

STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("world", step_world),
    ("base", step_base),
    ("pairs", step_pairs),
    ("score", step_score),
    ("train", step_train),
    ("control", step_control),
    ("eval", step_eval),
    ("report", step_report),
]
"""The pipeline, in order; each step reads what the earlier ones left in :class:`Demo`."""


def run_demo(cfg: DemoConfig, console: Any = None) -> int:
    """Run :data:`STEPS` in order; progress and the table go to ``console`` (default: a rich Console on stdout)."""
    from rich.console import Console  # not at `unprior demo --help`

    console = console or Console()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "configs" / "demo.yaml")
    d = Demo(cfg, console, out)
    t0 = time.perf_counter()
    try:
        for k, (name, step) in enumerate(STEPS, 1):
            console.rule(f"[bold]{k}/{len(STEPS)} {name}[/bold]  ({time.perf_counter() - t0:.0f}s)")
            start = time.perf_counter()
            step(d)
            d.seconds[name] = round(time.perf_counter() - start, 1)
    finally:
        if d.background is not None:
            d.background.terminate()  # a failed step does not leave the control training on
    d.seconds["total"] = round(time.perf_counter() - t0, 1)
    write_json(out / "timings.json", {"seconds": d.seconds, "cached": d.cached})
    console.print(f"done in {d.seconds['total']:.0f}s; report folder: {out}")
    return 0
