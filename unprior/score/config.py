"""Config of ``unprior score``: which frozen model scores which pairs file, and how (mDPO's corrupted images too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from unprior.config import Renamed, check_range, fail
from unprior.perturb import T_STEPS


@dataclass
class CorruptionConfig:
    """How the corrupted image of mDPO's conditional term is made from each row's image (seeded per row)."""

    kind: Literal["crop", "noise", "mask"] = "crop"
    """crop: a small random crop resized back (mDPO's "Crop 0–20 %"); noise: BPO's forward diffusion to
    noise_step on the processor's normalised pixels; mask: black out a share of grid cells."""
    seed: int = 0
    """Row r of the pairs file draws its corruption from numpy's default_rng([seed, r])."""
    crop_min: float = 0.01
    """crop: smallest share of the image area the crop keeps."""
    crop_max: float = 0.2
    """crop: largest share of the image area the crop keeps (mDPO: 20 %)."""
    noise_step: int = 500
    """noise: diffusion step t in [1, 999] (BPO's image weakening uses 900)."""
    mask_ratio: float = 0.75
    """mask: share of grid cells blacked out, in (0, 1]."""
    mask_grid: int = 8
    """mask: cells per image side."""

    def validate(self) -> None:
        if not 0.0 < self.crop_min <= self.crop_max <= 1.0:
            fail("crop_min", f"need 0 < crop_min <= crop_max <= 1, got {self.crop_min!r}, {self.crop_max!r}")
        check_range(self, "noise_step", 1, T_STEPS - 1)
        if not 0.0 < self.mask_ratio <= 1.0:
            fail("mask_ratio", f"must be in (0, 1], got {self.mask_ratio!r}")
        check_range(self, "mask_grid", 1, 4096)


@dataclass
class ScoreConfig:
    """Reference log-probs of every response of a pairs dataset under the frozen starting model, and a noise report."""

    RENAMED: ClassVar[dict[str, Renamed]] = {"cache_dir": Renamed("reference_dir")}  # read until unprior 0.2

    model: str = ""
    """The starting model: a local directory (AutoProcessor + AutoModelForImageTextToText) or a hub id."""
    pairs: str = ""
    """Pairs dataset (.parquet or .jsonl) written by ``unprior pairs``."""
    image_root: str = ""
    """Root of relative image paths; empty: the root recorded in the parquet file (JSONL: its directory)."""
    max_length: int = 1024
    """Most tokens of prompt + response (image tokens included). Longer responses are cut from the end; a row whose
    prompt leaves no room is dropped and counted. Training must use the same value (it is part of the cache key)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype the model is loaded in for scoring (part of the cache key)."""
    batch_size: int = 8
    """Rows per forward; all responses of a row share its forward."""
    max_batch_patches: int = 32_768
    """Most vision-tower positions in one forward (image tokens x pixel-shuffle / merge factor, over the batch's
    rows); a batch over it is scored in halves. SmolVLM with image splitting (13,312 per row): 2 rows. 0: no
    limit. Not part of the cache key (docs/pairs.md, "Real sizes")."""
    chunk_rows: int = 256
    """Rows scored between two commits of the work (rounded up to a multiple of ``batch_size``): a killed run loses
    at most this many rows, and a rerun scores only the rows after the last commit (docs/score.md, "Resuming")."""
    method: Literal["auto", "prefix", "naive"] = "auto"
    """Forward used: shared prefix where the family supports it (auto), or always naive. Both give the same numbers
    (tested to 1e-5), so this is not part of the cache key."""
    reference_dir: str = ""
    """Root of the reference cache; empty: ``$UNPRIOR_CACHE/reference``. Entries are ``<reference_dir>/<key>``
    (``unprior train reference_dir=`` reads the same cache)."""
    overwrite: bool = False
    """Recompute even when the cache already holds an entry for this key."""
    out: str = ""
    """Also copy the noise report (JSON and PNGs) into this directory."""
    threads: int = 0
    """torch threads (0: leave torch's default)."""
    trust_remote_code: bool = False
    """Passed to transformers when loading the model and processor."""
    corrupted: bool = False
    """Also score each chosen answer with a corrupted image (mDPO's conditional term), cached in the entry's
    corrupted/<key> subdirectory, keyed by ``corruption``; training turns this on for objective.conditional_weight >
    0."""
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    """How the corrupted images are made (used when ``corrupted``)."""

    def validate(self) -> None:
        check_range(self, "max_length", 2, 1_000_000)
        check_range(self, "batch_size", 1, 100_000)
        check_range(self, "max_batch_patches", 0, 1_000_000_000)
        check_range(self, "chunk_rows", 1, 100_000_000)
        check_range(self, "threads", 0, 1024)
        if not self.model:
            fail("model", "is required (a model directory or hub id)")
        if not self.pairs:
            fail("pairs", "is required (a pairs .parquet or .jsonl file)")
        self.corruption.validate()
