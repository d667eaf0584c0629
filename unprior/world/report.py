"""``unprior world report``: the bias report of a model on the world's test splits (greedy decoding).

Headline numbers: in-distribution attribute accuracy, counterfactual attribute accuracy, the prior-follow rate
(counterfactual answers that name the canonical colour), POPE false-positive rates per sampling setting, and
CHAIR-style description metrics with the partner-hallucination rate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from unprior.io import read_jsonl, write_json, write_jsonl
from unprior.models.families import load_model
from unprior.models.generate import Prompt, generate
from unprior.world.base import train_base
from unprior.world.build import require_world, resolve_world
from unprior.world.config import BaseConfig, ReportConfig
from unprior.world.metrics import PARSER_VERSION, split_metrics

TEST_SPLITS = ("test_id", "test_cf")


def _rows(world: Path, split: str, limit: int) -> list[dict[str, Any]]:
    rows = list(read_jsonl(world / f"{split}.jsonl"))
    if limit:
        keep = sorted({r["image"] for r in rows})[:limit]
        rows = [r for r in rows if r["image"] in set(keep)]
    return rows


def evaluate_world(model_dir: Path, world: Path, *, batch_size: int = 64, max_new_tokens: int = 24,
                   limit: int = 0, log=print) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate greedy answers for every test row; return (metrics per split, per-row answers)."""
    model, processor = load_model(model_dir)
    report: dict[str, Any] = {"model": str(model_dir), "world": str(world), "parser_version": PARSER_VERSION}
    records = []
    for split in TEST_SPLITS:
        rows = _rows(world, split, limit)
        images: dict[str, Image.Image] = {}
        prompts = []
        for r in rows:
            if r["image"] not in images:
                images[r["image"]] = Image.open(world / r["image"]).convert("RGB")
            prompts.append(Prompt(r["prompt"], images[r["image"]]))
        t0 = time.perf_counter()
        answers = generate(model, processor, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens)
        log(f"  {split}: {len(rows)} answers in {time.perf_counter() - t0:.0f}s")
        report[split] = split_metrics(rows, answers)
        records += [{"id": r["id"], "task": r["task"], "answer": a, "reference": r["answer"]}
                    for r, a in zip(rows, answers, strict=True)]
    return report, records


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the issue's targets are stated in."""
    i, c = report["test_id"], report["test_cf"]
    return {
        "id_attribute_accuracy": i["attribute"]["accuracy"],
        "cf_attribute_accuracy": c["attribute"]["accuracy"],
        "cf_prior_follow": c["attribute"]["prior_follow"],
        "pope_fp_random_cf": c["pope"]["random"]["false_positive_rate"],
        "pope_fp_adversarial_cf": c["pope"]["adversarial"]["false_positive_rate"],
        "pope_fp_random_id": i["pope"]["random"]["false_positive_rate"],
        "pope_fp_adversarial_id": i["pope"]["adversarial"]["false_positive_rate"],
        "cf_partner_hallucination": c["describe"]["partner_hallucination"],
        "id_chair_i": i["describe"]["chair_i"],
        "cf_chair_i": c["describe"]["chair_i"],
        "id_busy_overdescribe": i["attribute"]["busy_overdescribe"],
    }


def print_report(report: dict[str, Any], console=None) -> None:
    console = console or Console()
    table = Table(title=f"bias report: {report['model']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in headline(report).items():
        table.add_row(k, "-" if v is None else f"{v:.3f}")
    console.print(table)


def run_report(cfg: ReportConfig) -> int:
    console = Console()
    base = BaseConfig()
    world = require_world(cfg.world_dir) if cfg.world_dir else resolve_world(base)
    model = Path(cfg.model) if cfg.model else train_base(base, log=console.print)
    report, records = evaluate_world(model, world, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                                     limit=cfg.limit, log=console.print)
    out = Path(cfg.out) if cfg.out else model / "report"
    write_json(out / "report.json", {**report, "headline": headline(report)})
    write_jsonl(out / "answers.jsonl", records)
    print_report(report, console)
    console.print(f"written to {out}")
    return 0
