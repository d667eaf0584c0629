"""Config of ``unprior pairs browse``: which pairs file (and reference scores) to show, and where to write the page."""

from __future__ import annotations

from dataclasses import dataclass

from unprior.config import check_range, fail


@dataclass
class BrowseConfig:
    """Write a self-contained static HTML pair browser for a pairs file (and optionally its reference scores)."""

    pairs: str = ""
    """Pairs file (.parquet or .jsonl) written by ``unprior pairs merge`` (or any ``write_pairs`` file)."""
    score: str = ""
    """Reference scores of that file: the cache entry ``unprior score`` prints (a directory holding
    reference.parquet and manifest.json), or its reference.parquet. Empty: no margins, filters by kind and text."""
    image_root: str = ""
    """Root of the pairs file's relative image paths; empty: the root recorded in the parquet file (JSONL: its
    folder). An image path that escapes the root is not shown (the row says why)."""
    out: str = ""
    """Output folder (index.html, browse.js, browse.css, data/, thumbs/). Written atomically; see ``overwrite``."""
    overwrite: bool = False
    """Replace ``out`` when it exists and is not empty. Only a folder an earlier ``unprior pairs browse`` wrote (its
    manifest.json says so) is ever replaced."""
    title: str = ""
    """Page title; empty: the pairs file's name."""
    chunk_size: int = 256
    """Rows per data chunk (data/chunk-NNNNN.js). A page loads only the chunks of its rows."""
    page_size: int = 25
    """Rows per page when the page opens (the page can change it)."""
    thumbs: bool = True
    """Write thumbnails of the images (resized copies under thumbs/; the originals are only read)."""
    thumb_size: int = 192
    """Longest side of a thumbnail in pixels (smaller images are not enlarged; the page scales them up)."""
    weakened: bool = True
    """Regenerate the weakened image of every image_weakening negative from its provenance (perturbation, params,
    seed) for a thumbnail: the pairs file does not store it."""
    max_pixels: int = 40_000_000
    """Largest image (width x height, read from the header before decoding) that is thumbnailed."""

    def validate(self) -> None:
        if not self.pairs:
            fail("pairs", "set the pairs file to browse")
        if not self.pairs.endswith((".parquet", ".jsonl")):
            fail("pairs", f"must be a .parquet or .jsonl pairs file, got {self.pairs!r}")
        if not self.out:
            fail("out", "set the output folder")
        check_range(self, "chunk_size", 1, 1_000_000)
        check_range(self, "page_size", 1, 10_000)
        check_range(self, "thumb_size", 16, 4096)
        check_range(self, "max_pixels", 1)
