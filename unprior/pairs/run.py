"""``unprior pairs``: generate negatives for a dataset, sharded and resumable (the run's layout, sharding and
resumption: :mod:`unprior.pairs.shards`; merging the shards: :mod:`unprior.pairs.merge`)."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image
from rich.console import Console

from unprior.config import fail, to_dict
from unprior.formats.pairs import ImageProblem, PairRow, write_pairs
from unprior.io import InputError, atomic_write_bytes, write_json, write_rejected
from unprior.models.backends import make_backend
from unprior.numerics import stable_seed
from unprior.pairs import shards
from unprior.pairs.config import NEEDS, PairsConfig
from unprior.pairs.filters import filter_rows
from unprior.pairs.loaders import load_samples
from unprior.pairs.rules import dataset_stats
from unprior.pairs.strategies import STRATEGIES, StrategyContext
from unprior.pairs.summary import print_summary, progress_bar, summarise
from unprior.perturb import perturb_image


@dataclass
class PartResult:
    rows: int = 0
    samples: int = 0
    generated: Counter[str] = field(default_factory=Counter)
    """Negatives produced, by strategy (before filtering)."""
    kept: Counter[str] = field(default_factory=Counter)
    """Negatives written, by kind."""
    filters: dict[str, Any] = field(default_factory=dict)
    image_errors: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Samples this part dropped: ``{"id", "where": "generation", "reason", "detail"}``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "samples": self.samples,
            "generated": dict(self.generated),
            "kept": dict(self.kept),
            "filters": self.filters,
            "image_errors": self.image_errors,
            "rejected": self.rejected,  # a list: ``summarise`` adds up the counts only
        }


def open_images(samples: Sequence[Any], rejected: list[dict[str, Any]], max_pixels: int,
                ) -> tuple[list[Any], list[Any], int]:
    """(samples whose image opens, their images, failures); a failure drops the sample and is added to
    ``rejected``. Images are size-checked here too: ``load.check_images=false`` skips only the load-time check."""
    kept, images, errors = [], [], 0
    for s in samples:
        try:
            images.append(s.open_image(max_pixels) if s.image is not None else None)
            kept.append(s)
        except ImageProblem as e:
            errors += 1
            rejected.append(_rejected(s.id, e.reason, e.detail))
        except (OSError, ValueError) as e:
            errors += 1
            rejected.append(_rejected(s.id, "image_error", str(e)))
    return kept, images, errors


def _rejected(id: str, reason: str, detail: str) -> dict[str, Any]:
    return {"id": id, "where": "generation", "reason": reason, "detail": detail}


def _no_negatives_detail(produced: int, strategies: Sequence[str]) -> str:
    """Why a sample has no row: its strategies made nothing, or the filters dropped all they made."""
    if produced:
        return f"all {produced} negatives were dropped by the filters (empty, too long or equal to the answer)"
    why = "; the rules found no object, count, colour or relation word to edit" if "rules" in strategies else ""
    return f"no negative was produced ({', '.join(strategies)}){why}"


def generate_part(samples: Sequence[Any], cfg: PairsConfig, ctx: Any, part_seed: int) -> tuple[list[Any], PartResult]:
    """Run every strategy on ``samples``; return the filtered rows and the part's counts."""
    result = PartResult(samples=len(samples))
    samples, images, result.image_errors = open_images(samples, result.rejected, cfg.load.max_pixels)
    negatives: list[list[Any]] = [[] for _ in samples]
    for name in cfg.strategies:
        ctx.sampling_seed = _mix(part_seed, name)
        per_sample = STRATEGIES[name].run(samples, images, getattr(cfg, name), ctx)
        for acc, negs in zip(negatives, per_sample, strict=True):
            acc.extend(negs)
            result.generated[name] += len(negs)
    rows = [
        PairRow(id=s.id, image=s.image, prompt=s.prompt, chosen=s.answer, negatives=n, meta=s.meta)
        for s, n in zip(samples, negatives, strict=True)
    ]
    produced = {r.id: len(r.negatives) for r in rows}
    rows, report = filter_rows(rows, cfg.filters)
    kept_ids = {r.id for r in rows}
    result.rejected += [_rejected(i, "no_negatives", _no_negatives_detail(n, cfg.strategies))
                        for i, n in produced.items() if i not in kept_ids]
    result.rows = len(rows)
    result.kept = Counter(n.kind for r in rows for n in r.negatives)
    result.filters = {
        "negatives_in": report.negatives_in,
        "negatives_kept": report.negatives_kept,
        "dropped": dict(report.dropped),
        "dropped_by_kind": dict(report.dropped_by_kind),
        "rows_without_negatives": report.rows_without_negatives,
    }
    return rows, result


