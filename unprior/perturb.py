"""Perturbations: seeded pure functions that weaken the image or the prompt a negative is generated from.

Image weakening (docs/papers.md, BPO step 2) and the NaPO modality masks (NaPO part 1) live here; the generation code
decides which model sees what. Every function takes its randomness as an argument (a ``torch.Generator``, a numpy
``Generator`` or an int seed), never from global state, returns a new object, and is the identity at strength 0
(``t = 0``, ``sigma = 0``, ``ratio = 0``), bit for bit.

Forward diffusion noise (BPO, borrowed from VCD)::

    beta  = sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5,   T = 1000
    abar  = cumprod(1 - beta)
    x_t   = sqrt(abar[t]) * x_0 + sqrt(1 - abar[t]) * eps,          eps ~ N(0, 1)

Index convention: ``abar[t]`` is read at 0-based index ``t``, exactly as VCD's ``add_diffusion_noise`` and BPO's
``add_noise.py`` do, so ``t = 900`` (BPO's default) gives sqrt(abar) = 0.3649 and sqrt(1 - abar) = 0.9311. The one
deviation: ``t = 0`` means *no noise* (VCD's index 0 still adds noise of std 0.0047), so strength 0 is an exact
identity. Valid steps are 0..999.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

T_STEPS = 1000
DEFAULT_NOISE_STEP = 900
Seed = int | np.random.Generator


@functools.cache
def _alpha_bar() -> torch.Tensor:
    """abar of the VCD/BPO sigmoid schedule, float32 as in VCD (T_STEPS values)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, T_STEPS)) * (5e-3 - 1e-5) + 1e-5
    return torch.cumprod(1 - betas, dim=0)


def noise_coefficients(t: int) -> tuple[float, float]:
    """(sqrt(abar[t]), sqrt(1 - abar[t])) for step ``t``; (1, 0) at t = 0 (no noise)."""
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < T_STEPS:
        raise ValueError(f"noise step t must be an int in [0, {T_STEPS - 1}], got {t!r}")
    if t == 0:
        return 1.0, 0.0
    abar = _alpha_bar()[t].item()
    return math.sqrt(abar), math.sqrt(1.0 - abar)


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def diffusion_noise_tensor(pixel_values: torch.Tensor, t: int, *, generator: torch.Generator) -> torch.Tensor:
    """Forward-diffuse a processor's pixel tensor to step ``t`` (BPO image weakening, docs/papers.md, BPO step 2).

    BPO and VCD noise the *normalised* ``pixel_values`` the processor returns, element-wise, so any layout works:
    (B, C, H, W) for LLaVA/CLIP processors, (N_patches, C * P * P * T) for Qwen-VL's flattened patches.

    Args:
        pixel_values: The processor's output, any shape and float dtype.
        t: Diffusion step in [0, 999]; 0 returns an exact copy and draws no noise. BPO's default is 900.
        generator: Source of the Gaussian noise; the noise is drawn on its device in float32, then moved.

    Returns:
        A new tensor of the input's shape, dtype and device.
    """
    keep, noise = noise_coefficients(t)
    if t == 0:
        return pixel_values.clone()
    eps = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32, device=generator.device)
    noised = keep * pixel_values.float() + noise * eps.to(pixel_values.device)
    return noised.to(pixel_values.dtype)


def _rgb(image: Image.Image) -> Image.Image:
    return image.copy() if image.mode == "RGB" else image.convert("RGB")


