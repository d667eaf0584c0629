"""Exporters: write a pairs dataset in TRL's and LLaMA-Factory's preference formats, to train elsewhere.

Both formats are pairwise, so a row with K negatives becomes K (chosen, rejected) pairs sharing the prompt and image
(BPO's pairing of the ground truth against every negative, docs/papers.md, BPO step 4). ``kinds`` keeps only some
negative kinds, e.g. ``("image_weakening", "error_injection")`` for a BPO-only set.

TRL (``DPOTrainer`` with a processor, TRL 1.16): one parquet file ``<out>/<split>.parquet``
with conversational columns ``prompt`` (one user message, no image token: TRL's ``prepare_multimodal_messages`` puts
the image placeholder before the first user turn), ``chosen`` and ``rejected`` (one assistant message each) and
``images`` (a list of ``datasets.Image``). The schema carries the ``datasets`` feature metadata, so
``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(str(out))`` decodes the images to PIL. Extra
columns ``id`` and ``negative_kind`` are dropped by TRL's ``remove_unused_columns``.

LLaMA-Factory (sharegpt ranking format, LLaMA-Factory 0.9.5): ``<out>/<name>.json``, a list of rows
``{"conversations": [{"from": "human", "value": "<image>" + prompt}], "chosen": {"from": "gpt", "value": ...},
"rejected": {...}, "images": [path]}``, and ``<out>/dataset_info.json`` registering ``name`` with
``"formatting": "sharegpt", "ranking": true`` (an existing dataset_info.json is updated, not replaced). File images
are referenced by absolute path; images held as bytes are written once each to ``<out>/images/<sha256>.<ext>`` and
referenced relative to ``<out>``, LLaMA-Factory's default ``media_dir`` (the dataset_dir).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unprior.formats.pairs import ImageRef, Negative, PairRow, atomic_file
from unprior.io import atomic_write_bytes, write_json

IMAGE_TOKEN = "<image>"


def _pairs(rows: Iterable[PairRow], kinds: Sequence[str] | None) -> Iterator[tuple[PairRow, Negative]]:
    for row in rows:
        for negative in row.negatives:
            if kinds is None or negative.kind in kinds:
                yield row, negative


def _message(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def trl_schema() -> pa.Schema:
    """Arrow schema (with ``datasets`` feature metadata) of the TRL export."""
    import datasets  # slow to import: only for a TRL export

    message = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "negative_kind": datasets.Value("string"),
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "images": datasets.List(datasets.Image()),
        }
    )
    return features.arrow_schema


def _trl_image(ref: ImageRef, embed: bool) -> dict[str, Any]:
    if isinstance(ref, bytes):
        return {"bytes": ref, "path": None}
    path = Path(ref).resolve()
    return {"bytes": path.read_bytes(), "path": path.name} if embed else {"bytes": None, "path": str(path)}


def trl_record(row: PairRow, negative: Negative, *, embed_images: bool = True) -> dict[str, Any]:
    """One TRL conversational preference row (images as ``datasets.Image`` storage dicts)."""
    return {
        "id": row.id,
        "negative_kind": negative.kind,
        "prompt": _message("user", row.prompt),
        "chosen": _message("assistant", row.chosen),
        "rejected": _message("assistant", negative.text),
        "images": [] if row.image is None else [_trl_image(row.image, embed_images)],
    }


def export_trl(rows: Iterable[PairRow], out: str | Path, *, split: str = "train", kinds: Sequence[str] | None = None,
               embed_images: bool = True, batch_size: int = 256) -> int:
    """Write ``<out>/<split>.parquet`` in TRL's vision preference format.

    Args:
        rows: Pairs rows; each negative becomes one preference row.
        out: Output directory (created).
        split: File name, so ``load_dataset(str(out))`` names the split.
        kinds: Negative kinds to export; None: all.
        embed_images: Store image bytes in the file (portable; the image is repeated for each of a prompt's
            negatives). False stores absolute paths, valid only on this machine.
        batch_size: Rows per parquet row group.

    Returns:
        The number of preference rows written.
    """
    path = Path(out) / f"{split}.parquet"
    schema = trl_schema()
    n = 0
    with atomic_file(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row, negative in _pairs(rows, kinds):
            batch.append(trl_record(row, negative, embed_images=embed_images))
            if len(batch) == batch_size:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n, batch = n + len(batch), []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def _image_suffix(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "png").lower()
    return {"jpeg": "jpg"}.get(fmt, fmt)


def _lf_image(ref: ImageRef, out: Path, written: set[str]) -> str:
    """Path LLaMA-Factory will find: absolute for files, ``images/<sha256>.<ext>`` (written once) for bytes."""
    if not isinstance(ref, bytes):
        return str(Path(ref).resolve())
    name = f"images/{hashlib.sha256(ref).hexdigest()[:32]}.{_image_suffix(ref)}"
    if name not in written:
        atomic_write_bytes(out / name, ref)
        written.add(name)
    return name


def llamafactory_record(row: PairRow, negative: Negative, image: str | None) -> dict[str, Any]:
    """One sharegpt ranking row; ``image`` is the path LLaMA-Factory should load (None: text-only)."""
    prompt = row.prompt if image is None else IMAGE_TOKEN + row.prompt
    return {
        "conversations": [{"from": "human", "value": prompt}],
        "chosen": {"from": "gpt", "value": row.chosen},
        "rejected": {"from": "gpt", "value": negative.text},
        "images": [] if image is None else [image],
    }


def llamafactory_dataset_info(name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry registering ``<name>.json`` as a sharegpt ranking dataset."""
    return {
        name: {
            "file_name": f"{name}.json",
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
        }
    }


def export_llamafactory(rows: Iterable[PairRow], out: str | Path, *, name: str = "unprior_pairs",
                        kinds: Sequence[str] | None = None) -> int:
    """Write ``<out>/<name>.json`` and register it in ``<out>/dataset_info.json``.

    Train with ``dataset_dir: <out>``, ``dataset: <name>``, ``stage: dpo`` in a LLaMA-Factory YAML.

    Args:
        rows: Pairs rows; each negative becomes one ranking row.
        out: Output directory (created).
        name: Dataset name (file stem and dataset_info key).
        kinds: Negative kinds to export; None: all.

    Returns:
        The number of ranking rows written.
    """
    out = Path(out)
    written: set[str] = set()
    n = 0
    with atomic_file(out / f"{name}.json") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("[")
        for row, negative in _pairs(rows, kinds):
            image = None if row.image is None else _lf_image(row.image, out, written)
            record = json.dumps(llamafactory_record(row, negative, image), ensure_ascii=False)
            f.write(("," if n else "") + "\n" + record)
            n += 1
        f.write("\n]\n")
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    write_json(info_path, {**info, **llamafactory_dataset_info(name)})
    return n