def _mix(*parts: object) -> int:
    return stable_seed(*parts) % (2**31)


class _Backends:
    """Backends built on first use (a fully finished shard loads no model)."""

    def __init__(self, cfg: PairsConfig) -> None:
        self.cfg = cfg
        self.built: dict[str, Any] = {}

    def get(self, role: str) -> Any:
        if role not in self.built:
            self.built[role] = make_backend(getattr(self.cfg, role))
        return self.built[role]

    def close(self) -> None:
        for b in self.built.values():
            b.close()


def _preflight(cfg: PairsConfig) -> None:
    """Fail fast on perturbation parameters, before any model is loaded."""
    if "image_weakening" not in cfg.strategies:
        return
    weak = cfg.image_weakening
    if weak.perturbation == "diffusion_noise":
        t = weak.kwargs().get("t")
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < 1000:
            fail("image_weakening.params.t", f"diffusion_noise needs an int step t in [0, 999], got {t!r}")
    if weak.space == "tensor" and set(weak.kwargs()) != {"t"}:
        fail("image_weakening.params", "tensor-space noise takes only t (the processor's own normalisation is used)")
    try:
        perturb_image(Image.new("RGB", (8, 8)), weak.perturbation, weak.kwargs(), seed=0)
    except (TypeError, ValueError) as e:
        fail("image_weakening.params", str(e))


def refuse_empty(report: Any) -> None:
    """An empty source is refused here, the first stage that sees it, not three stages later."""
    if report.kept:
        return
    if not report.problems:
        raise InputError(f"source {report.source}: no rows found; check the path, load.split and load.format")
    first = report.problems[0]
    reasons = ", ".join(f"{r} {n}" for r, n in report.dropped.most_common())
    raise InputError(f"source {report.source}: every row was dropped ({reasons}); the first, {first.where}: "
                     f"{first.reason}: {first.detail}")


GENERATING = ("image_weakening", "error_injection", "language_bias", "vision_bias")
"""Strategies that decode with a model (and so have a ``decoding.max_new_tokens``)."""


def answer_token_cap(answers: Sequence[str]) -> tuple[int, int]:
    """(max_new_tokens, 95th-percentile answer length in words): 3 tokens per word of that answer, rounded up to a
    multiple of 16, within [32, 1024]. Negatives are answers to the same prompts, so they need about as many tokens
    as the chosen answers; a model that rambles is cut there instead of at a fixed 512 (issue 21 item 11)."""
    words = sorted(len(a.split()) for a in answers) or [0]
    p95 = words[max(0, math.ceil(0.95 * len(words)) - 1)]
    return min(1024, max(32, 16 * math.ceil(3 * p95 / 16))), p95


def resolve_max_new_tokens(cfg: PairsConfig, samples: Sequence[Any]) -> None:
    """Set every generating strategy's unset ``max_new_tokens`` from the chosen answers, and say so."""
    unset = [name for name in cfg.strategies if name in GENERATING
             and getattr(cfg, name).decoding.max_new_tokens is None]
    if not unset:
        return
    cap, p95 = answer_token_cap([s.answer for s in samples])
    for name in unset:
        getattr(cfg, name).decoding.max_new_tokens = cap
    Console().print(f"generation cap: max_new_tokens={cap} for {', '.join(unset)} (from the chosen answers: "
                    f"95th percentile {p95} words; set <strategy>.decoding.max_new_tokens to change it)")