def diffusion_noise_image(image: Image.Image, t: int, *, seed: Seed, mean: float | Sequence[float] = 0.5,
                          std: float | Sequence[float] = 0.5) -> Image.Image:
    """Forward-diffuse a PIL image to step ``t``, for backends that take images rather than pixel tensors.

    The pixels are scaled to [0, 1], normalised with ``(x - mean) / std``, noised, mapped back and clipped to uint8.
    The default mean = std = 0.5 is DDPM's [-1, 1] data range. Passing the processor's normalisation (CLIP: mean
    (0.481, 0.458, 0.408), std (0.269, 0.261, 0.276)) reproduces :func:`diffusion_noise_tensor` in pixel space, up to
    the clipping to [0, 255] and the processor's later resize.

    Args:
        image: Any mode; the result is RGB.
        t: Diffusion step in [0, 999]; 0 returns an RGB copy (bit-exact for RGB input).
        seed: Int seed or numpy Generator for the noise.
        mean: Per-channel (or scalar) mean of the normalisation, in [0, 1] pixel units.
        std: Per-channel (or scalar) standard deviation of the normalisation.
    """
    keep, noise = noise_coefficients(t)
    if t == 0:
        return _rgb(image)
    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    m, s = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    eps = _rng(seed).standard_normal(x.shape, dtype=np.float32)
    x_t = (keep * (x - m) / s + noise * eps) * s + m
    return Image.fromarray(np.clip(np.rint(x_t * 255.0), 0, 255).astype(np.uint8), "RGB")


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (PIL's ``GaussianBlur`` radius); 0 is the identity."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rgb = _rgb(image)
    return rgb if sigma == 0 else rgb.filter(ImageFilter.GaussianBlur(radius=sigma))


def patch_mask(image: Image.Image, ratio: float, patch: int = 16, *, seed: Seed, fill: tuple[int, int, int] = (0, 0, 0)
               ) -> Image.Image:
    """Fill a random ``ratio`` of the image's ``patch`` x ``patch`` grid cells with ``fill`` (cf. OPA-DPO's mask).

    The grid covers the image from the top-left corner; edge cells may be smaller. ``round(ratio * cells)`` cells
    are drawn without replacement.

    Args:
        image: Any mode; the result is RGB.
        ratio: Fraction of cells to mask, in [0, 1]; 0 is the identity.
        patch: Cell side in pixels.
        seed: Int seed or numpy Generator choosing the cells.
        fill: RGB colour of masked cells.
    """
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    rgb = _rgb(image)
    rows, cols = math.ceil(rgb.height / patch), math.ceil(rgb.width / patch)
    n = round(ratio * rows * cols)
    if n == 0:
        return rgb
    pixels = np.array(rgb)
    for cell in _rng(seed).choice(rows * cols, size=n, replace=False):
        r, c = divmod(int(cell), cols)
        pixels[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = fill
    return Image.fromarray(pixels, "RGB")


def blank_image(image: Image.Image, colour: str | tuple[int, int, int] = "white") -> Image.Image:
    """An image of the same size in one colour (NaPO's ``question_only_white`` / ``_black`` variants, §4 N6)."""
    return Image.new("RGB", image.size, colour)


@dataclass(frozen=True)
class PromptView:
    """What the generator is shown: whether the image goes in, and the user text.

    ``has_image=False`` means the prompt carries *no image token at all* (text-only chat template), not an image
    replaced by mask embeddings.
    """

    has_image: bool
    text: str


def full_prompt(prompt: str) -> PromptView:
    """The unmodified prompt with its image."""
    return PromptView(True, prompt)


def drop_image(prompt: str) -> PromptView:
    """NaPO's language-biased view ``y_lb = MLLM([MASK]; t)`` (Eq. 7): the question alone, no image token.

    This is the official code's ``question_only_None`` variant, the best reading of the paper (docs/papers.md, N6).
    """
    return PromptView(False, prompt)


def drop_question(prompt: str) -> PromptView:
    """NaPO's vision-biased view ``y_vb = MLLM(v; [MASK])`` (Eq. 8): the image with an empty instruction.

    The official code sends the user turn ``<image>\\n`` and nothing else (docs/papers.md, N7). ``prompt`` is taken
    for a uniform signature and ignored.
    """
    del prompt
    return PromptView(True, "")


PROMPT_VIEWS: dict[str, Callable[[str], PromptView]] = {
    "full": full_prompt,
    "no_image": drop_image,
    "no_question": drop_question,
}


@dataclass(frozen=True)
class ImagePerturbation:
    fn: Callable[..., Image.Image]
    seeded: bool
    """Whether ``fn`` takes ``seed=``."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """The params used when a config names the perturbation without giving them (``image_weakening.params``)."""

    def accepted(self) -> list[str]:
        """The keyword parameters ``fn`` takes besides the image and the seed."""
        names = list(inspect.signature(self.fn).parameters)[1:]
        return [n for n in names if n != "seed"]


IMAGE_PERTURBATIONS: dict[str, ImagePerturbation] = {
    "diffusion_noise": ImagePerturbation(diffusion_noise_image, seeded=True, defaults={"t": DEFAULT_NOISE_STEP}),
    "blur": ImagePerturbation(gaussian_blur, seeded=False, defaults={"sigma": 3}),
    "patch_mask": ImagePerturbation(patch_mask, seeded=True, defaults={"ratio": 0.5, "patch": 16}),
    "blank": ImagePerturbation(blank_image, seeded=False, defaults={"colour": "white"}),
}


def perturbation_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``name``'s default params updated with ``params``; ValueError naming the perturbation and the params it
    accepts when ``params`` holds one it does not take (e.g. diffusion's ``t`` given to ``patch_mask``)."""
    if name not in IMAGE_PERTURBATIONS:
        raise ValueError(f"unknown image perturbation {name!r}; known: {', '.join(IMAGE_PERTURBATIONS)}")
    entry = IMAGE_PERTURBATIONS[name]
    unknown = sorted(set(params or {}) - set(entry.accepted()))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it accepts {', '.join(entry.accepted())} "
                         f"(defaults {entry.defaults})")
    return {**entry.defaults, **(params or {})}


def perturb_image(image: Image.Image, name: str, params: dict[str, Any], *, seed: Seed) -> Image.Image:
    """Apply the image perturbation ``name`` with keyword ``params`` (e.g. ``{"t": 900}``, ``{"sigma": 3}``).

    ``name`` and ``params`` are what a negative's provenance records, so a negative can be regenerated from them.
    """
    if name not in IMAGE_PERTURBATIONS:
        raise ValueError(f"unknown image perturbation {name!r}; known: {', '.join(IMAGE_PERTURBATIONS)}")
    entry = IMAGE_PERTURBATIONS[name]
    return entry.fn(image, **params, seed=seed) if entry.seeded else entry.fn(image, **params)
