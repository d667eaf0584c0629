"""What the browser reads: the pairs file's rows, each image resolved inside its root, and their reference margins.

Rows are read here rather than through :func:`unprior.formats.pairs.iter_pairs` because that reader stops at the first
row whose image path escapes the root. The browser shows such a row without its image and says why, so one bad row
does not hide the other 99,999. Paths resolve through :func:`unprior.pairs.images.resolve_image_path` (the loaders'
check: ``..``, absolute paths elsewhere and symlinks out of the root are refused).

Margins are NaPO's (NaPO Eq. 12's ψ, docs/score.md), from the reference entry of ``unprior score``:
``m_Σ = log π_ref(y_w) − log π_ref(y_l)`` and ``m_μ = log π_ref(y_w)/|y_w| − log π_ref(y_l)/|y_l|``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from unprior.formats.pairs import SCHEMA_VERSION, ImageRef, Negative, PairRow, pairs_metadata
from unprior.io import read_json, read_jsonl, sha256_file
from unprior.pairs.images import RowProblem, resolve_image_path

REFERENCE_FILE = "reference.parquet"
"""The entry's per-response table (``unprior.score.reference``; read with pyarrow alone, so no torch import)."""
REFERENCE_FORMAT_VERSION = 1
SUM_DIGITS, MEAN_DIGITS = 3, 4
"""Decimals kept of m_Σ and m_μ: the page filters, sorts and shows the same rounded values."""


@dataclass(frozen=True)
class BrowseRow:
    """One pairs-file row: its position, the row (image None when it cannot be shown) and why not."""

    index: int
    """Position in the pairs file (the ``row`` of ``unprior score``'s table)."""
    row: PairRow
    image_problem: str | None = None


def _image(path: str | None, data: bytes | None, root: Path | None) -> tuple[ImageRef | None, str | None]:
    if data is not None:
        return data, None
    if path is None:
        return None, None
    if root is None:
        return None, "no image root is known for this file: pass image_root="
    try:
        return resolve_image_path(root, path), None
    except RowProblem as e:
        return None, f"{e.reason}: {e.detail}"


def _records(path: Path, image_root: str | Path | None) -> tuple[Iterator[dict[str, Any]], Path | None]:
    """Raw records with keys id, image_path, image_bytes, prompt, chosen, negatives, meta; and the image root."""
    if path.suffix == ".jsonl":
        root = Path(image_root) if image_root else path.parent

        def jsonl() -> Iterator[dict[str, Any]]:
            for r in read_jsonl(path):
                data = base64.b64decode(r["image_b64"]) if r.get("image_b64") is not None else None
                yield {**r, "image_path": r.get("image"), "image_bytes": data, "meta": r.get("meta", {})}

        return jsonl(), root
    header = pairs_metadata(path)
    if header["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path}: pairs schema version {header['schema_version']}, expected {SCHEMA_VERSION}")
    recorded = image_root or header.get("image_root")

    def parquet() -> Iterator[dict[str, Any]]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for r in batch.to_pylist():
                negatives = [{**n, "provenance": json.loads(n["provenance"])} for n in r["negatives"]]
                yield {**r, "negatives": negatives, "meta": json.loads(r["meta"])}

    return parquet(), Path(recorded) if recorded else None


def iter_rows(path: str | Path, image_root: str | Path | None = None) -> Iterator[BrowseRow]:
    """The rows of a pairs file in file order, images resolved inside ``image_root`` (default: the file's root)."""
    records, root = _records(Path(path), image_root)
    resolved: dict[str, tuple[ImageRef | None, str | None]] = {}  # rows often share an image: resolve it once
    for index, r in enumerate(records):
        if r["image_bytes"] is None and r["image_path"] is not None:
            if r["image_path"] not in resolved:
                resolved[r["image_path"]] = _image(r["image_path"], None, root)
            image, problem = resolved[r["image_path"]]
        else:
            image, problem = _image(r["image_path"], r["image_bytes"], root)
        negatives = [Negative(n["text"], n["kind"], n.get("provenance") or {}) for n in r["negatives"]]
        row = PairRow(r["id"], image, r["prompt"], r["chosen"], negatives, r["meta"] or {})
        yield BrowseRow(index, row, problem)


