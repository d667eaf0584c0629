"""``unprior demo`` (what ``make demo`` runs): the embedded default end to end on a laptop CPU, no downloads.

Today: build the world -> train (or reuse) the biased base -> train (or reuse) the no-prior control base on the
same images -> print the bias report of both (the control is the visual ceiling later stages are measured
against). Everything is cached by config hash, so a second run only re-evaluates.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unprior.config import check_range
from unprior.io import write_json
from unprior.world.config import BaseConfig

NO_PRIOR = 1 / 8
"""Colour prior strength of the control world: every colour equally likely (8 colours)."""


@dataclass
class DemoConfig:
    """The demo pipeline on the embedded default."""

    base: BaseConfig = field(default_factory=BaseConfig)
    """The biased base model (and, through ``base.world``, the world)."""
    control: bool = True
    """Also train the no-colour-prior control on the same images (the visual ceiling)."""
    out: str = "runs/demo"
    """Report folder."""
    limit: int = 0
    """Evaluate on the first N images of each test split only (0: all)."""
    threads: int = 0
    """torch threads (0: torch's default)."""

    def validate(self) -> None:
        check_range(self, "limit", 0, 10_000_000)
        check_range(self, "threads", 0, 1024)


def control_config(base: BaseConfig) -> BaseConfig:
    """The same world and training with the colour prior removed (same seed: same layouts and shapes)."""
    ctrl = copy.deepcopy(base)
    ctrl.world.prior_strength = NO_PRIOR
    ctrl.out = ""
    return ctrl


def run_demo(cfg: DemoConfig) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from unprior.world.base import resolve_world, train_base
    from unprior.world.report import evaluate_world, headline

    console = Console()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    world = resolve_world(cfg.base)
    console.rule("[bold]1. world")
    console.print(f"world: {world}")
    console.rule("[bold]2. biased base model")
    models = {"base": train_base(cfg.base, log=console.print)}
    if cfg.control:
        console.rule("[bold]3. no-prior control (visual ceiling)")
        models["control"] = train_base(control_config(cfg.base), log=console.print)
    console.rule("[bold]4. bias report (greedy, world test splits)")
    results: dict[str, Any] = {}
    for name, path in models.items():
        console.print(f"evaluating {name} ...")
        report, _ = evaluate_world(path, world, limit=cfg.limit, log=console.print)
        results[name] = {"model": str(path), "headline": headline(report), "report": report}
    table = Table(title="bias report on the embedded world (test_cf: non-canonical colours, absent partners)")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    for key in results["base"]["headline"]:
        vals = [results[n]["headline"][key] for n in results]
        table.add_row(key, *("-" if v is None else f"{v:.3f}" for v in vals))
    console.print(table)
    out = Path(cfg.out)
    write_json(out / "report.json", results)
    console.print(f"report: {out / 'report.json'}  ({time.perf_counter() - t0:.0f}s)")
    return 0
