"""Run one benchmark on one model: resumable generation, scoring, ``results.json``.

Files in ``cfg.out``:

- ``generation.json``: model, adapter, backend, decoding; written first. A rerun with different values refuses to
  mix answers (use another ``out`` directory or ``overwrite=true``).
- ``samples.jsonl``: one row per answered item ``{id, prompt, image, answer}``, appended and fsynced after every
  batch, so a kill loses at most the batch in flight; a rerun skips the ids already there (a torn last line is cut
  off) and refuses rows whose prompt or image no longer match the benchmark's.
- ``scores.jsonl``: per-item parse and score records (rewritten by every run, atomically).
- ``judge_cache.jsonl``: for judged benchmarks, every judge answer (see :mod:`unprior.eval.judge`).
- ``results.json``: metrics with their directions, benchmark / parser / scorer versions, protocol provenance, model,
  decoding, the config and its hash; written last, atomically.

Generation goes through a :data:`~unprior.eval.registry.GenerateFn`, so the runner works with any backend, and with
none at all when every answer is already on disk (re-scoring after a parser change).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import unprior
from unprior.config import config_hash, to_dict
from unprior.eval.common import append_jsonl, check_images, read_resumable_lines
from unprior.eval.config import EvalConfig
from unprior.eval.registry import Benchmark, DataError, GenerateFn, Item, Request, make_benchmark
from unprior.io import InputError, read_json, write_json, write_jsonl, write_rejected

SAMPLES, SCORES, RESULTS, GENERATION = "samples.jsonl", "scores.jsonl", "results.json", "generation.json"


class RunMismatchError(InputError, RuntimeError):
    """The output directory holds answers made under different settings (or two answers for one item)."""


GENERIC_FOLDERS = frozenset({"model", "adapter", "merged", "final", "output", "out", "lora", "checkpoint"})
"""Folder names that say nothing about the run (``unprior train`` saves every model as ``<run>/model``)."""


def model_label(label: str, model: str, adapter: str) -> str:
    """A run's row name in ``compare``: ``label``, else the adapter's or model's folder name; a generic folder name
    (``runs/napo/model``) gives way to the run directory's (``napo``), so two trained runs never share a label."""
    if label:
        return label
    path = Path(adapter or model or "model")
    if path.exists():  # "./model" run from inside the run directory
        path = path.resolve()
    parts = [p for p in path.parts if p not in ("/", ".", "..")]
    while len(parts) > 1 and parts[-1].lower() in GENERIC_FOLDERS:
        parts.pop()
    return parts[-1] if parts else path.name or "model"


def default_label(cfg: EvalConfig) -> str:
    return model_label(cfg.label, cfg.model, cfg.adapter)


def generation_settings(cfg: EvalConfig, bench: Benchmark) -> dict[str, Any]:
    """What the answers depend on besides the items themselves (checked against a resumed run)."""
    return {"benchmark": bench.name, "model": cfg.model, "adapter": cfg.adapter, "backend": cfg.backend,
            "decoding": cfg.decoding(bench.max_new_tokens)}


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / GENERATION
    if path.is_file():
        old = read_json(path)
        if old != settings:
            diff = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            raise RunMismatchError(f"{out} holds answers generated with other settings ({', '.join(diff)} differ: "
                                   f"{ {k: old.get(k) for k in diff} } vs { {k: settings.get(k) for k in diff} }); "
                                   "use another out directory, or overwrite=true to discard them")
    else:
        write_json(path, settings)