@dataclass(frozen=True)
class RowScores:
    """The reference's numbers for one row (all None when the row was not scored)."""

    chosen: tuple[float, int] | None = None
    """(summed log-prob, tokens) of the chosen answer."""
    margins: list[tuple[float, float, int]] = field(default_factory=list)
    """Per negative: (m_Σ, m_μ, the negative's tokens), rounded to SUM_DIGITS / MEAN_DIGITS."""
    note: str | None = None
    """Why the row has no scores (``unprior score`` dropped it, and the reason)."""


@dataclass
class Scores:
    """A reference entry of ``unprior score``, indexed by pairs-file row."""

    entry: Path
    manifest: dict[str, Any]
    responses: dict[int, list[tuple[str, float, int]]]
    """Row -> (kind, summed log-prob, tokens) per response, the chosen answer first."""
    dropped: dict[int, str]
    """Row -> the reason ``unprior score`` gave for not scoring it."""

    def row(self, index: int, row: PairRow) -> RowScores:
        """The row's margins; raises ValueError when the entry's kinds are not the row's (another pairs file)."""
        if index not in self.responses:
            return RowScores(note=f"not scored: {self.dropped.get(index, 'absent from the reference entry')}")
        responses = self.responses[index]
        kinds = [kind for kind, _, _ in responses[1:]]
        if kinds != [n.kind for n in row.negatives]:
            raise ValueError(f"{self.entry}: row {index} ({row.id!r}) has negatives {kinds} in the reference entry "
                             f"but {[n.kind for n in row.negatives]} in the pairs file")
        _, chosen_sum, chosen_tokens = responses[0]
        chosen_mean = chosen_sum / max(chosen_tokens, 1)
        margins = [(round(chosen_sum - s, SUM_DIGITS), round(chosen_mean - s / max(n, 1), MEAN_DIGITS), n)
                   for _, s, n in responses[1:]]
        return RowScores((chosen_sum, chosen_tokens), margins)


def _entry_dir(path: Path) -> Path:
    return path.parent if path.name == REFERENCE_FILE else path


def load_scores(path: str | Path, pairs: str | Path) -> Scores:
    """Read the reference entry at ``path`` and check that it scored ``pairs`` (the same bytes, by sha256)."""
    entry = _entry_dir(Path(path))
    if not (entry / "manifest.json").is_file() or not (entry / REFERENCE_FILE).is_file():
        raise FileNotFoundError(f"{entry} is not a complete reference entry of unprior score "
                                f"(expected {REFERENCE_FILE} and manifest.json)")
    manifest = read_json(entry / "manifest.json")
    if manifest.get("format_version") != REFERENCE_FORMAT_VERSION:
        raise ValueError(f"{entry}: reference format {manifest.get('format_version')}, "
                         f"expected {REFERENCE_FORMAT_VERSION}")
    scored = manifest.get("key_inputs", {}).get("pairs")
    if scored != sha256_file(pairs):
        raise ValueError(f"{entry} scored another pairs file (sha256 {str(scored)[:12]}..., {pairs} has "
                         f"{sha256_file(pairs)[:12]}...): run unprior score pairs={pairs}")
    table = pq.read_table(entry / REFERENCE_FILE, columns=["row", "response", "kind", "logp_sum", "n_tokens"])
    data = table.sort_by([("row", "ascending"), ("response", "ascending")]).to_pydict()
    responses: dict[int, list[tuple[str, float, int]]] = {}
    for row, kind, total, count in zip(data["row"], data["kind"], data["logp_sum"], data["n_tokens"], strict=True):
        responses.setdefault(row, []).append((kind, total, count))
    dropped_file = entry / "dropped.jsonl"
    dropped = {d["row"]: d["reason"] for d in read_jsonl(dropped_file)} if dropped_file.is_file() else {}
    return Scores(entry, manifest, responses, dropped)
