"""Files in, files out: atomic writes, JSON/JSONL helpers, hashing, and safe paths.

A stage writes its whole output into a temporary sibling directory and renames it into place at the end, so a
killed run never leaves a directory that looks complete. A directory is complete when it holds ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class OutputExistsError(FileExistsError):
    """The output directory exists and is not empty, and overwriting was not asked for."""


class InputError(ValueError):
    """A bad input the user can fix: a missing, unreadable, empty or mismatched file or directory.

    The message is one line naming the file (and row or field where there is one) and the fix; ``unprior`` prints
    it without a traceback and exits 2 (docs/errors.md).
    """


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return len(lines)


REJECTED_CAP = 10_000
"""Rows listed in a stage's ``rejected.jsonl``; the total and the counts by reason are always complete."""


def write_rejected(out_dir: str | Path, records: list[dict[str, Any]], cap: int = REJECTED_CAP) -> dict[str, Any]:
    """Write the input rows a stage dropped to ``out_dir/rejected.jsonl`` (at most ``cap``; each record holds the
    row's ``id``, where it was found (``where``: file:line, file[index] or row index) and ``reason``); returns
    ``{"total", "listed", "by_reason"}`` for the stage's summary."""
    by_reason: dict[str, int] = {}
    for r in records:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    write_jsonl(Path(out_dir) / "rejected.jsonl", records[:cap])
    return {"total": len(records), "listed": min(len(records), cap), "by_reason": dict(sorted(by_reason.items()))}


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield rows; a malformed line (not JSON, not an object, not UTF-8) raises InputError naming the file and line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: byte 0x{raw[e.start]:02x} is not UTF-8") from None
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield row


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only), imported on first use: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Lay ``fig`` out, save it to ``path`` (its folder created) with ``savefig``'s options, and close it."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, **savefig)
    pyplot().close(fig)
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | Path, pattern: str = "*") -> str:
    """Hash of every file's relative name and content under ``path`` (sorted, so order-independent)."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob(pattern) if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def is_complete(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


STAGED = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?:(?P<pid>\d+)@(?P<host>[^/]*?)-)?[^-]+")
"""A staged write's temporary sibling: ``.<out>.partial-<pid>@<host>-<random>`` (``.old-`` while swapping);
directories named before the owner was recorded (``.<out>.partial-<random>``) match without pid and host."""
FOREIGN_STALE_S = 24 * 3600
"""A staged directory of another host is taken as abandoned after this long (its process cannot be asked)."""


def _owner_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname().replace('/', '_')}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_staging(parent: str | Path, name: str) -> list[Path]:
    """Remove the temporary directories that killed staged writes left in ``parent``; return them.

    A directory is stale when its owner process is gone (same host), when it is older than a day (another host),
    or when it has no owner recorded and belongs to ``name`` (an older version's write of the same output).
    """
    removed = []
    host = socket.gethostname().replace("/", "_")
    for path in Path(parent).glob(".*"):
        m = STAGED.fullmatch(path.name)
        if m is None or not path.is_dir():
            continue
        if m["pid"] is None:
            stale = m["name"] == name
        elif m["host"] == host:
            stale = not _alive(int(m["pid"]))
        else:
            stale = time.time() - path.stat().st_mtime > FOREIGN_STALE_S
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staged_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` atomically when the block succeeds.

    Refuses (OutputExistsError) if ``out`` exists, is non-empty and ``overwrite`` is false. On failure the
    temporary directory is removed and ``out`` is untouched. The caller writes ``manifest.json`` last. Temporary
    directories that killed writes left beside ``out`` are removed first (:func:`clean_stale_staging`).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty; pass overwrite=true to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{_owner_tag()}"))
    try:
        yield tmp
        if out.exists():
            trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-{_owner_tag()}"))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_inside(root: str | Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; raise ValueError if it escapes the root (``..``, absolute, symlinks)."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"path {relative!r} escapes the dataset root {base}")
    return target


def cache_root() -> Path:
    """Where cached artefacts (base models, reference log-probs) live: $UNPRIOR_CACHE or ~/.cache/unprior.

    A root that cannot be written (read-only, a file in the way, no permission) is not used: the cache moves to
    ``<tmp>/unprior-cache-<uid>`` with a warning, so a run rebuilds what it needs instead of failing half-way.
    """
    env = os.environ.get("UNPRIOR_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unprior"
    return _usable_cache(str(root))


@functools.cache
def _usable_cache(root: str) -> Path:
    if _writable(Path(root)):
        return Path(root)
    fallback = Path(tempfile.gettempdir()) / f"unprior-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    warnings.warn(f"unprior cache {root} is not writable; using {fallback} (set UNPRIOR_CACHE to choose)",
                  stacklevel=3)
    return fallback


def _writable(root: Path) -> bool:
    """Really try: create ``root`` and a file in it (``os.access`` says yes to root for read-only mounts)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
        return True
    except OSError:
        return False


def file_digests(root: str | Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of files under ``root``, for a manifest that lets a reader detect a damaged copy."""
    return {n: sha256_file(Path(root) / n) for n in sorted(names)}


def damaged_files(root: str | Path, digests: dict[str, str]) -> list[str]:
    """Names in ``digests`` that are missing under ``root`` or whose content changed."""
    bad = []
    for name, digest in digests.items():
        path = Path(root) / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad
