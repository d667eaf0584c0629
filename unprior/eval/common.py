"""Small helpers shared by the benchmark modules: data files with clear errors, images, safe ratios."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from unprior.eval.registry import DataError, Item
from unprior.io import atomic_write_bytes, cache_root, read_jsonl, resolve_inside


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path if it is a file, else raise DataError saying what it should be."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what}: file not found: {p}")
    return p


def require_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"{what}: directory not found: {p}")
    return p


def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; a syntax error raises DataError naming the file, line and column."""
    p = require_file(path, what)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def load_records(path: str | Path, what: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a JSONL file, or of a JSON file holding a list of objects, as ``(location, row)``.

    ``location`` is ``"file:line"`` for JSONL and ``"file[index]"`` for a JSON list, for error messages. POPE's
    question files are JSONL despite their ``.json`` extension, so the format is sniffed from the first character.
    """
    p = require_file(path, what)
    with open(p, encoding="utf-8") as f:
        head = f.read(1024).lstrip()
    if head.startswith("["):
        rows = load_json(p, what)
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{p}[{i}]: expected a JSON object, got {type(row).__name__}")
            yield f"{p}[{i}]", row
        return
    lineno = 0
    try:
        with open(p, encoding="utf-8") as f:
            numbered = [i for i, line in enumerate(f, 1) if line.strip()]
        for lineno, row in zip(numbered, read_jsonl(p), strict=True):
            yield f"{p}:{lineno}", row
    except ValueError as e:
        raise DataError(str(e)) from None


def get_field(row: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = object) -> Any:
    """``row[key]``, or DataError naming the location when it is missing or of the wrong type."""
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (fields: {', '.join(sorted(row))})")
    value = row[key]
    if kind is not object and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field {key!r} should be {names}, got {value!r:.80}")
    return value


def image_file(root: str | Path, relative: str, where: str, *, check: bool = True) -> Path:
    """Absolute path of an image under ``root``; DataError if it escapes the root or (``check``) does not exist.

    With ``check=False`` existence is left to :func:`check_images`, which the runner calls on the items a run
    actually uses (after ``limit``), so a quick run does not fail on an image it would never read.
    """
    try:
        path = resolve_inside(root, relative)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    if check and not path.is_file():
        raise DataError(f"{where}: image not found: {path}")
    return path


def check_images(items: Iterable[Item]) -> None:
    """DataError naming the first item (its file and row) whose image file does not exist."""
    for item in items:
        if item.image is not None and not item.image.is_file():
            raise DataError(f"{item.where or item.id}: image not found: {item.image}")


def embedded_image(data: str, where: str) -> Path:
    """Write a base64-encoded image (as in the Object HalBench and MMHal "with image" files) to the cache once.

    Returns:
        A content-addressed path under ``$UNPRIOR_CACHE/eval-images/``, so re-runs reuse the same file.
    """
    try:
        raw = base64.b64decode(data.split(",", 1)[-1] if data.startswith("data:") else data, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{where}: field 'image' is neither a relative path nor valid base64 image data") from None
    suffix = ".png" if raw.startswith(b"\x89PNG") else ".jpg"
    path = cache_root() / "eval-images" / (hashlib.sha256(raw).hexdigest()[:24] + suffix)
    if not path.is_file():
        atomic_write_bytes(path, raw)
    return path


def ratio(num: float, den: float) -> float:
    """``num / den``, or 0.0 when ``den`` is 0 (the reference scripts' convention where they guard at all)."""
    return num / den if den else 0.0


def read_resumable_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an append-only JSONL file that a killed process may have left with a torn last line.

    A malformed *last* line without its newline is the write that was interrupted: it is cut from the file (so the
    next append starts on a clean line) and dropped. A malformed line anywhere else raises DataError naming it.
    """
    return [row for _, row in read_resumable_lines(path)]


def read_resumable_lines(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """:func:`read_resumable_jsonl` with each row's line number."""
    p = Path(path)
    if not p.is_file():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError:
            if lineno == len(lines):  # no newline after it: a torn final write
                with open(p, "r+b") as f:
                    f.truncate(len(data) - len(line))
                break
            raise DataError(f"{p}:{lineno}: not a valid JSON object; delete the line or the file to redo it") from None
        rows.append((lineno, row))
    return rows


def append_jsonl(f: Any, rows: list[dict[str, Any]]) -> None:
    """Append rows to an open text file and push them to disk, so a kill loses at most the rows in flight."""
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
