"""The sample schema every loader produces, and the rows of a pairs dataset with their readers and writers.

A :class:`Sample` is one (image, prompt, reference answer) item from a user's dataset. A :class:`PairRow` is one row
of a pairs dataset: the sample's prompt and image, the chosen (reference) answer and a list of :class:`Negative`
answers, each carrying its provenance. One row per prompt keeps every negative of a prompt together, as BPO's
``completions`` list does (docs/papers.md, BPO step 4) and NaPO's (rejected, question_only, image_only) columns do
(NaPO part 1).

Storage. A pairs dataset is parquet (default) or JSONL. Images are stored in one of two ways per row:

- by reference: ``image_path`` is a POSIX path relative to an image root. Parquet records that root in the file's
  key-value metadata (``unprior.pairs``); JSONL has no metadata, so its reader takes the root as an argument (default:
  the JSONL file's directory). On reading, the path is resolved with :func:`unprior.io.resolve_inside`, so a row
  cannot point outside its root. This is the default: source images (ShareGPT4V-sized sets) are not copied.
- embedded: ``image_bytes`` holds the encoded file (PNG/JPEG bytes as read). Sources that only have bytes (parquet
  datasets) are always stored this way; ``embed_images=True`` embeds every image, for a self-contained file.

``provenance`` and ``meta`` are free-form dicts; parquet stores them as JSON strings so the arrow schema does not
change with their contents.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unprior.io import InputError, resolve_inside

ImageRef = Path | bytes
"""A lazily opened image: a resolved file path, or the encoded file's bytes."""

NEGATIVE_KINDS = ("original", "image_weakening", "error_injection", "language_bias", "vision_bias")
"""original: the source dataset's own rejected answer. image_weakening: generated from a perturbed image (BPO
step 2 in docs/papers.md). error_injection: a text LLM rewrote the chosen answer (BPO step 3). language_bias:
generated without the image (NaPO Eq. 7, docs/papers.md N6). vision_bias: generated with the image and an empty
instruction (NaPO Eq. 8, N7)."""

SCHEMA_VERSION = 1
_META_KEY = b"unprior.pairs"


MAX_PIXELS = 40_000_000
"""Most pixels an image may have when any stage opens it (the decompression-bomb guard; pairs: ``load.max_pixels``)."""


class ImageProblem(ValueError):
    """An image that cannot be used; ``reason`` is the drop reason a stage records (docs/errors.md)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UnusableImage:
    """A pairs row's stored image path that cannot be resolved (it escapes the image root, or no root is known).

    Reading keeps the row, so one bad path does not stop a whole file; opening it raises :class:`ImageProblem`, and
    writing it back stores ``path`` unchanged.
    """

    path: str
    reason: str
    detail: str


@contextlib.contextmanager
def bounded_image(ref: ImageRef, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """``Image.open(ref)``, refused with :class:`ImageProblem` (``image_too_large``) when its header claims more than
    ``max_pixels`` pixels or PIL's own bomb guard fires: before any pixel is decoded. The one size check every stage
    shares (``open_image`` here, the loaders' and the browser's ``check_image``)."""
    name = "<image bytes>" if isinstance(ref, bytes) else str(ref)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageProblem("image_too_large",
                                       f"{name}: {width}x{height} = {width * height} pixels > max_pixels {max_pixels}")
                yield im
    except Image.DecompressionBombError as e:
        raise ImageProblem("image_too_large", f"{name}: {e}") from None


def open_image(ref: ImageRef | UnusableImage, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image reference as RGB, refusing one over ``max_pixels`` before decoding it.

    Raises:
        ImageProblem: ``image_too_large`` (from the header, or PIL's own bomb guard) or the reason of an
            :class:`UnusableImage`. A missing or undecodable file raises OSError / ValueError as PIL does.
    """
    if isinstance(ref, UnusableImage):
        raise ImageProblem(ref.reason, ref.detail)
    with bounded_image(ref, max_pixels) as im:
        return im.convert("RGB")


@dataclass(frozen=True)
class Sample:
    """One source item, normalised: what every loader yields."""

    id: str
    """Unique within the dataset; pairs and resumption are keyed by it."""
    image: ImageRef | None
    """The image (None only for text-only samples; loaders require an image)."""
    prompt: str
    """The user's question without any image token (the model's chat template places the image)."""
    answer: str
    """The reference answer: the chosen side of every pair (BPO §1.2 step 5)."""
    rejected: str | None = None
    """The source's own rejected answer, if it has one (RLAIF-V, TRL preference data)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Source-specific extras (task, origin dataset, NaPO's question_only/image_only answers, ...)."""

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        if self.image is None:
            raise ValueError(f"sample {self.id!r} has no image")
        return open_image(self.image, max_pixels)


@dataclass(frozen=True)
class Negative:
    """One rejected answer and where it came from.

    ``provenance`` keys (all optional, JSON-serialisable): ``strategy``, ``perturbation`` and ``params``, ``generator``
    (model id) and ``revision``, ``decoding`` (temperature, top_p, num_beams, max_new_tokens, ...), ``seed``,
    ``prompt_view`` (full / no_image / no_question), ``template`` (error-injection prompt name).
    """

    text: str
    kind: str
    """One of :data:`NEGATIVE_KINDS`."""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in NEGATIVE_KINDS:
            raise ValueError(f"negative kind {self.kind!r} is not one of {', '.join(NEGATIVE_KINDS)}")


