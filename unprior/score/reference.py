"""``unprior score``: reference log-probs of every response of a pairs dataset, cached by what determines them.

The frozen starting model scores each row's chosen answer and every negative against the row's full original prompt
with its original image (docs/papers.md, NaPO part 2), whatever perturbation produced the negative. Results are
stored once as parquet columns, so no reference model sits in memory during training (NaPO caches them the same way;
TRL refuses precomputed reference log-probs for vision data, docs/train.md).

Cache entry ``<reference_dir>/<key>/``::

    reference.parquet   one row per response: row, id, response (0 = chosen, i = negative i-1), kind,
                        logp_sum, logp_mean, n_tokens, truncated
    dropped.jsonl       rows that were not scored: {row, id, reason}
    noise_report.json   margins per negative kind (see unprior.score.noise_report), noise_sum.png, noise_mean.png
    score_config.yaml   the config that produced the entry
    manifest.json       the key's inputs, counts and timings (written last: marks the entry complete)
    corrupted/<ckey>/   with ``corrupted=true``: each chosen answer scored with a corrupted image (mDPO's conditional
                        term): corrupted.parquet (row, id, logp_sum, logp_mean, n_tokens, truncated), dropped.jsonl,
                        corruption.png (a few originals above their corrupted images), manifest.json

While an entry is being scored its work is committed every ``chunk_rows`` rows to ``<reference_dir>/.<key>.work/``
(``chunk-<first>-<end>.parquet``, the chunk's dropped rows in its metadata); a rerun after a kill scores only the
rows after the last commit, in the same batches, so the entry is bit-identical to an uninterrupted run's. The work
directory is removed once the entry is written.

No entry holds a NaN or infinite log-prob: a row with one is dropped (reason ``nonfinite_logp``); a model for
which most rows are non-finite, or whose weights are, is refused with the count and ids. A damaged entry that holds
one anyway is refused when read (docs/score.md, "Non-finite values").

The key hashes exactly what changes the numbers: the model directory's files (weights, config, tokenizer,
processor), the pairs file's bytes, the image root, the chat template, the image-processor settings, ``max_length``
and ``dtype``. β, the loss, the batch size and the forward method do not enter it. A corrupted sub-entry's key adds
the corruption (kind, seed, parameters) to its entry's key: changing the corruption rescores only the chosen answers
with the new corrupted images; the entry itself is a hit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from rich.console import Console

from unprior.config import dump_yaml
from unprior.formats.pairs import PairRow, iter_pairs, open_image, pairs_metadata, require_pairs_rows
from unprior.forward.batch import RowEncoder
from unprior.forward.prefix import ResponseScorer
from unprior.guards import NonFiniteError, some_ids
from unprior.io import (
    InputError,
    atomic_write_bytes,
    cache_root,
    is_complete,
    read_json,
    sha256_dir,
    sha256_file,
    staged_dir,
    write_json,
    write_jsonl,
    write_rejected,
)
from unprior.models.families import load_model, load_processor
from unprior.models.generate import vision_merge
from unprior.pairs.merge import resolve_pairs
from unprior.score.config import CorruptionConfig, ScoreConfig
from unprior.score.corrupt import make_corrupter
from unprior.score.noise_report import write_noise_report

REFERENCE_FORMAT_VERSION = 1
REFERENCE_FILE = "reference.parquet"
CORRUPTED_FORMAT_VERSION = 1
CORRUPTED_FILE = "corrupted.parquet"
CHOSEN = "chosen"
"""``kind`` of the chosen answer's row in reference.parquet."""

REFERENCE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("response", pa.int32()),
        ("kind", pa.string()),
        ("logp_sum", pa.float64()),
        ("logp_mean", pa.float64()),
        ("n_tokens", pa.int32()),
        ("truncated", pa.bool_()),
    ]
)

Log = Callable[[str], object]


