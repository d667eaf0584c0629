"""Corrupted images for mDPO's conditional image term: the chosen answer scored with the original image and with a
corrupted one (Wang et al. 2024, https://arxiv.org/abs/2406.11839; ``unprior.losses.conditional_image_loss``).

Each row's corrupted image is a pure function of the config and the row's position in the pairs file: row ``r`` draws
its randomness from ``numpy.random.default_rng([seed, r])``. So the reference (scored once by ``unprior score``) and
the policy (every training step, every epoch, every process) see exactly the same corrupted image, and the cached
reference log-probs stay valid.

Corruptions work on the PIL image, before the model's processor, and keep its size, so every family's processor turns
the corrupted image into as many image tokens as the original one (the prompt length, and so the scored response
tokens, do not change):

- ``crop`` (mDPO's default, "Crop 0–20 %"): a random crop covering a share of the area drawn from
  ``[crop_min, crop_max]``, aspect ratio drawn log-uniformly from [3/4, 4/3], resized back to the full image size
  (bilinear), as a random-resized crop does.
- ``noise``: BPO's forward diffusion to step ``noise_step`` (``unprior.perturb.diffusion_noise_image``) in the
  processor's normalised space (its ``image_mean`` / ``image_std``), i.e. the processor's pixel tensor noised as BPO
  and VCD do, up to rounding to 8-bit pixels, clipping to [0, 255] and the processor's later resize.
- ``mask``: a random ``mask_ratio`` of an ``mask_grid`` × ``mask_grid`` grid of cells filled with black
  (``unprior.perturb.patch_mask``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from unprior.perturb import diffusion_noise_image, patch_mask
from unprior.score.config import CorruptionConfig

Corrupter = Callable[[int, Image.Image], Image.Image]
"""``corrupt(row, image) -> corrupted image``: ``row`` is the row's position in the pairs file."""


def random_resized_crop(image: Image.Image, scale: tuple[float, float], rng: np.random.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """A crop covering a share of the area drawn uniformly from ``scale``, with its aspect ratio drawn log-uniformly
    from ``ratio``, resized back to the image's size (bilinear). The result is RGB, of the input's size."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    area = rng.uniform(*scale) * width * height
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = min(width, max(1, round(math.sqrt(area * aspect))))
    h = min(height, max(1, round(math.sqrt(area / aspect))))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return rgb.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def corrupt_image(image: Image.Image, row: int, cfg: CorruptionConfig, mean=0.5, std=0.5) -> Image.Image:
    """The corrupted image of pairs-file row ``row`` (deterministic in ``cfg`` and ``row``).

    Args:
        image: The row's original image.
        row: The row's position in the pairs file.
        cfg: The corruption.
        mean: Per-channel mean of the processor's normalisation (``noise`` only), in [0, 1] pixel units.
        std: Per-channel standard deviation of the processor's normalisation (``noise`` only).
    """
    rng = np.random.default_rng([cfg.seed, row])
    if cfg.kind == "crop":
        return random_resized_crop(image, (cfg.crop_min, cfg.crop_max), rng)
    if cfg.kind == "noise":
        return diffusion_noise_image(image, cfg.noise_step, seed=rng, mean=mean, std=std)
    if cfg.kind == "mask":
        patch = max(1, math.ceil(max(image.size) / cfg.mask_grid))
        return patch_mask(image, cfg.mask_ratio, patch, seed=rng)
    raise ValueError(f"unknown corruption kind {cfg.kind!r}")


def make_corrupter(cfg: CorruptionConfig, processor) -> Corrupter:
    """``corrupt(row, image)`` for ``processor``'s model (the noise uses its normalisation)."""
    image_processor = getattr(processor, "image_processor", None)
    mean = getattr(image_processor, "image_mean", None) or 0.5
    std = getattr(image_processor, "image_std", None) or 0.5
    return lambda row, image: corrupt_image(image, row, cfg, mean=mean, std=std)
