"""``unprior pairs browse``: write the static pair browser for a pairs file (and its reference scores).

Output folder (everything the page needs; it opens from ``file://``, no server)::

    index.html, browse.js, view.js,   the page (package data, copied as they are)
    browse.css
    data/index.js                     the compact index: per row its negative count, per negative its kind and
                                      margins; the page filters, sorts and draws the histograms from it alone
    data/chunk-NNNNN.js               ``chunk_size`` full rows each (texts, provenance, thumbnails, margins)
    thumbs/xx/<hash>.png|jpg          resized copies of the images and of the regenerated weakened images
    manifest.json config.yaml         what was written, from what; the resolved config

The data files are JavaScript (``window.UNPRIOR_BROWSE_INDEX = {...}`` and ``unpriorBrowseChunk(k, [...])``), loaded
with ``<script>`` tags: Chromium refuses ``fetch()`` of ``file://`` URLs but runs scripts from them. The page keeps
only a page of rows in the DOM and a few chunks in memory, so a 100k-row file opens as fast as a small one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from unprior.config import dump_yaml
from unprior.formats.pairs import NEGATIVE_KINDS
from unprior.io import OutputExistsError, read_json, resolve_inside, sha256_file, staged_dir, write_json
from unprior.pairs.browse.config import BrowseConfig
from unprior.pairs.browse.rows import BrowseRow, RowScores, Scores, iter_rows, load_scores
from unprior.pairs.browse.thumbs import Thumbnailer

FORMAT_VERSION = 1
MANIFEST_KIND = "unprior-browse"
ASSETS = ("index.html", "browse.js", "view.js", "browse.css")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _js(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _image(item: BrowseRow, thumbs: Thumbnailer | None) -> dict[str, str | None]:
    if item.image_problem:
        return {"src": None, "note": item.image_problem}
    if item.row.image is None:
        return {"src": None, "note": "the row has no image"}
    if thumbs is None:
        return {"src": None, "note": "thumbnails were not written (thumbs=false)"}
    t = thumbs.original(item.row.image)
    return {"src": t.src, "note": t.note}


def row_record(item: BrowseRow, scores: RowScores | None, thumbs: Thumbnailer | None, weakened: bool) -> dict:
    """One row as the page reads it from a chunk."""
    row = item.row
    negatives = []
    for j, neg in enumerate(row.negatives):
        rec: dict[str, Any] = {"kind": neg.kind, "text": neg.text, "provenance": neg.provenance}
        if scores is not None and scores.margins:
            m_sum, m_mean, tokens = scores.margins[j]
            rec.update(margin_sum=_finite(m_sum), margin_mean=_finite(m_mean), tokens=tokens)
        if weakened and neg.kind == "image_weakening" and thumbs is not None and row.image is not None:
            t = thumbs.weakened(row.image, neg.provenance)
            rec["weakened"] = {"src": t.src, "note": t.note}
        negatives.append(rec)
    record: dict[str, Any] = {"row": item.index, "id": row.id, "prompt": row.prompt, "chosen": row.chosen,
                              "image": _image(item, thumbs), "meta": row.meta, "negatives": negatives}
    if scores is not None:
        chosen = scores.chosen
        record["chosen_logp"] = [_finite(chosen[0]), chosen[1]] if chosen else None
        record["score_note"] = scores.note
    return record


@dataclass
class IndexBuilder:
    """The compact index: what the page filters, sorts and draws histograms from without loading any chunk."""

    scored: bool
    neg_count: list[int] = field(default_factory=list)
    neg_kind: list[str] = field(default_factory=list)
    margin_sum: list[float | None] = field(default_factory=list)
    margin_mean: list[float | None] = field(default_factory=list)
    image_problems: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.neg_count.append(len(record["negatives"]))
        self.image_problems += record["image"]["src"] is None
        for neg in record["negatives"]:
            self.neg_kind.append(neg["kind"])
            if self.scored:
                self.margin_sum.append(neg.get("margin_sum"))
                self.margin_mean.append(neg.get("margin_mean"))

    def as_dict(self) -> dict[str, Any]:
        kinds = [k for k in NEGATIVE_KINDS if k in set(self.neg_kind)]
        digit = {k: str(i) for i, k in enumerate(kinds)}  # at most 5 kinds: one character per negative
        data: dict[str, Any] = {
            "rows": len(self.neg_count), "kinds": kinds, "kind_counts": dict(Counter(self.neg_kind)),
            "neg_count": self.neg_count, "neg_kind": "".join(digit[k] for k in self.neg_kind),
            "image_problems": self.image_problems,
        }
        if self.scored:
            data.update(margin_sum=self.margin_sum, margin_mean=self.margin_mean)
        return data


def _is_browse_output(path: Path) -> bool:
    try:
        return read_json(path / "manifest.json").get("kind") == MANIFEST_KIND
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def output_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """A staged folder that replaces ``out`` at the end; only an earlier browse output is ever replaced."""
    if overwrite and out.exists() and (not out.is_dir() or any(out.iterdir())) and not _is_browse_output(out):
        raise OutputExistsError(f"{out} exists and is not an unprior pairs browse output (no manifest.json of kind "
                                f"{MANIFEST_KIND}): refusing to replace it; choose another out")
    with staged_dir(out, overwrite) as tmp:
        yield tmp


def _write_chunk(folder: Path, k: int, records: list[dict[str, Any]]) -> None:
    target = resolve_inside(folder, f"data/chunk-{k:05d}.js")
    target.write_text(f"unpriorBrowseChunk({k},{_js(records)});\n", encoding="utf-8")


def _copy_assets(folder: Path) -> None:
    assets = resources.files("unprior.pairs.browse") / "assets"
    for name in ASSETS:
        (folder / name).write_bytes((assets / name).read_bytes())


def _rows(cfg: BrowseConfig, scores: Scores | None, thumbs: Thumbnailer | None) -> Iterator[dict[str, Any]]:
    for item in iter_rows(cfg.pairs, cfg.image_root or None):
        row_scores = scores.row(item.index, item.row) if scores is not None else None
        yield row_record(item, row_scores, thumbs, cfg.weakened)


def write_browser(cfg: BrowseConfig) -> dict[str, Any]:
    """Write the browser for ``cfg.pairs`` into ``cfg.out``; return its manifest."""
    cfg.validate()
    t0 = time.perf_counter()
    scores = load_scores(cfg.score, cfg.pairs) if cfg.score else None
    out = Path(cfg.out)
    with output_dir(out, cfg.overwrite) as tmp:
        (tmp / "data").mkdir()
        _copy_assets(tmp)
        thumbs = Thumbnailer(tmp, cfg.thumb_size, cfg.max_pixels) if cfg.thumbs else None
        index = IndexBuilder(scored=scores is not None)
        chunk: list[dict[str, Any]] = []
        n_chunks = 0
        for record in _rows(cfg, scores, thumbs):
            index.add(record)
            chunk.append(record)
            if len(chunk) == cfg.chunk_size:
                _write_chunk(tmp, n_chunks, chunk)
                n_chunks, chunk = n_chunks + 1, []
        if chunk:
            _write_chunk(tmp, n_chunks, chunk)
            n_chunks += 1
        header = {
            "format_version": FORMAT_VERSION, "title": cfg.title or Path(cfg.pairs).name, "pairs": str(cfg.pairs),
            "chunk_size": cfg.chunk_size, "chunks": n_chunks, "page_size": cfg.page_size,
            "score": None if scores is None else {"entry": str(scores.entry), "dropped": dict(Counter(
                scores.dropped.values()))},
            "thumbs": cfg.thumbs, "weakened": cfg.weakened and cfg.thumbs,
        }
        data = {**header, **index.as_dict()}
        (tmp / "data" / "index.js").write_text(f"window.UNPRIOR_BROWSE_INDEX = {_js(data)};\n", encoding="utf-8")
        manifest = {
            "kind": MANIFEST_KIND, "format_version": FORMAT_VERSION, "pairs": str(cfg.pairs),
            "pairs_sha256": sha256_file(cfg.pairs), "score": header["score"], "rows": data["rows"],
            "negatives": data["kind_counts"], "chunks": n_chunks, "image_problems": index.image_problems,
            "thumbs": dict(thumbs.counts) if thumbs else {}, "seconds": round(time.perf_counter() - t0, 2),
        }
        dump_yaml(cfg, tmp / "config.yaml")
        write_json(tmp / "manifest.json", manifest)
    return manifest


def run_browse(cfg: BrowseConfig) -> int:
    """CLI entry: write the browser and say how to open it."""
    manifest = write_browser(cfg)
    out = Path(cfg.out)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(manifest["negatives"].items()))
    print(f"wrote {out / 'index.html'}: {manifest['rows']} rows ({kinds}), {manifest['chunks']} chunks, "
          f"thumbnails {manifest['thumbs'] or 'none'}, {manifest['seconds']:.1f}s")
    print(f"open it from disk (file://{out.resolve() / 'index.html'}) or serve it: python -m http.server -d {out}")
    return 0