def run_pairs(cfg: PairsConfig) -> int:
    """Generate this shard's parts that are not done yet, then write its summary. Returns 0."""
    cfg.validate()
    _preflight(cfg)
    t0 = time.perf_counter()
    samples, load_report = load_samples(cfg.source, cfg.load)
    refuse_empty(load_report)
    resolve_max_new_tokens(cfg, samples)  # before the plan's hash: the cap is part of what is generated
    stats = dataset_stats(samples) if "rules" in cfg.strategies else None
    mine = [s for s in samples if shards.shard_of(s.id, cfg.num_shards) == cfg.shard_index]
    parts = [mine[i : i + cfg.part_size] for i in range(0, len(mine), cfg.part_size)]
    shard_dir = Path(cfg.out) / shards.shard_name(cfg.shard_index, cfg.num_shards)
    plan = {
        "config_hash": shards.content_hash(cfg),
        "shard_index": cfg.shard_index,
        "num_shards": cfg.num_shards,
        "samples": len(mine),
        "ids_hash": shards.ids_hash([s.id for s in mine]),
        "parts": len(parts),
        "part_size": cfg.part_size,
        "image_root": load_report.root,
    }
    shards.check_plan(shard_dir, plan, cfg)
    atomic_write_bytes(shard_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    shards.clean_temporaries(shard_dir)
    done = shards.read_done(shard_dir, len(parts))
    todo = [k for k in range(len(parts)) if f"{k:05d}" not in done]
    backends = _Backends(cfg)
    n_strat = len(cfg.strategies)
    generated_now = 0
    try:
        with progress_bar(cfg.progress) as progress:
            task = progress.add_task(f"pairs {shards.shard_name(cfg.shard_index, cfg.num_shards)}",
                                     total=len(mine) * n_strat,
                                     completed=sum(len(parts[int(k)]) for k in done) * n_strat)
            for k in todo:
                ctx = StrategyContext(generator=backends.get("generator") if _needs(cfg, "generator") else None,
                                      injector=backends.get("injector") if _needs(cfg, "injector") else None,
                                      stats=stats, seed=cfg.seed, on_batch=lambda n: progress.advance(task, n))
                part_seed = _mix(cfg.seed, cfg.shard_index, cfg.num_shards, k)
                rows, result = generate_part(parts[k], cfg, ctx, part_seed)
                progress.update(task, completed=_completed(parts, done, k, n_strat))
                write_pairs(rows, shard_dir / shards.part_name(k), image_root=load_report.root,
                            embed_images=cfg.embed_images)
                done[f"{k:05d}"] = result.as_dict()
                write_json(shard_dir / "done.json", {"parts": dict(sorted(done.items()))})
                generated_now += 1
    finally:
        backends.close()
    rejected = [{"id": p.id, "where": p.where, "reason": p.reason, "detail": p.detail} for p in load_report.problems]
    rejected += [r for k in sorted(done) for r in done[k].get("rejected", [])]
    summary = {
        "shard_index": cfg.shard_index,
        "num_shards": cfg.num_shards,
        "complete": True,
        "parts": len(parts),
        "parts_generated_by_this_run": generated_now,
        "load": {"source": load_report.source, "format": load_report.format, "kept": load_report.kept,
                 "dropped": dict(load_report.dropped)},
        "stats": stats.summary() if stats is not None else None,
        "counts": summarise(done),
        "seconds_this_run": round(time.perf_counter() - t0, 3),
        "rejected": {**write_rejected(shard_dir, rejected), "file": str(shard_dir / "rejected.jsonl")},
    }  # fmt: skip
    write_json(shard_dir / "summary.json", summary)
    print_summary(summary, f"unprior pairs: {shard_dir}")  # progress=false turns off the bar only
    return 0


def _needs(cfg: PairsConfig, role: str) -> bool:
    return any(NEEDS.get(s) == role for s in cfg.strategies)


def _completed(parts: list[list[Any]], done: dict[str, Any], current: int, n_strat: int) -> int:
    finished = {int(k) for k in done} | {current}
    return sum(len(parts[i]) for i in finished) * n_strat
