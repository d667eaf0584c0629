"""Config dataclasses for the pairs stage's loaders and filters (the stage config composes them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from unprior.config import check_choice, check_range, fail

FORMATS = ("auto", "unprior", "llava", "hf", "rlaifv", "trl")
SCHEMA_FIELDS = ("id", "image", "prompt", "answer", "rejected")


@dataclass
class LoadConfig:
    """How to read a source dataset into :class:`unprior.pairs.schema.Sample` rows."""

    format: str = "auto"
    """Source format: auto (sniffed from the path and its columns), unprior (``<split>.jsonl`` + ``images/``), llava
    (LLaVA / LLaMA-Factory sharegpt conversation JSON), hf (a ``datasets`` directory or parquet, columns mapped by
    ``columns``), rlaifv (RLAIF-V / RLAIF-V-Bias parquet), trl (TRL preference rows: prompt/chosen/rejected/images)."""
    split: str = "train"
    """Split to read: ``<split>.jsonl`` for the unprior format, the split of a saved ``DatasetDict``, or parquet
    files named ``<split>-*.parquet`` when a directory holds several splits."""
    root: str = ""
    """Directory that relative image paths are resolved against (and must stay inside). Empty: the dataset
    directory (unprior format) or the directory holding the JSON/parquet file."""
    max_pixels: int = 40_000_000
    """Largest image (width x height, read from the header before decoding) that is kept; larger ones are reported
    as decompression-bomb-sized and dropped. PIL itself refuses anything above 2 x Image.MAX_IMAGE_PIXELS."""
    check_images: bool = True
    """Open and verify every image at load time (missing, unreadable, oversized images are reported and dropped).
    Off: only path checks (exists, inside root) are done and a broken image fails later, at generation."""
    limit: int = 0
    """Stop after this many kept samples (0: all)."""
    llava_turns: str = "all"
    """Multi-turn LLaVA conversations: all (every human/gpt turn becomes its own sample, id suffixed ``#k`` from
    the second turn on) or first (the first turn only)."""
    columns: dict[str, str] = field(default_factory=dict)
    """For format hf: source column per sample field (id, image, prompt, answer, rejected) when the defaults
    (id/idx, image/images, prompt/question/instruction/query, answer/response/output/chosen, rejected) don't fit."""

    def validate(self) -> None:
        check_choice(self, "format", FORMATS)
        check_choice(self, "llava_turns", ("all", "first"))
        check_range(self, "max_pixels", lo=1)
        check_range(self, "limit", lo=0)
        if not self.split:
            fail("split", "must not be empty")
        for key in self.columns:
            if key not in SCHEMA_FIELDS:
                fail(f"columns.{key}", f"unknown sample field; known fields: {', '.join(SCHEMA_FIELDS)}")


@dataclass
class FilterConfig:
    """Which generated negatives are dropped before pairs are written (see :mod:`unprior.pairs.filters`)."""

    max_words: int = 350
    """Drop negatives longer than this many whitespace-separated words (BPO drops samples with any completion over
    350 words, papers.md §1.2 step 4); 0 disables the limit."""

    def validate(self) -> None:
        check_range(self, "max_words", lo=0)