@dataclass(frozen=True)
class PairRow:
    """One prompt of a pairs dataset with its chosen answer and all its negatives."""

    id: str
    image: ImageRef | UnusableImage | None
    prompt: str
    chosen: str
    negatives: list[Negative] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


PARQUET_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image_path", pa.string()),
        ("image_bytes", pa.binary()),
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("negatives", pa.list_(pa.struct([("text", pa.string()), ("kind", pa.string()), ("provenance", pa.string())]))
         ),
        ("meta", pa.string()),
    ]
)


def _image_fields(ref: ImageRef | UnusableImage | None, image_root: Path | None, embed: bool,
                  ) -> tuple[str | None, bytes | None]:
    """(relative path, bytes) for storage; exactly one is set unless the row has no image."""
    if ref is None:
        return None, None
    if isinstance(ref, UnusableImage):
        return ref.path, None
    if isinstance(ref, bytes):
        return None, ref
    if embed:
        return None, Path(ref).read_bytes()
    if image_root is None:
        raise ValueError(f"image {ref} is a file: pass image_root (paths are stored relative to it) or embed_images")
    path, root = Path(ref).resolve(), image_root.resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"image {path} is outside image_root {root}; pass another root or embed_images")
    return path.relative_to(root).as_posix(), None


def _resolve_image(path: str | None, data: bytes | None, image_root: Path | None,
                   ) -> ImageRef | UnusableImage | None:
    """The row's image; a path that escapes the root (``..``, absolute, a symlink out) is kept as UnusableImage."""
    if data is not None:
        return data
    if path is None:
        return None
    if image_root is None:
        return UnusableImage(path, "no_image_root", f"row stores image path {path!r} but no image root is known; "
                                                    "pass image_root")
    try:
        return resolve_inside(image_root, path)
    except ValueError as e:
        return UnusableImage(path, "image_outside_root", str(e))


def require_pairs_file(path: str | Path) -> Path:
    """``path`` if it is an existing ``.parquet`` or ``.jsonl`` file; else InputError saying what to pass instead."""
    p = Path(path)
    run = p if p.is_dir() else p.parent
    merge = (f"; {run} holds an unmerged pairs run: run `unprior pairs merge out={run}` first and pass "
             f"{run / 'pairs.parquet'}") if any(run.glob("shard-*-of-*")) else ""
    if p.is_dir():
        raise InputError(f"pairs {p} is a directory, not a pairs file (.parquet or .jsonl){merge}")
    if not p.is_file():
        raise InputError(f"pairs file {p} does not exist{merge or '; check the path'}")
    if p.suffix not in (".parquet", ".jsonl"):
        raise InputError(f"pairs file {p}: pairs files are .parquet or .jsonl (written by unprior pairs merge)")
    return p


def require_pairs_rows(path: str | Path) -> int:
    """The number of rows of a readable pairs file; InputError when it is missing, damaged or empty (an empty
    dataset is refused by the stage that reads it, not passed on)."""
    p = require_pairs_file(path)
    if p.suffix == ".parquet":
        pairs_metadata(p)
        n = _parquet_file(p).metadata.num_rows
    else:
        with open(p, "rb") as f:
            n = sum(1 for line in f if line.strip())
    if n == 0:
        raise InputError(f"pairs file {p} has no rows; every sample was dropped before it was written (see the "
                         "pairs run's rejected.jsonl)")
    return n


