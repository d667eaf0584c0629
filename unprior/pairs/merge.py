"""``unprior pairs merge``: the finished shards of a pairs run as one pairs file (and a TRL or LLaMA-Factory export);
:func:`resolve_pairs` merges on demand for ``score`` and ``train``. The run's layout: :mod:`unprior.pairs.shards`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from unprior.formats.pairs import iter_pairs, write_pairs
from unprior.io import InputError, read_json, read_jsonl, write_json, write_rejected
from unprior.pairs.config import MergeConfig
from unprior.pairs.export import export_llamafactory, export_trl
from unprior.pairs.shards import SHARD_GLOB, part_name, read_done, shard_dirs, shard_name
from unprior.pairs.summary import print_summary, summarise


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
    dirs, _ = _merge_plan(Path(out), allow_partial)
    seen: set[str] = set()
    for d in dirs:
        done = read_done(d, 10**9)
        for k in sorted(done):
            for row in iter_pairs(d / part_name(int(k))):
                if row.id in seen:
                    raise RuntimeError(f"sample id {row.id!r} appears twice ({d.name}/{part_name(int(k))})")
                seen.add(row.id)
                yield row


def merge_pairs(cfg: MergeConfig) -> dict[str, Any]:
    """Write the merged pairs file (and export) and the merged summary; return the summary."""
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
        for k, v in read_done(d, 10**9).items():
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
    if kind == "trl":
        n = export_trl(iter_pairs(merged), out / "trl")
        return {"format": "trl", "dir": str(out / "trl"), "rows": n}
    n = export_llamafactory(iter_pairs(merged), out / "llamafactory")
    return {"format": "llamafactory", "dir": str(out / "llamafactory"), "rows": n}


def run_merge(cfg: MergeConfig) -> int:
    summary = merge_pairs(cfg)
    print_summary(summary, f"unprior pairs merge: {summary['output']} ({summary['rows']} rows)")
    for p in summary["problems"]:
        print(f"warning: {p}")
    if "export" in summary:
        e = summary["export"]
        print(f"{e['format']} export: {e['rows']} preference rows in {e['dir']}")
    return 0