def _image_root(cfg: ScoreConfig) -> str | None:
    if cfg.image_root:
        return str(Path(cfg.image_root).resolve())
    if Path(cfg.pairs).suffix == ".jsonl":
        return str(Path(cfg.pairs).resolve().parent)
    return pairs_metadata(cfg.pairs)["image_root"]


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(model: str) -> str:
    """Hash of every file of a local model directory; a hub id is taken as its name (pin a revision).

    Memoised in this process by the files' names, sizes and modification times, so scoring a training and an
    evaluation file reads multi-gigabyte weights once.
    """
    root = Path(model)
    if not root.is_dir():
        return f"hub:{model}"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = (str(root.resolve()), *((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _FINGERPRINTS:
        _FINGERPRINTS[stamp] = sha256_dir(root)
    return _FINGERPRINTS[stamp]


def key_inputs(cfg: ScoreConfig, processor) -> dict[str, Any]:
    """Everything the reference numbers depend on, as a JSON-able dict (hashed into the cache key)."""
    return {
        "version": REFERENCE_FORMAT_VERSION,
        "model": model_fingerprint(cfg.model),
        "pairs": sha256_file(cfg.pairs),
        "image_root": _image_root(cfg),
        "chat_template": processor.chat_template,
        "image_processor": json.loads(processor.image_processor.to_json_string()),
        "max_length": cfg.max_length,
        "dtype": cfg.dtype,
    }


def reference_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def entry_dir(cfg: ScoreConfig, key: str) -> Path:
    return (Path(cfg.reference_dir) if cfg.reference_dir else cache_root() / "reference") / key


def corrupted_key_inputs(entry_key: str, corruption: CorruptionConfig) -> dict[str, Any]:
    """What the corrupted scores depend on beyond their entry's key: the corruption itself."""
    return {"version": CORRUPTED_FORMAT_VERSION, "reference": entry_key, "corruption": asdict(corruption)}


def corrupted_dir(entry: str | Path, corruption: CorruptionConfig) -> Path:
    """The sub-entry of ``entry`` holding the chosen answers scored with ``corruption``'s images."""
    entry = Path(entry)
    return entry / "corrupted" / reference_key(corrupted_key_inputs(entry.name, corruption))


def load_frozen(cfg: ScoreConfig):
    """The starting model in eval mode (dtype from the config) and its processor."""
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    model, processor = load_model(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=dtype)
    return model.eval(), processor


def _chunks(cfg: ScoreConfig, start: int = 0) -> Iterator[list[tuple[int, PairRow]]]:
    """The pairs file's rows from position ``start`` on, with their file positions, ``batch_size`` at a time."""
    chunk: list[tuple[int, PairRow]] = []
    for index, row in enumerate(iter_pairs(cfg.pairs, image_root=cfg.image_root or None)):
        if index < start:
            continue
        chunk.append((index, row))
        if len(chunk) == cfg.batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


Columns = dict[str, list[Any]]
Dropped = list[dict[str, Any]]
ScoreBatch = Callable[[list[tuple[int, PairRow]]], tuple[Columns, Dropped]]
CHUNK_FILE = re.compile(r"chunk-(\d{9})-(\d{9})\.parquet")


def work_dir(out: str | Path) -> Path:
    """Where the scoring work of the entry (or corrupted sub-entry) ``out`` is committed until ``out`` is written."""
    out = Path(out)
    return out.parent / f".{out.name}.work"


class Chunks:
    """The committed chunks of one scoring run under ``work`` (None: nothing is persisted).

    A chunk is ``chunk-<first>-<end>.parquet``: the scored responses of pairs-file rows ``first`` to ``end - 1`` and,
    in its schema metadata, the rows of that range that were dropped. Each is written atomically, so a chunk is
    either whole or absent; chunks are used from row 0 up to the first gap.
    """

    def __init__(self, work: Path | None, schema: pa.Schema) -> None:
        self.work, self.schema = work, schema
        if work is not None:
            work.mkdir(parents=True, exist_ok=True)
            for tmp in work.glob(".*.tmp"):  # a write killed before its rename
                tmp.unlink(missing_ok=True)

    def committed(self) -> list[tuple[int, int, Path]]:
        """``(first, end, path)`` of the usable chunks: contiguous from row 0."""
        if self.work is None:
            return []
        found = sorted((int(m[1]), int(m[2]), p) for p in self.work.iterdir() if (m := CHUNK_FILE.fullmatch(p.name)))
        usable, end = [], 0
        for first, stop, path in found:
            if first != end:
                break
            usable.append((first, stop, path))
            end = stop
        return usable

    def load(self) -> tuple[list[pa.Table], Dropped, int]:
        """The committed tables, their dropped rows and the position the next chunk starts at."""
        tables: list[pa.Table] = []
        dropped: Dropped = []
        end = 0
        for _, stop, path in self.committed():
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowInvalid):
                break  # a damaged chunk: rescore from here
            dropped += json.loads((table.schema.metadata or {}).get(b"dropped", b"[]"))
            tables.append(table.replace_schema_metadata(None).cast(self.schema))
            end = stop
        return tables, dropped, end

    def commit(self, first: int, end: int, columns: Columns, dropped: Dropped) -> pa.Table:
        table = pa.Table.from_pydict(columns, schema=self.schema)
        if self.work is not None:
            sink = pa.BufferOutputStream()
            pq.write_table(table.replace_schema_metadata({"dropped": json.dumps(dropped)}), sink)
            atomic_write_bytes(self.work / f"chunk-{first:09d}-{end:09d}.parquet", sink.getvalue().to_pybytes())
        return table


def _score_in_chunks(cfg: ScoreConfig, work: Path | None, schema: pa.Schema, score_batch: ScoreBatch,
                     log: Log) -> tuple[pa.Table, Dropped]:
    """Every row's responses via ``score_batch``, committed to ``work`` every ``chunk_rows`` rows (whole batches),
    continuing after the chunks a killed run committed."""
    store = Chunks(work, schema)
    tables, dropped, start = store.load()
    if start:
        log(f"resuming: rows 0-{start - 1} were committed in {work} ({sum(t.num_rows for t in tables)} responses); "
            f"scoring from row {start}")
    per_commit = math.ceil(cfg.chunk_rows / cfg.batch_size) * cfg.batch_size
    columns: Columns = {name: [] for name in schema.names}
    lost: Dropped = []
    first = end = start
    for chunk in _chunks(cfg, start):
        scored, gone = score_batch(chunk)
        for name in schema.names:
            columns[name] += scored[name]
        lost += gone
        end = chunk[-1][0] + 1
        if end - first >= per_commit:
            tables.append(store.commit(first, end, columns, lost))
            dropped += lost
            columns, lost, first = {name: [] for name in schema.names}, [], end
    if end > first:
        tables.append(store.commit(first, end, columns, lost))
        dropped += lost
    table = pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
    return table, dropped


def vision_patches(model, prompt: dict[str, torch.Tensor]) -> int:
    """Vision-tower positions of a processed batch: its image tokens x the pixel-shuffle / merge factor."""
    config = model.config
    image_id = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if image_id is None or "input_ids" not in prompt:
        return 0
    return vision_merge(config) * int((prompt["input_ids"] == image_id).sum())


def _reference_batch(encoder: RowEncoder, scorer: ResponseScorer, chunk: list[tuple[int, PairRow]],
                     max_patches: int = 0) -> tuple[Columns, Dropped]:
    """Scores of every response of a batch of rows (columns of :data:`REFERENCE_SCHEMA`) and the rows dropped.

    A batch whose images put more than ``max_patches`` positions through the vision tower (0: no limit) is scored in
    halves, each encoded again, so no forward holds more (docs/pairs.md, "Real sizes")."""
    columns: Columns = {name: [] for name in REFERENCE_SCHEMA.names}
    ids = {index: row.id for index, row in chunk}
    kinds = {index: [CHOSEN, *(n.kind for n in row.negatives)] for index, row in chunk}
    rows, lost = encoder.encode(chunk)
    if rows is not None and max_patches and len(chunk) > 1 and vision_patches(scorer.model, rows.prompt) > max_patches:
        del rows
        half = len(chunk) // 2
        (a, lost_a), (b, lost_b) = (_reference_batch(encoder, scorer, part, max_patches)
                                    for part in (chunk[:half], chunk[half:]))
        return {name: a[name] + b[name] for name in columns}, lost_a + lost_b
    dropped = [{"row": d.index, "id": ids[d.index], "reason": d.reason} for d in lost]
    if rows is None:
        return columns, dropped
    picks = [list(range(len(r))) for r in rows.responses]
    batch = encoder.collate(rows, picks, repeat_prompts=scorer.repeat_prompts)
    sums, counts = scorer(**batch.inputs())
    flat = [(index, j) for index, pick in zip(rows.indices, picks, strict=True) for j in pick]
    truncated = [t for row in rows.truncated for t in row]
    for (index, j), total, count, cut in zip(flat, sums.double().tolist(), counts.long().tolist(), truncated,
                                             strict=True):
        for name, value in zip(REFERENCE_SCHEMA.names, (index, ids[index], j, kinds[index][j], total,
                                                        total / max(count, 1), count, cut), strict=True):
            columns[name].append(value)
    return columns, dropped


@torch.no_grad()
def score_pairs(cfg: ScoreConfig, model, processor, log: Log = print, *, work: Path | None = None,
                ) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Reference log-probs of every response of ``cfg.pairs`` (a table in :data:`REFERENCE_SCHEMA`) and the dropped
    rows; with ``work``, committed there chunk by chunk and continued from what a killed run committed."""
    scorer = ResponseScorer(model, cfg.method, log=log)
    encoder = RowEncoder(processor, cfg.max_length)
    return _score_in_chunks(cfg, work, REFERENCE_SCHEMA,
                            lambda chunk: _reference_batch(encoder, scorer, chunk, cfg.max_batch_patches), log)


CORRUPTED_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("logp_sum", pa.float64()),
        ("logp_mean", pa.float64()),
        ("n_tokens", pa.int32()),
        ("truncated", pa.bool_()),
    ]
)


def _corrupted_batch(encoder: RowEncoder, scorer: ResponseScorer, corrupt, chunk: list[tuple[int, PairRow]],
                     ) -> tuple[Columns, Dropped]:
    """Scores of a batch's chosen answers with their corrupted images (columns of :data:`CORRUPTED_SCHEMA`)."""
    columns: Columns = {name: [] for name in CORRUPTED_SCHEMA.names}
    ids = {index: row.id for index, row in chunk}
    rows, lost = encoder.encode(chunk)
    dropped = [{"row": d.index, "id": ids[d.index], "reason": d.reason} for d in lost]
    if rows is None:
        return columns, dropped
    rows = encoder.with_corrupted(rows, corrupt, keep_originals=False)
    batch = encoder.collate(rows, [[0]] * len(rows), repeat_prompts=scorer.repeat_prompts)
    sums, counts = scorer(**batch.inputs())
    for index, total, count, cut in zip(rows.indices, sums.double().tolist(), counts.long().tolist(),
                                        [t[0] for t in rows.truncated], strict=True):
        for name, value in zip(CORRUPTED_SCHEMA.names, (index, ids[index], total, total / max(count, 1), count,
                                                        cut), strict=True):
            columns[name].append(value)
    return columns, dropped


@torch.no_grad()
def score_corrupted(cfg: ScoreConfig, model, processor, log: Log = print, *, work: Path | None = None,
                    ) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Reference log-probs of every chosen answer of ``cfg.pairs`` with its row's corrupted image
    (``cfg.corruption``), as a table in :data:`CORRUPTED_SCHEMA`, and the dropped rows; ``work`` as in
    :func:`score_pairs`."""
    scorer = ResponseScorer(model, cfg.method, log=log)
    encoder = RowEncoder(processor, cfg.max_length)
    corrupt = make_corrupter(cfg.corruption, processor)
    return _score_in_chunks(cfg, work, CORRUPTED_SCHEMA,
                            lambda chunk: _corrupted_batch(encoder, scorer, corrupt, chunk), log)


NONFINITE_REFUSE = 0.5
"""Share of scored rows with a non-finite log-prob above which the model, not the rows, is taken to be broken."""
NONFINITE = "nonfinite_logp"
"""Drop reason of a row with a NaN or infinite reference log-prob."""


def nonfinite_rows(table: pa.Table) -> list[tuple[int, str]]:
    """``(row, id)`` of the rows of a reference or corrupted table with a NaN or infinite log-prob, in file order."""
    values = [table[name].to_numpy(zero_copy_only=False) for name in ("logp_sum", "logp_mean")]
    bad = ~(np.isfinite(values[0]) & np.isfinite(values[1]))
    return sorted(set(zip(table["row"].to_numpy()[bad].tolist(), np.asarray(table["id"].to_pylist(),
                                                                            dtype=object)[bad].tolist(), strict=True)))


def _drop_nonfinite(table: pa.Table, dropped: Dropped, cfg: ScoreConfig, work: Path) -> tuple[pa.Table, Dropped]:
    """Drop the rows holding a non-finite log-prob (reason :data:`NONFINITE`); refuse when they are most rows."""
    bad = nonfinite_rows(table)
    if not bad:
        return table, dropped
    scored = len(set(table["row"].to_pylist()))
    if len(bad) > NONFINITE_REFUSE * scored:
        raise NonFiniteError(
            f"{cfg.model} gives NaN or infinite log-probs for {len(bad)} of {scored} rows (ids "
            f"{some_ids([i for _, i in bad])}): the model is broken (or overflows in {cfg.dtype}); no entry was "
            f"written, the scored chunks are kept in {work}")
    rows = {r for r, _ in bad}
    keep = pa.array([r not in rows for r in table["row"].to_pylist()])
    extra = [{"row": r, "id": i, "reason": NONFINITE} for r, i in bad]
    return table.filter(keep), sorted(dropped + extra, key=lambda d: d["row"])


DROPPED_WARN = 0.5
"""Share of a pairs file's rows dropped above which ``score`` warns (docs/errors.md); all of them: refused."""


def _rejected_records(dropped: Dropped) -> list[dict[str, Any]]:
    return [{"id": d["id"], "where": f"row {d['row']}", "reason": d["reason"]} for d in dropped]


def _check_dropped(cfg: ScoreConfig, table: pa.Table, dropped: Dropped, out: Path) -> str | None:
    """Refuse a run in which every row was dropped (no entry is written; the rows and their reasons go to the work
    directory's ``rejected.jsonl``, its chunks removed so a rerun after the fix scores afresh); the warning to print
    when more than :data:`DROPPED_WARN` of the rows were."""
    if not dropped:
        return None
    total = len(set(table["row"].to_pylist())) + len(dropped)
    counts: dict[str, int] = {}
    for d in dropped:
        counts[d["reason"]] = counts.get(d["reason"], 0) + 1
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if len(dropped) == total:
        work = work_dir(out)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_rejected(work, _rejected_records(dropped))
        raise InputError(f"{cfg.pairs}: every one of its {total} rows was dropped ({reasons}); no reference entry "
                         f"was written; each row and its reason: {work / 'rejected.jsonl'}; fix those rows (or "
                         "image_root) and rerun")
    if len(dropped) > DROPPED_WARN * total:
        return (f"WARNING: {len(dropped)} of {total} rows of {cfg.pairs} were dropped ({reasons}); the reference "
                f"covers only the rest; each row and its reason: {out / 'rejected.jsonl'}")
    return None


def _check_weights(model, name: str) -> None:
    """Refuse a model with NaN or infinite weights before it scores anything."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteError(f"{name}: {len(bad)} weight tensors hold NaN or infinite values ({some_ids(bad, 3)}); "
                             "it cannot score (a model saved by a diverged run? use a checkpoint from before)")


def _check_finite_entry(path: Path, table: pa.Table) -> None:
    """Refuse a reference or corrupted table holding a non-finite log-prob (a damaged or hand-edited entry)."""
    bad = nonfinite_rows(table)
    if bad:
        raise NonFiniteError(f"{path}: {len(bad)} rows hold NaN or infinite log-probs (rows "
                             f"{some_ids([r for r, _ in bad])}; ids {some_ids([i for _, i in bad])}): the entry is "
                             f"damaged; delete {path.parent} or rescore with overwrite=true")


def corruption_preview(cfg: ScoreConfig, processor, n: int = 4) -> Image.Image | None:
    """The first ``n`` readable images of ``cfg.pairs`` above their corrupted versions, each scaled to 128 px."""
    corrupt = make_corrupter(cfg.corruption, processor)
    pairs: list[tuple[Image.Image, Image.Image]] = []
    for index, row in enumerate(iter_pairs(cfg.pairs, image_root=cfg.image_root or None)):
        if len(pairs) == n:
            break
        try:
            image = open_image(row.image) if row.image is not None else None
        except (OSError, ValueError, Image.DecompressionBombError):
            image = None
        if image is not None:
            pairs.append((image.convert("RGB"), corrupt(index, image)))
    if not pairs:
        return None
    side = 128
    sheet = Image.new("RGB", (side * len(pairs), 2 * side), "white")
    for i, (original, corrupted) in enumerate(pairs):
        sheet.paste(original.resize((side, side)), (i * side, 0))
        sheet.paste(corrupted.resize((side, side)), (i * side, side))
    return sheet


def ensure_reference(cfg: ScoreConfig, log: Log = print, *, model=None, processor=None) -> Path:
    """The cache entry for ``cfg``: reused when complete (a hit), computed and written atomically otherwise.

    Args:
        cfg: What to score.
        log: Progress lines.
        model: The already-loaded starting model (weights equal to ``cfg.model``'s, in ``cfg.dtype``), to avoid a
            second load; by default it is loaded from ``cfg.model``.
        processor: Its processor (required with ``model``).

    Returns:
        The entry directory (holding ``reference.parquet`` and ``manifest.json``).
    """
    cfg = dataclasses.replace(cfg, pairs=resolve_pairs(cfg.pairs, log))  # a pairs run directory: its merged file
    require_pairs_rows(cfg.pairs)  # a missing, damaged or empty pairs file is refused before any model loads
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    processor = processor if processor is not None else load_processor(cfg.model)
    inputs = key_inputs(cfg, processor)
    key = reference_key(inputs)
    out = entry_dir(cfg, key)
    if is_complete(out) and not cfg.overwrite:
        log(f"reference log-probs: cache hit {out}")
    else:
        model, processor = _score_entry(cfg, out, key, inputs, model, processor, log)
    if cfg.corrupted:
        _ensure_corrupted(cfg, out, model, processor, log)
    return out


def _score_entry(cfg: ScoreConfig, out: Path, key: str, inputs: dict[str, Any], model, processor, log: Log):
    """Score every response of ``cfg.pairs`` (resuming committed work) and write the entry ``out`` atomically;
    return the model used."""
    work = work_dir(out)
    if cfg.overwrite:
        shutil.rmtree(work, ignore_errors=True)
    resumed = sum(pq.read_metadata(p).num_rows for _, _, p in Chunks(work, REFERENCE_SCHEMA).committed())
    log(f"reference log-probs: cache miss, scoring {cfg.pairs} with {cfg.model} -> {out}")
    t0 = time.perf_counter()
    if model is None:
        model, processor = load_frozen(cfg)
    _check_weights(model, cfg.model)
    table, dropped = score_pairs(cfg, model, processor, log, work=work)
    now = table.num_rows - resumed
    table, dropped = _drop_nonfinite(table, dropped, cfg, work)
    warning = _check_dropped(cfg, table, dropped, out)
    with staged_dir(out, overwrite=True) as tmp:
        pq.write_table(table, tmp / REFERENCE_FILE)
        write_jsonl(tmp / "dropped.jsonl", dropped)
        write_rejected(tmp, _rejected_records(dropped))
        write_noise_report(table, tmp)
        dump_yaml(cfg, tmp / "score_config.yaml")
        write_json(tmp / "manifest.json", _manifest(key, inputs, table, dropped, time.perf_counter() - t0))
    shutil.rmtree(work, ignore_errors=True)
    log(f"reference log-probs: {table.num_rows} responses of {len(set(table['row'].to_pylist()))} rows scored "
        f"({now} responses by this run, {resumed} resumed from committed chunks), {len(dropped)} rows dropped "
        f"({time.perf_counter() - t0:.1f}s)")
    for reason, n in sorted(_manifest(key, inputs, table, dropped, 0.0)["dropped"].items()):
        log(f"  dropped, {reason}: {n} (ids and rows in {out / 'rejected.jsonl'})")
    if warning:
        log(warning)
    return model, processor


def _ensure_corrupted(cfg: ScoreConfig, entry: Path, model, processor, log: Log) -> Path:
    """The corrupted sub-entry of ``entry`` for ``cfg.corruption``: a hit when complete, else scored now."""
    out = corrupted_dir(entry, cfg.corruption)
    if is_complete(out) and not cfg.overwrite:
        log(f"corrupted-image log-probs ({cfg.corruption.kind}): cache hit {out}")
        return out
    log(f"corrupted-image log-probs ({cfg.corruption.kind}): cache miss, scoring the chosen answers -> {out}")
    t0 = time.perf_counter()
    work = work_dir(out)
    if cfg.overwrite:
        shutil.rmtree(work, ignore_errors=True)
    if model is None:
        model, processor = load_frozen(cfg)
    table, dropped = score_corrupted(cfg, model, processor, log, work=work)
    table, dropped = _drop_nonfinite(table, dropped, cfg, work)
    preview = corruption_preview(cfg, processor)
    with staged_dir(out, overwrite=True) as tmp:
        pq.write_table(table, tmp / CORRUPTED_FILE)
        write_jsonl(tmp / "dropped.jsonl", dropped)
        if preview is not None:
            preview.save(tmp / "corruption.png")
        write_json(tmp / "manifest.json", {
            "kind": "unprior-corrupted-reference", "format_version": CORRUPTED_FORMAT_VERSION,
            "key": out.name, "key_inputs": corrupted_key_inputs(entry.name, cfg.corruption),
            "responses": table.num_rows, "dropped": len(dropped), "seconds": round(time.perf_counter() - t0, 2)})
    shutil.rmtree(work, ignore_errors=True)
    log(f"corrupted-image log-probs: {table.num_rows} chosen answers scored ({time.perf_counter() - t0:.1f}s)")
    return out


def _manifest(key: str, inputs: dict[str, Any], table: pa.Table, dropped: list[dict], seconds: float) -> dict:
    reasons: dict[str, int] = {}
    for d in dropped:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    return {
        "kind": "unprior-reference",
        "format_version": REFERENCE_FORMAT_VERSION,
        "key": key,
        "key_inputs": inputs,
        "responses": table.num_rows,
        "truncated": int(np.sum(table["truncated"].to_numpy())),
        "dropped": reasons,
        "seconds": round(seconds, 2),
    }


@dataclass
class Reference:
    """A loaded cache entry: per response of each scored row, the reference's summed log-prob and token count."""

    sums: dict[int, np.ndarray]
    """Pairs-file row -> ``(1 + n_negatives,)`` float64 summed log-probs (chosen first)."""
    counts: dict[int, np.ndarray]
    """Pairs-file row -> ``(1 + n_negatives,)`` int token counts."""
    kinds: dict[int, list[str]]
    """Pairs-file row -> response kinds (``chosen`` first)."""
    manifest: dict[str, Any]
    corrupted: dict[int, tuple[float, int]] = field(default_factory=dict)
    """Pairs-file row -> (summed log-prob, token count) of the chosen answer with the row's corrupted image; empty
    unless loaded with a corruption."""

    @property
    def rows(self) -> list[int]:
        """The scored (usable) rows, in file order."""
        return sorted(self.sums)


def load_reference(path: str | Path, corruption: CorruptionConfig | None = None) -> Reference:
    """Read a complete cache entry written by :func:`ensure_reference`; with ``corruption``, also its corrupted
    sub-entry (written by ``ensure_reference`` with ``corrupted=True`` and that corruption).

    Raises:
        NonFiniteError: a table holds a NaN or infinite log-prob (the entry was damaged or edited), naming the file,
            the count and the rows.
    """
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete reference entry (no manifest.json)")
    corrupted: dict[int, tuple[float, int]] = {}
    if corruption is not None:
        sub = corrupted_dir(path, corruption)
        if not is_complete(sub):
            raise FileNotFoundError(f"{sub} is not a complete corrupted-image entry; score with corrupted=true")
        loaded = pq.read_table(sub / CORRUPTED_FILE)
        _check_finite_entry(sub / CORRUPTED_FILE, loaded)
        table = loaded.to_pydict()
        corrupted = {r: (s, c) for r, s, c in zip(table["row"], table["logp_sum"], table["n_tokens"], strict=True)}
    loaded = pq.read_table(path / REFERENCE_FILE)
    _check_finite_entry(path / REFERENCE_FILE, loaded)
    data = loaded.to_pydict()
    sums: dict[int, list[float]] = {}
    counts: dict[int, list[int]] = {}
    kinds: dict[int, list[str]] = {}
    for row, total, count, kind in zip(data["row"], data["logp_sum"], data["n_tokens"], data["kind"], strict=True):
        sums.setdefault(row, []).append(total)
        counts.setdefault(row, []).append(count)
        kinds.setdefault(row, []).append(kind)
    return Reference(sums={r: np.asarray(v, dtype=np.float64) for r, v in sums.items()},
                     counts={r: np.asarray(v, dtype=np.int64) for r, v in counts.items()}, kinds=kinds,
                     manifest=read_json(path / "manifest.json"), corrupted=corrupted)


def run_score(cfg: ScoreConfig) -> int:
    """CLI entry: ensure the cache entry, print the noise report's headline numbers."""
    console = Console()
    out = ensure_reference(cfg, log=console.print)
    report = read_json(out / "noise_report.json")
    for kind, stats in report["kinds"].items():
        console.print(
            f"  {kind:<16} n={stats['n']:<6} reference prefers the negative: "
            f"sum {stats['sum']['share_negative']:.3f}, mean {stats['mean']['share_negative']:.3f}"
        )
    if cfg.out:
        target = Path(cfg.out)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("noise_report.json", "noise_sum.png", "noise_mean.png"):
            shutil.copy2(out / name, target / name)
        console.print(f"noise report copied to {target}")
    if cfg.corrupted:
        sub = corrupted_dir(out, cfg.corruption)
        table = pq.read_table(sub / CORRUPTED_FILE).to_pydict()
        chosen = load_reference(out).sums
        drops = [chosen[r][0] - s for r, s in zip(table["row"], table["logp_sum"], strict=True)]
        console.print(f"  chosen answers, original minus corrupted image ({cfg.corruption.kind}): mean summed "
                      f"log-prob margin {float(np.mean(drops)) if drops else float('nan'):.4f} over {len(drops)} rows")
        console.print(f"corrupted-image log-probs: {sub}")
    console.print(f"reference: {out}")
    return 0
