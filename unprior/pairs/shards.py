"""The shards of a pairs run: their layout, plan, done-index and the checks that make a run resumable.

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

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from unprior.config import describe_changes, rename_keys, to_dict
from unprior.io import InputError, read_json, write_json
from unprior.numerics import stable_seed
from unprior.pairs.config import PairsConfig

SHARD_GLOB = "shard-*-of-*"
# Fields that do not change what is generated (excluded from the plan's config hash).
_NOT_CONTENT = ("out", "overwrite", "progress", "shard_index", "num_shards")
_BACKEND_NOT_CONTENT = ("device", "base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency")


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def shard_of(sample_id: str, num_shards: int) -> int:
    """The shard a sample belongs to: a stable hash of its id (independent of the source's row order)."""
    return stable_seed("shard", sample_id) % num_shards


def shard_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob(SHARD_GLOB) if p.is_dir())


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


def ids_hash(ids: Sequence[str]) -> str:
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


def check_plan(shard_dir: Path, plan: dict[str, Any], cfg: PairsConfig) -> None:
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


def clean_temporaries(shard_dir: Path) -> None:
    for tmp in shard_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def read_done(shard_dir: Path, n_parts: int) -> dict[str, Any]:
    path = shard_dir / "done.json"
    done = read_json(path)["parts"] if path.is_file() else {}
    # A recorded part whose file is gone is generated again.
    return {k: v for k, v in done.items() if int(k) < n_parts and (shard_dir / part_name(int(k))).is_file()}