def _bad_answer(row: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when a ``samples.jsonl`` row cannot be used as an answer, else None."""
    if not isinstance(row.get("id"), str):
        return "no_id", f"id is {row.get('id')!r}, not a string"
    if "answer" not in row:
        return "no_answer", "no 'answer' field"
    if not isinstance(row["answer"], str):
        return "answer_not_text", f"answer is {type(row['answer']).__name__}, not text"
    return None


def load_answers(path: Path, items: Sequence[Item], rejected: list[dict[str, Any]] | None = None,
                 ) -> dict[str, dict[str, Any]]:
    """Answers already in ``samples.jsonl``, checked against the current items' prompts and images.

    A row without a usable id or text answer is dropped (added to ``rejected`` with its line and reason), so its
    item is answered again. Two usable answers for one item are refused: which one counts is not ours to guess.
    """
    by_id = {it.id: it for it in items}
    done: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for lineno, row in read_resumable_lines(path):
        bad = _bad_answer(row)
        if bad is not None:
            if rejected is not None:
                rejected.append({"id": row.get("id"), "where": f"{path.name}:{lineno}", "reason": bad[0],
                                 "detail": bad[1]})
            continue
        item = by_id.get(row.get("id"))
        if item is None:
            continue  # answered in a run with a larger limit; kept on disk, not used
        if item.id in done:
            raise RunMismatchError(f"{path}:{lineno}: a second answer for item {item.id!r} (the first is on line "
                                   f"{lines[item.id]}); delete one of the two lines, or overwrite=true to redo all")
        lines[item.id] = lineno
        if row.get("prompt") != item.prompt or row.get("image") != _image_str(item):
            raise RunMismatchError(f"{path}: the saved answer for item {item.id!r} was made for another prompt or "
                                   "image (the benchmark data or version changed); use another out directory or "
                                   "overwrite=true")
        done[item.id] = row
    return done


def _image_str(item: Item) -> str | None:
    return None if item.image is None else str(item.image)


def generate_missing(items: Sequence[Item], done: dict[str, dict[str, Any]], generate_fn: GenerateFn | None,
                     samples: Path, batch_size: int, max_new_tokens: int, console: Console,
                     progress_bar: bool = True) -> int:
    """Generate answers for items not in ``done`` (updated in place), appending each batch to ``samples``."""
    todo = [it for it in items if it.id not in done]
    if not todo:
        return 0
    if generate_fn is None:
        raise RunMismatchError(f"{len(todo)} of {len(items)} items have no answer in {samples} and no generation "
                               "backend was given")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    console.print(f"generating {len(todo)} of {len(items)} answers, max_new_tokens {max_new_tokens}", markup=False,
                  highlight=False)
    bar = Progress(*columns, console=console, disable=not progress_bar)
    with bar as progress, open(samples, "a", encoding="utf-8") as f:
        task = progress.add_task("generating", total=len(items), completed=len(items) - len(todo))
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            answers = generate_fn([Request(it.id, it.image, it.prompt, max_new_tokens) for it in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"generate_fn returned {len(answers)} answers for {len(batch)} requests")
            rows = [{"id": it.id, "prompt": it.prompt, "image": _image_str(it), "answer": str(a)}
                    for it, a in zip(batch, answers, strict=True)]
            append_jsonl(f, rows)
            done.update((r["id"], r) for r in rows)
            progress.advance(task, len(batch))
    return len(todo)


def _prepare(cfg: EvalConfig, bench: Benchmark) -> tuple[Path, list[Item]]:
    items = bench.load()
    counts = Counter(it.id for it in items)
    dups = [i for i, n in counts.items() if n > 1]
    if dups:
        raise DataError(f"benchmark {bench.name}: duplicate item ids {dups[:5]}")
    if cfg.limit is not None:
        items = bench.head(items, cfg.limit)
    check_images(items)  # only the images this run uses
    out = Path(cfg.out)
    if cfg.overwrite:
        for name in (SAMPLES, SCORES, RESULTS, GENERATION):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out, items


def run_eval(cfg: EvalConfig, generate_fn: GenerateFn | None = None, model_info: dict[str, Any] | None = None,
             console: Console | None = None) -> dict[str, Any]:
    """Generate (resuming), score and write ``results.json`` for ``cfg.benchmark``.

    Args:
        cfg: The validated run config.
        generate_fn: Batch generation with ``cfg``'s decoding settings already bound (see ``Request``); may be None
            when all answers exist.
        model_info: Extra facts about the model recorded in results.json (e.g. resolved revision, dtype).
        console: Where progress and the summary go (default: stderr).

    Returns:
        The results dict, as written to ``results.json``.
    """
    console = console or Console(stderr=True)
    bench = make_benchmark(cfg.benchmark, cfg.options)
    out, items = _prepare(cfg, bench)
    settings = generation_settings(cfg, bench)
    _check_settings(out, settings)
    rejected: list[dict[str, Any]] = []
    done = load_answers(out / SAMPLES, items, rejected)
    if rejected:  # those items are answered again below
        write_rejected(out, rejected)
        console.print(f"{len(rejected)} unusable rows in {out / SAMPLES} (listed in {out / 'rejected.jsonl'}); "
                      "their items are answered again", markup=False, highlight=False)
    n_new = generate_missing(items, done, generate_fn, out / SAMPLES, cfg.batch_size,
                             settings["decoding"]["max_new_tokens"], console, cfg.progress)
    answers = [done[it.id]["answer"] for it in items]
    scores = bench.score_all(items, answers, out)
    write_jsonl(out / SCORES, ({"id": it.id, "answer": a, **s} for it, a, s in zip(items, answers, scores,
                                                                                  strict=True)))
    metrics = bench.aggregate(items, scores)
    results = _results(cfg, bench, settings, metrics, len(items), n_new, model_info or {})
    results |= _empty_answers(answers, out / SAMPLES)
    write_json(out / RESULTS, results)
    console.print(summary(results), markup=False, highlight=False, soft_wrap=True)
    for warning in results["warnings"]:
        console.print(f"WARNING: {warning}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    return results


EMPTY_WARN_SHARE = 0.5
"""Share of empty answers above which a run's metrics are flagged: they describe a model that said nothing."""


def _empty_answers(answers: Sequence[Any], samples: Path) -> dict[str, Any]:
    """``{"empty_answers": n, "warnings": [...]}`` for results.json; a warning when most answers are empty."""
    empty = sum(1 for a in answers if not str(a).strip())
    warnings = []
    if answers and empty > EMPTY_WARN_SHARE * len(answers):
        warnings.append(f"{empty} of {len(answers)} answers are empty ({samples}): the metrics describe a model "
                        "that said nothing, and lower-is-better ones read as perfect. Check the model (non-finite "
                        "weights from a diverged run?), its chat template and max_new_tokens")
    return {"empty_answers": empty, "warnings": warnings}


def _results(cfg: EvalConfig, bench: Benchmark, settings: dict[str, Any], metrics: dict[str, float | None], n: int,
             n_new: int, model_info: dict[str, Any]) -> dict[str, Any]:
    info = {m.name: {"higher_is_better": m.higher_is_better, "description": m.description, "digits": m.digits}
            for m in bench.metrics()}
    return {
        "benchmark": bench.name,
        "benchmark_version": bench.version,
        "parser_version": bench.parser_version,
        "scorer_version": bench.scorer_version,
        "provenance": bench.provenance(),
        "metrics": {k: metrics[k] for k in [*info, *metrics] if k in metrics},
        "metric_info": {k: v for k, v in info.items() if k in metrics},
        "headline": [k for k in bench.headline() if k in metrics],
        "n_items": n,
        "n_generated": n_new,
        "model": {"label": default_label(cfg), "model": cfg.model, "adapter": cfg.adapter, "backend": cfg.backend,
                  **model_info},
        "decoding": settings["decoding"],
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "generation_hash": config_hash(settings),
        "unprior_version": unprior.__version__,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def summary(results: dict[str, Any]) -> str:
    """A few lines: the run's label, benchmark and headline metrics with their direction."""
    arrows = {True: "↑", False: "↓", None: ""}
    parts = []
    for k in results["headline"] or list(results["metrics"]):
        info = results["metric_info"].get(k, {})
        value = results["metrics"][k]
        if value is None:  # no items for this metric in the run (e.g. a group cut off by limit)
            parts.append(f"{k} n/a")
            continue
        parts.append(f"{k} {value:.{info.get('digits', 1)}f}{arrows[info.get('higher_is_better')]}")
    flag = "  [approximate]" if results["provenance"].get("approximate") else ""
    return f"{results['model']['label']} on {results['benchmark']} ({results['n_items']} items): " + ", ".join(
        parts) + flag
