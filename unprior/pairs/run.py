"""``unprior pairs`` and ``unprior pairs merge``: generate negatives for a dataset, sharded and resumable.

Output layout of a run (``out``)::

    shard-00000-of-00002/
        plan.json            what this shard covers: config hash, sample count, ids hash, parts
        part-00000.parquet   a pairs file (unprior.formats.pairs) for samples [0, part_size) of this shard
        part-00001.parquet
        done.json            the done-index: finished parts with their counts (rewritten atomically)
        config.yaml          the resolved config
        summary.json         written when every part is done: load, strategy, filter and timing counts
    shard-00001-of-00002/ ...
    pairs.parquet            written by `unprior pairs merge`
    summary.json             merged summary (`merge`)

Sharding. A sample belongs to shard ``stable_seed(id) % num_shards``, so any launcher (a job array, ``xargs``,
``parallel``, one machine per shard) can run ``shard_index=0..N-1`` with the same command; every process loads the
whole source (statistics for ``rules`` are dataset-wide) and generates only its shard.

Resumption. Each part is written to a temporary file and renamed into place (atomic), then recorded in
``done.json`` (atomic too). After a kill -9 at any moment, the same command skips the recorded parts and
regenerates the rest: a part file that exists but is not yet recorded is regenerated and replaced, stale temporary
files are removed, and a part's content does not depend on when it is generated (per-sample seeds, a fixed
per-part sampling seed). No pair is lost or duplicated. A changed config or source is refused unless
``overwrite=true`` (which starts this shard afresh).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unprior.config import check_choice, check_range, describe_changes, fail, rename_keys, to_dict
from unprior.io import InputError, atomic_write_bytes, read_json, read_jsonl, write_json, write_rejected
from unprior.models.backends import BackendConfig
from unprior.numerics import stable_seed
from unprior.pairs.config import (
    BiasConfig,
    ErrorInjectionConfig,
    FilterConfig,
    ImageWeakeningConfig,
    InjectorBackendConfig,
    LoadConfig,
    OriginalConfig,
    RulesConfig,
)

STRATEGY_NAMES = ("image_weakening", "error_injection", "rules", "language_bias", "vision_bias", "original")
NEEDS = {
    "image_weakening": "generator",
    "language_bias": "generator",
    "vision_bias": "generator",
    "error_injection": "injector",
}
SHARD_GLOB = "shard-*-of-*"
# Fields that do not change what is generated (excluded from the plan's config hash).
_NOT_CONTENT = ("out", "overwrite", "progress", "shard_index", "num_shards")
_BACKEND_NOT_CONTENT = ("device", "base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency")


@dataclass
class PairsConfig:
    """Generate bootstrapped negatives for a dataset and write a pairs dataset (papers.md §1.2, §2.2)."""

    source: str = ""
    """The dataset: any path ``unprior.pairs.loaders`` reads (a world root, LLaVA JSON, RLAIF-V parquet, ...)."""
    load: LoadConfig = field(default_factory=LoadConfig)
    out: str = ""
    """Output directory (shard directories are created under it)."""
    strategies: list[str] = field(default_factory=lambda: ["rules"])
    """Negative strategies, in order: image_weakening, error_injection, rules, language_bias, vision_bias,
    original. Each sample gets the negatives of every strategy (after filtering)."""
    image_weakening: ImageWeakeningConfig = field(default_factory=ImageWeakeningConfig)
    error_injection: ErrorInjectionConfig = field(default_factory=ErrorInjectionConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    language_bias: BiasConfig = field(default_factory=BiasConfig)
    vision_bias: BiasConfig = field(default_factory=BiasConfig)
    original: OriginalConfig = field(default_factory=OriginalConfig)
    generator: BackendConfig = field(default_factory=BackendConfig)
    """The VLM that answers for image_weakening, language_bias and vision_bias (BPO and NaPO use the model being
    trained)."""
    injector: InjectorBackendConfig = field(default_factory=InjectorBackendConfig)
    """The text LLM of error_injection (BPO: the MLLM's own base LLM)."""
    filters: FilterConfig = field(default_factory=FilterConfig)
    part_size: int = 64
    """Samples per output part (the unit of resumption: a kill loses at most one part's work)."""
    num_shards: int = 1
    """Split the samples into this many shards (by a stable hash of their id)."""
    shard_index: int = 0
    """Which shard this process generates (0-based)."""
    seed: int = 0
    """Seed of every random choice (noise, rule edits, sampled decoding)."""
    embed_images: bool = False
    """Store image bytes in the part files instead of paths relative to the source's image root."""
    overwrite: bool = False
    """Discard this shard's existing output (finished or not) and start again."""
    progress: bool = True
    """Show a progress bar (rate and ETA)."""

    def validate(self) -> None:
        if not self.source:
            fail("source", "set the dataset to read")
        if not self.out:
            fail("out", "set the output directory")
        if not self.strategies:
            fail("strategies", "choose at least one strategy")
        for name in self.strategies:
            if name not in STRATEGY_NAMES:
                fail("strategies", f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")
        if len(set(self.strategies)) != len(self.strategies):
            fail("strategies", "lists a strategy twice")
        for name in self.strategies:
            role = NEEDS.get(name)
            if role and not getattr(self, role).model:
                fail(f"{role}.model", f"strategy {name} needs a {role} model")
        check_range(self, "part_size", lo=1)
        check_range(self, "num_shards", lo=1)
        if not 0 <= self.shard_index < self.num_shards:
            fail("shard_index", f"must be in [0, {self.num_shards - 1}], got {self.shard_index}")
        for section in (self.load, self.image_weakening, self.error_injection, self.rules, self.filters):
            section.validate()
        for section in (self.language_bias, self.vision_bias, self.generator, self.injector):
            section.validate()


@dataclass
class MergeConfig:
    """Merge the shards of a pairs run into one pairs dataset (and optionally a training export)."""

    out: str = ""
    """The pairs run's output directory (holding ``shard-XXXXX-of-YYYYY/``)."""
    output: str = ""
    """Merged pairs file, ``.parquet`` or ``.jsonl``. Empty: ``<out>/pairs.parquet``."""
    export: str = "none"
    """Also write a training export: trl (``<out>/trl/train.parquet``), llamafactory (``<out>/llamafactory/``), or
    none."""
    allow_partial: bool = False
    """Merge what is finished even when shards are missing or incomplete (reported in the summary)."""

    def validate(self) -> None:
        if not self.out:
            fail("out", "set the pairs run's output directory")
        check_choice(self, "export", ("none", "trl", "llamafactory"))
        if self.output and not self.output.endswith((".parquet", ".jsonl")):
            fail("output", "must end in .parquet or .jsonl")


# ------------------------------------------------------------------------------------------------------- plan


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def shard_of(sample_id: str, num_shards: int) -> int:
    """The shard a sample belongs to: a stable hash of its id (independent of the source's row order)."""
    return stable_seed("shard", sample_id) % num_shards


def content_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config dict (:func:`to_dict`) that decide what is generated (not where, how fast, or how it
    is shown)."""
    d = json.loads(json.dumps(config))
    for k in _NOT_CONTENT:
        d.pop(k, None)
    for role in ("generator", "injector"):
        for k in _BACKEND_NOT_CONTENT:
            d.get(role, {}).pop(k, None)
    return d


def content_hash(cfg: PairsConfig) -> str:
    """Hash of the config fields that decide what is generated (:func:`content_fields`)."""
    return hashlib.sha256(json.dumps(content_fields(to_dict(cfg)), sort_keys=True).encode()).hexdigest()[:16]


def _ids_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _recorded_config(shard_dir: Path) -> dict[str, Any] | None:
    """The content fields of the shard's config.yaml, renamed keys under their new names; None if unreadable."""
    try:
        old = yaml.safe_load((shard_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return content_fields(rename_keys(PairsConfig, old, warn=False)) if isinstance(old, dict) else {}


def _renamed_only(shard_dir: Path, cfg: PairsConfig) -> bool:
    """Whether the shard was started with ``cfg`` under keys renamed since (its config hash differs, its content
    not), so it resumes."""
    return _recorded_config(shard_dir) == content_fields(to_dict(cfg))


def _config_changes(shard_dir: Path, cfg: PairsConfig) -> str:
    """The content fields that differ between the shard's recorded config.yaml and ``cfg``, with both values."""
    old = _recorded_config(shard_dir)
    if old is None:
        return "its config.yaml is missing or unreadable, so the fields cannot be named"
    return describe_changes(old, content_fields(to_dict(cfg)))


def _check_plan(shard_dir: Path, plan: dict[str, Any], cfg: PairsConfig) -> None:
    """Start the shard (write plan.json), or make sure an existing one was made by the same config and data."""
    overwrite = cfg.overwrite
    plan_path = shard_dir / "plan.json"
    if overwrite and shard_dir.exists():
        shutil.rmtree(shard_dir)
    if plan_path.is_file():
        old = read_json(plan_path)
        for key in ("config_hash", "samples", "ids_hash", "parts"):
            if old.get(key) == plan[key] or (key == "config_hash" and _renamed_only(shard_dir, cfg)):
                continue
            what = "config" if key == "config_hash" else "source samples"
            detail = (_config_changes(shard_dir, cfg) if key == "config_hash"
                      else f"{key}: {old.get(key)} -> {plan[key]}")
            raise InputError(
                f"{shard_dir} was started with a different {what} ({detail}); "
                "rerun with the original settings to resume, or pass overwrite=true to start this shard again"
            )
        return
    shard_dir.mkdir(parents=True, exist_ok=True)
    write_json(plan_path, plan)


def _clean_temporaries(shard_dir: Path) -> None:
    for tmp in shard_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _read_done(shard_dir: Path, n_parts: int) -> dict[str, Any]:
    path = shard_dir / "done.json"
    done = read_json(path)["parts"] if path.is_file() else {}
    # A recorded part whose file is gone is generated again.
    return {k: v for k, v in done.items() if int(k) < n_parts and (shard_dir / part_name(int(k))).is_file()}


# ----------------------------------------------------------------------------------------------------- parts


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


def _open_images(samples: Sequence[Any], rejected: list[dict[str, Any]], max_pixels: int,
                 ) -> tuple[list[Any], list[Any], int]:
    """(samples whose image opens, their images, failures); a failure drops the sample and is added to
    ``rejected``. Images are size-checked here too: ``load.check_images=false`` skips only the load-time check."""
    from unprior.formats.pairs import ImageProblem

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
    from unprior.formats.pairs import PairRow
    from unprior.pairs.filters import filter_rows
    from unprior.pairs.strategies import STRATEGIES

    result = PartResult(samples=len(samples))
    samples, images, result.image_errors = _open_images(samples, result.rejected, cfg.load.max_pixels)
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


# --------------------------------------------------------------------------------------------------- summary


def _add(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Sum nested count dicts (numbers add, dicts recurse)."""
    for k, v in part.items():
        if isinstance(v, dict):
            total[k] = _add(dict(total.get(k, {})), v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
    return total


def summarise(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for k in sorted(parts):
        total = _add(total, parts[k])
    return total


def _print_summary(summary: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = summary.get("counts", {})
    filters = counts.get("filters", {})
    table = Table(title=title, show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("samples (after loading)", str(counts.get("samples", 0)))
    table.add_row("rows written", str(counts.get("rows", 0)))
    for name, n in sorted(counts.get("generated", {}).items()):
        table.add_row(f"generated by {name}", str(n))
    for kind, n in sorted(counts.get("kept", {}).items()):
        table.add_row(f"kept {kind}", str(n))
    load = summary.get("load", {})
    for reason, n in sorted(load.get("dropped", {}).items()):
        table.add_row(f"input rows dropped: {reason}", str(n))
    for reason, n in sorted(filters.get("dropped", {}).items()):
        table.add_row(f"filtered: {reason}", str(n))
    table.add_row("rows without negatives (dropped)", str(filters.get("rows_without_negatives", 0)))
    if counts.get("image_errors"):
        table.add_row("images that failed to open", str(counts["image_errors"]))
    console.print(table)
    rejected = summary.get("rejected")
    if rejected and rejected["total"]:
        console.print(f"{rejected['total']} input rows dropped, listed in {rejected['file']}"
                      + (f" (first {rejected['listed']})" if rejected["listed"] < rejected["total"] else ""))


# ------------------------------------------------------------------------------------------------------ run


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- /s" if speed is None else f"{speed:.2f}/s")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


class _Backends:
    """Backends built on first use (a fully finished shard loads no model)."""

    def __init__(self, cfg: PairsConfig) -> None:
        self.cfg = cfg
        self.built: dict[str, Any] = {}

    def get(self, role: str) -> Any:
        if role not in self.built:
            from unprior.models.backends import make_backend

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
    from PIL import Image

    from unprior.perturb import perturb_image

    try:
        perturb_image(Image.new("RGB", (8, 8)), weak.perturbation, weak.kwargs(), seed=0)
    except (TypeError, ValueError) as e:
        fail("image_weakening.params", str(e))


def _refuse_empty(report: Any) -> None:
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


def _resolve_max_new_tokens(cfg: PairsConfig, samples: Sequence[Any]) -> None:
    """Set every generating strategy's unset ``max_new_tokens`` from the chosen answers, and say so."""
    unset = [name for name in cfg.strategies if name in GENERATING
             and getattr(cfg, name).decoding.max_new_tokens is None]
    if not unset:
        return
    cap, p95 = answer_token_cap([s.answer for s in samples])
    for name in unset:
        getattr(cfg, name).decoding.max_new_tokens = cap
    _console().print(f"generation cap: max_new_tokens={cap} for {', '.join(unset)} (from the chosen answers: "
                     f"95th percentile {p95} words; set <strategy>.decoding.max_new_tokens to change it)")


def _console():
    from rich.console import Console

    return Console()


def run_pairs(cfg: PairsConfig) -> int:
    """Generate this shard's parts that are not done yet, then write its summary. Returns 0."""
    from unprior.formats.pairs import write_pairs
    from unprior.pairs.loaders import load_samples
    from unprior.pairs.rules import dataset_stats
    from unprior.pairs.strategies import StrategyContext

    cfg.validate()
    _preflight(cfg)
    t0 = time.perf_counter()
    samples, load_report = load_samples(cfg.source, cfg.load)
    _refuse_empty(load_report)
    _resolve_max_new_tokens(cfg, samples)  # before the plan's hash: the cap is part of what is generated
    stats = dataset_stats(samples) if "rules" in cfg.strategies else None
    mine = [s for s in samples if shard_of(s.id, cfg.num_shards) == cfg.shard_index]
    parts = [mine[i : i + cfg.part_size] for i in range(0, len(mine), cfg.part_size)]
    shard_dir = Path(cfg.out) / shard_name(cfg.shard_index, cfg.num_shards)
    plan = {
        "config_hash": content_hash(cfg),
        "shard_index": cfg.shard_index,
        "num_shards": cfg.num_shards,
        "samples": len(mine),
        "ids_hash": _ids_hash([s.id for s in mine]),
        "parts": len(parts),
        "part_size": cfg.part_size,
        "image_root": load_report.root,
    }
    _check_plan(shard_dir, plan, cfg)
    atomic_write_bytes(shard_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    _clean_temporaries(shard_dir)
    done = _read_done(shard_dir, len(parts))
    todo = [k for k in range(len(parts)) if f"{k:05d}" not in done]
    backends = _Backends(cfg)
    n_strat = len(cfg.strategies)
    generated_now = 0
    try:
        with _progress(cfg.progress) as progress:
            task = progress.add_task(
                f"pairs {shard_name(cfg.shard_index, cfg.num_shards)}",
                total=len(mine) * n_strat,
                completed=sum(len(parts[int(k)]) for k in done) * n_strat,
            )
            for k in todo:
                ctx = StrategyContext(
                    generator=backends.get("generator") if _needs(cfg, "generator") else None,
                    injector=backends.get("injector") if _needs(cfg, "injector") else None,
                    stats=stats,
                    seed=cfg.seed,
                    on_batch=lambda n: progress.advance(task, n),
                )
                part_seed = _mix(cfg.seed, cfg.shard_index, cfg.num_shards, k)
                rows, result = generate_part(parts[k], cfg, ctx, part_seed)
                progress.update(task, completed=_completed(parts, done, k, n_strat))
                write_pairs(rows, shard_dir / part_name(k), image_root=load_report.root, embed_images=cfg.embed_images)
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
    _print_summary(summary, f"unprior pairs: {shard_dir}")  # progress=false turns off the bar only
    return 0


def _needs(cfg: PairsConfig, role: str) -> bool:
    return any(NEEDS.get(s) == role for s in cfg.strategies)


def _completed(parts: list[list[Any]], done: dict[str, Any], current: int, n_strat: int) -> int:
    finished = {int(k) for k in done} | {current}
    return sum(len(parts[i]) for i in finished) * n_strat


# ----------------------------------------------------------------------------------------------------- merge


def shard_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob(SHARD_GLOB) if p.is_dir())


def _merge_plan(out: Path, allow_partial: bool) -> tuple[list[Path], list[str]]:
    """The shard directories to merge, and the problems found (missing / incomplete / mixed shard counts)."""
    dirs = shard_dirs(out)
    if not dirs:
        raise InputError(f"{out}: no {SHARD_GLOB} directories (run `unprior pairs out={out}` first)")
    counts = {int(d.name.rsplit("-", 1)[1]) for d in dirs}
    if len(counts) != 1:
        raise InputError(f"{out}: shards of different runs ({sorted(counts)} shards); merge one run at a time")
    n = counts.pop()
    problems = []
    present = {int(d.name.split("-")[1]) for d in dirs}
    problems += [f"{shard_name(i, n)} is missing" for i in range(n) if i not in present]
    problems += [f"{d.name} is not finished" for d in dirs if not (d / "summary.json").is_file()]
    if problems and not allow_partial:
        raise InputError(f"{out}: cannot merge: " + "; ".join(problems) + " (finish them, or pass allow_partial=true)")
    return dirs, problems


def iter_run_rows(out: str | Path, allow_partial: bool = False) -> Iterator[Any]:
    """Every finished part's rows of a pairs run, in shard then part order, without duplicates."""
    from unprior.formats.pairs import iter_pairs

    dirs, _ = _merge_plan(Path(out), allow_partial)
    seen: set[str] = set()
    for d in dirs:
        done = _read_done(d, 10**9)
        for k in sorted(done):
            for row in iter_pairs(d / part_name(int(k))):
                if row.id in seen:
                    raise RuntimeError(f"sample id {row.id!r} appears twice ({d.name}/{part_name(int(k))})")
                seen.add(row.id)
                yield row


def merge_pairs(cfg: MergeConfig) -> dict[str, Any]:
    """Write the merged pairs file (and export) and the merged summary; return the summary."""
    from unprior.formats.pairs import write_pairs

    cfg.validate()
    out = Path(cfg.out)
    dirs, problems = _merge_plan(out, cfg.allow_partial)
    output = Path(cfg.output) if cfg.output else out / "pairs.parquet"
    roots = {read_json(d / "plan.json").get("image_root") for d in dirs}
    root = sorted(r for r in roots if r)[0] if any(roots) else None
    n_rows = write_pairs(iter_run_rows(out, cfg.allow_partial), output, image_root=root)
    if n_rows == 0:  # nothing downstream can use an empty file: refused below, after the summary is written
        output.unlink()
    parts: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for k, v in _read_done(d, 10**9).items():
            parts[f"{d.name}/{k}"] = v
    summary = {"shards": [d.name for d in dirs], "problems": problems, "rows": n_rows, "output": str(output),
               "counts": summarise(parts), "rejected": _merge_rejected(out, dirs)}  # fmt: skip
    if dirs and (dirs[0] / "summary.json").is_file():  # every shard loads the whole source: one load report
        summary["load"] = read_json(dirs[0] / "summary.json").get("load", {})
    if cfg.export != "none" and n_rows:
        summary["export"] = _export(cfg.export, out, output)
    write_json(out / "summary.json", summary)
    if n_rows == 0:
        raise InputError(f"{out}: no rows to merge: every sample was dropped or filtered (listed with the reasons "
                         f"in {out / 'rejected.jsonl'}); check the source and the filters")
    return summary


def resolve_pairs(path: str, log: Callable[[str], object] = print) -> str:
    """The pairs file that ``score`` and ``train`` read for ``path``, so one shard needs no ``pairs merge``.

    A file is returned as is. A pairs run directory (holding ``shard-*-of-*/``), or one of its shard directories,
    gives the run's ``pairs.parquet``, merged now (every shard must be finished) when it is missing or older than a
    shard's summary. Anything else is returned unchanged for the reader to refuse with its own message.
    """
    p = Path(path)
    if not p.is_dir():
        return path
    run = p.parent if fnmatch.fnmatch(p.name, SHARD_GLOB) and (p / "summary.json").is_file() else p
    if not shard_dirs(run):
        return path
    merged = run / "pairs.parquet"
    newest = max(((d / "summary.json").stat().st_mtime for d in shard_dirs(run) if (d / "summary.json").is_file()),
                 default=0.0)
    if merged.is_file() and merged.stat().st_mtime >= newest:
        return str(merged)
    summary = merge_pairs(MergeConfig(out=str(run)))
    log(f"pairs: merged {len(summary['shards'])} shard(s) of {run} into {merged} ({summary['rows']} rows)")
    return str(merged)


def _merge_rejected(out: Path, dirs: list[Path]) -> dict[str, Any]:
    """One ``rejected.jsonl`` for the run: every shard loads (and so rejects) the same source rows, so load
    rejections are listed once; generation rejections are each shard's own."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in dirs:
        if (d / "rejected.jsonl").is_file():
            for r in read_jsonl(d / "rejected.jsonl"):
                seen.setdefault((str(r.get("id")), r["where"], r["reason"]), r)
    return {**write_rejected(out, list(seen.values())), "file": str(out / "rejected.jsonl")}


def _export(kind: str, out: Path, merged: Path) -> dict[str, Any]:
    from unprior.formats.pairs import iter_pairs
    from unprior.pairs.export import export_llamafactory, export_trl

    if kind == "trl":
        n = export_trl(iter_pairs(merged), out / "trl")
        return {"format": "trl", "dir": str(out / "trl"), "rows": n}
    n = export_llamafactory(iter_pairs(merged), out / "llamafactory")
    return {"format": "llamafactory", "dir": str(out / "llamafactory"), "rows": n}


def run_merge(cfg: MergeConfig) -> int:
    summary = merge_pairs(cfg)
    _print_summary(summary, f"unprior pairs merge: {summary['output']} ({summary['rows']} rows)")
    for p in summary["problems"]:
        print(f"warning: {p}")
    if "export" in summary:
        e = summary["export"]
        print(f"{e['format']} export: {e['rows']} preference rows in {e['dir']}")
    return 0