def _parquet_file(path: Path) -> pq.ParquetFile:
    """The opened pairs parquet file; InputError when it is not readable parquet or lacks a column."""
    require_pairs_file(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: not a readable parquet file ({e}); the file is truncated or damaged: write it "
                         "again with the stage that made it") from None
    missing = [c for c in PARQUET_SCHEMA.names if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (a pairs "
                         f"file has {', '.join(PARQUET_SCHEMA.names)}); write it with unprior pairs merge")
    return pf


def _parquet_record(row: PairRow, image_root: Path | None, embed: bool) -> dict[str, Any]:
    image_path, image_bytes = _image_fields(row.image, image_root, embed)
    negatives = [{"text": n.text, "kind": n.kind, "provenance": json.dumps(n.provenance)} for n in row.negatives]
    return {
        "id": row.id,
        "image_path": image_path,
        "image_bytes": image_bytes,
        "prompt": row.prompt,
        "chosen": row.chosen,
        "negatives": negatives,
        "meta": json.dumps(row.meta),
    }


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` that replaces it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _batched(rows: Iterable[PairRow], n: int) -> Iterator[list[PairRow]]:
    batch: list[PairRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def write_pairs(rows: Iterable[PairRow], path: str | Path, *, image_root: str | Path | None = None,
                embed_images: bool = False, batch_size: int = 512) -> int:
    """Write a pairs dataset atomically; the suffix picks the format (``.parquet`` or ``.jsonl``).

    Args:
        rows: The rows, streamed in batches of ``batch_size``.
        path: Output file.
        image_root: Root that file images are stored relative to; required unless every image is bytes or
            ``embed_images`` is set. Parquet records it in its metadata.
        embed_images: Store every image's bytes in the file instead of a path.
        batch_size: Rows per parquet row group.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else None
    if path.suffix == ".jsonl":
        return _write_jsonl(rows, path, root, embed_images)
    if path.suffix != ".parquet":
        raise ValueError(f"{path}: pairs datasets are .parquet or .jsonl")
    header = {"schema_version": SCHEMA_VERSION, "image_root": str(root.resolve()) if root else None}
    schema = PARQUET_SCHEMA.with_metadata({_META_KEY: json.dumps(header).encode()})
    n = 0
    with atomic_file(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batched(rows, batch_size):
            records = [_parquet_record(r, root, embed_images) for r in batch]
            writer.write_table(pa.Table.from_pylist(records, schema=schema))
            n += len(records)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def _write_jsonl(rows: Iterable[PairRow], path: Path, root: Path | None, embed: bool) -> int:
    n = 0
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            image_path, image_bytes = _image_fields(row.image, root, embed)
            record = {
                "id": row.id,
                "image": image_path,
                "image_b64": base64.b64encode(image_bytes).decode() if image_bytes is not None else None,
                "prompt": row.prompt,
                "chosen": row.chosen,
                "negatives": [{"text": x.text, "kind": x.kind, "provenance": x.provenance} for x in row.negatives],
                "meta": row.meta,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def pairs_metadata(path: str | Path) -> dict[str, Any]:
    """The ``unprior.pairs`` header of a pairs parquet file (schema_version, image_root)."""
    meta = _parquet_file(Path(path)).schema_arrow.metadata or {}
    if _META_KEY not in meta:
        raise InputError(f"{path}: not an unprior pairs parquet file (no {_META_KEY.decode()} metadata); "
                         "write it with unprior pairs merge")
    header = json.loads(meta[_META_KEY])
    if header.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: pairs schema version {header.get('schema_version')}, expected {SCHEMA_VERSION}")
    return header


def iter_pairs(path: str | Path, *, image_root: str | Path | None = None) -> Iterator[PairRow]:
    """Read a pairs dataset written by :func:`write_pairs`.

    Args:
        path: A ``.parquet`` or ``.jsonl`` pairs file.
        image_root: Where relative image paths are resolved; default: the root recorded in the parquet metadata,
            or the JSONL file's directory.
    """
    path = require_pairs_file(path)
    if path.suffix == ".jsonl":
        yield from _iter_jsonl(path, Path(image_root) if image_root is not None else path.parent)
        return
    header = pairs_metadata(path)
    root_str = image_root if image_root is not None else header["image_root"]
    root = Path(root_str) if root_str is not None else None
    index = 0
    for batch in _batches(path):
        for r in batch.to_pylist():
            yield _checked_row(f"{path}:row {index}", lambda r=r: PairRow(
                id=r["id"],
                image=_resolve_image(r["image_path"], r["image_bytes"], root),
                prompt=r["prompt"],
                chosen=r["chosen"],
                negatives=[Negative(n["text"], n["kind"], json.loads(n["provenance"])) for n in r["negatives"]],
                meta=json.loads(r["meta"]),
            ))
            index += 1


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from _parquet_file(path).iter_batches(batch_size=256)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: cannot read the rest of the file ({e}); it is truncated or damaged: write it "
                         "again with the stage that made it") from None


def _checked_row(where: str, build: Any) -> PairRow:
    """``build()``, or InputError naming the row when the stored row is malformed (a damaged or hand-edited file)."""
    try:
        row = build()
    except KeyError as e:
        raise InputError(f"{where}: missing field {e}; the pairs file is damaged: write it again") from None
    except (TypeError, ValueError) as e:  # bad JSON in meta/provenance, an unknown negative kind, a null field
        raise InputError(f"{where}: malformed row ({e}); the pairs file is damaged: write it again") from None
    for name in ("id", "prompt", "chosen"):
        if not isinstance(getattr(row, name), str):
            raise InputError(f"{where}: field {name!r} is {type(getattr(row, name)).__name__}, not text; the pairs "
                             "file is damaged: write it again")
    return row


def _iter_jsonl(path: Path, root: Path) -> Iterator[PairRow]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); the pairs file "
                                 "is damaged: write it again") from None
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg}); the pairs file is damaged: write it "
                                 "again") from None
            yield _checked_row(f"{path}:{lineno}", lambda r=r: PairRow(
                id=r["id"],
                image=_resolve_image(r.get("image"), _b64(r.get("image_b64")), root),
                prompt=r["prompt"],
                chosen=r["chosen"],
                negatives=[Negative(n["text"], n["kind"], n.get("provenance", {})) for n in r["negatives"]],
                meta=r.get("meta", {}),
            ))


def _b64(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)


def read_pairs(path: str | Path, *, image_root: str | Path | None = None) -> list[PairRow]:
    """:func:`iter_pairs` as a list."""
    return list(iter_pairs(path, image_root=image_root))
