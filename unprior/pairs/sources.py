"""Sources: the rows of a dataset file or directory, whatever the container (JSONL, JSON list, parquet, saved dataset).

Each row comes with where it was found (``file:line``, ``file[index]``, ``file:row N``) so problems can be reported
by position; a malformed JSONL line is yielded as a :class:`~unprior.pairs.images.RowProblem` instead of ending the
file. Images inside tables are left undecoded (``{"bytes", "path"}`` structs).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from unprior.io import InputError
from unprior.pairs.config import LoadConfig
from unprior.pairs.images import RowProblem

Row = tuple[str, dict[str, Any] | RowProblem]
"""(where, raw row or the problem that made it unreadable)."""


@dataclass
class Source:
    """An opened dataset: its rows, the root images resolve against, and its column names."""

    rows: Iterator[Row]
    root: Path
    columns: list[str]
    """Table columns, or the first JSON row's keys (for sniffing and column mapping)."""
    is_unprior_root: bool = False
    """``path`` was a directory holding ``<split>.jsonl``: our own format."""


def _jsonl_rows(path: Path) -> Iterator[Row]:
    """Rows of a JSONL file; a bad line (malformed JSON, bytes that are not UTF-8) becomes a RowProblem instead of
    ending the file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, RowProblem("not_utf8", f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield where, RowProblem("bad_row", f"not valid JSON ({e.msg})")
                continue
            yield (where,
                   row if isinstance(row, dict) else RowProblem("bad_row", f"not an object: {type(row).__name__}"))


_NOT_UTF8 = re.compile("[\udc80-\udcff]")
"""A byte that was not UTF-8, as ``surrogateescape`` decoding keeps it."""


def _json_rows(path: Path) -> Iterator[Row]:
    """Rows of a JSON file holding a list of objects (LLaVA, LLaMA-Factory), or of a JSONL file named .json.

    Bytes that are not UTF-8 are kept through parsing (``surrogateescape``), so only the rows holding them are
    dropped (reason ``not_utf8``, with the file line of the first such byte), not the whole file.
    """
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        yield from _jsonl_rows(path)
        return
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    start = 0
    for i, row in enumerate(data):
        where = f"{path.name}[{i}]"
        bad = _NOT_UTF8.search(json.dumps(row, ensure_ascii=False)) if isinstance(row, dict) else None
        if not isinstance(row, dict):
            yield where, RowProblem("bad_row", "not an object")
        elif bad:
            at = text.find(bad.group(), start)  # the row's first bad byte: the next one in the file
            start = at + 1
            line = text.count("\n", 0, at) + 1
            yield where, RowProblem("not_utf8", f"byte 0x{ord(bad.group()) - 0xdc00:02x} on file line {line} is "
                                                "not UTF-8")
        else:
            yield where, row


def _parquet_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    of_split = [p for p in files if p.name.startswith((f"{split}-", f"{split}.")) or p.parent.name == split]
    return of_split or files


def _parquet_rows(files: list[Path]) -> Iterator[Row]:
    for file in files:
        i = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield f"{file.name}:row {i}", row
                i += 1


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in ("state.json", "dataset_dict.json"))


def _saved_dataset(path: Path, split: str) -> tuple[Iterator[Row], list[str]]:
    """Rows of a ``save_to_disk`` directory, images left undecoded (``{"bytes", "path"}``)."""
    import datasets  # slow to import: only for a saved dataset

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputError(f"{path}: no split {split!r}; splits: {', '.join(ds)}")
        ds = ds[split]

    def rows() -> Iterator[Row]:
        i = 0
        for batch in ds.with_format("arrow").iter(batch_size=256):
            for row in batch.to_pylist():
                yield f"{path.name}:row {i}", row
                i += 1

    return rows(), list(ds.column_names)


def open_source(path: Path, cfg: LoadConfig) -> Source:
    """Rows, image root and column names of ``path``, whatever its container."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    root = Path(cfg.image_root) if cfg.image_root else (path if path.is_dir() else path.parent)
    if path.is_dir() and (path / f"{cfg.split}.jsonl").is_file():
        rows = _jsonl_rows(path / f"{cfg.split}.jsonl")
        return Source(rows, root, [], is_unprior_root=True)
    if _is_saved_dataset(path):
        rows, columns = _saved_dataset(path, cfg.split)
        return Source(rows, root, columns)
    if path.is_dir() or path.suffix == ".parquet":
        files = _parquet_files(path, cfg.split)
        if not files:
            raise InputError(f"{path}: no {cfg.split}.jsonl, saved dataset or parquet files found; check the path "
                             "and load.split")
        return Source(_parquet_rows(files), root, pq.read_schema(files[0]).names)
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _json_rows(path)
    head = []  # rows up to the first readable one, whose keys stand for the columns
    for row in rows:
        head.append(row)
        if isinstance(row[1], dict):
            break
    columns = list(head[-1][1]) if head and isinstance(head[-1][1], dict) else []
    return Source(itertools.chain(head, rows), root, columns)


def sniff_format(columns: Iterable[str]) -> str:
    """The format a table's columns (or a JSON row's keys) look like."""
    keys = set(columns)
    if keys & {"conversations", "messages"}:
        return "llava"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "trl"
    if {"question", "chosen", "rejected"} <= keys:
        return "rlaifv"
    if {"id", "image", "prompt", "answer"} <= keys:
        return "unprior"
    return "hf"
