"""Perturbations: identity at strength 0 (bit-exact), determinism per seed, difference across seeds, purity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unprior.perturb import (
    DEFAULT_NOISE_STEP,
    IMAGE_PERTURBATIONS,
    PROMPT_VIEWS,
    PromptView,
    blank_image,
    diffusion_noise_image,
    diffusion_noise_tensor,
    drop_image,
    drop_question,
    gaussian_blur,
    noise_coefficients,
    patch_mask,
    perturb_image,
)


def picture(size: tuple[int, int] = (40, 24)) -> Image.Image:
    """A deterministic RGB gradient with no black pixel."""
    w, h = size
    values = (np.arange(w)[None, :, None] * 5 + np.arange(h)[:, None, None] * 7 + np.arange(3)) % 250 + 1
    return Image.fromarray(values.astype(np.uint8), "RGB")


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()


def test_schedule_matches_bpo_vcd() -> None:
    """BPO step 2 (docs/papers.md): at t = 900, sqrt(abar) ~ 0.365 and sqrt(1 - abar) ~ 0.931 (0-based, as VCD)."""
    keep, noise = noise_coefficients(DEFAULT_NOISE_STEP)
    assert keep == pytest.approx(0.36489, abs=1e-4) and noise == pytest.approx(0.93105, abs=1e-4)
    assert keep**2 + noise**2 == pytest.approx(1.0, abs=1e-6)
    assert noise_coefficients(0) == (1.0, 0.0)
    assert noise_coefficients(1)[1] > 0 and noise_coefficients(999)[0] > 0.28
    for bad in (-1, 1000, 2.5, True):
        with pytest.raises(ValueError):
            noise_coefficients(bad)


def test_diffusion_noise_tensor() -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    out = diffusion_noise_tensor(x, 0, generator=g)
    assert torch.equal(out, x) and out is not x and torch.equal(g.get_state(), state)  # no noise drawn

    a = diffusion_noise_tensor(x, 900, generator=torch.Generator().manual_seed(1))
    b = diffusion_noise_tensor(x, 900, generator=torch.Generator().manual_seed(1))
    c = diffusion_noise_tensor(x, 900, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape

    keep, noise = noise_coefficients(900)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, keep * x + noise * eps)

    half = diffusion_noise_tensor(x.to(torch.bfloat16), 500, generator=torch.Generator().manual_seed(1))
    assert half.dtype == torch.bfloat16
    flat = diffusion_noise_tensor(torch.zeros(16, 1176), 900, generator=torch.Generator().manual_seed(3))
    assert flat.shape == (16, 1176) and flat.std().item() == pytest.approx(noise, rel=0.05)


def test_diffusion_noise_image() -> None:
    img = picture()
    before = img.tobytes()
    assert same(diffusion_noise_image(img, 0, seed=0), img)
    a = diffusion_noise_image(img, 900, seed=7)
    assert same(a, diffusion_noise_image(img, 900, seed=7))
    assert same(a, diffusion_noise_image(img, 900, seed=np.random.default_rng(7)))
    assert not same(a, diffusion_noise_image(img, 900, seed=8))
    assert a.mode == "RGB" and a.size == img.size and img.tobytes() == before
    # more steps, further from the clean image
    err = [
        np.abs(np.asarray(diffusion_noise_image(img, t, seed=0), float) - np.asarray(img, float)).mean()
        for t in (100, 500, 900)
    ]
    assert err[0] < err[1] < err[2]
    clip = diffusion_noise_image(img, 900, seed=7, mean=(0.481, 0.458, 0.408), std=(0.269, 0.261, 0.276))
    assert not same(clip, a)
    assert diffusion_noise_image(img.convert("L"), 0, seed=0).mode == "RGB"


def test_gaussian_blur() -> None:
    img = picture()
    assert same(gaussian_blur(img, 0), img)
    blurred = gaussian_blur(img, 2.0)
    assert same(blurred, gaussian_blur(img, 2.0)) and not same(blurred, img)
    with pytest.raises(ValueError):
        gaussian_blur(img, -1)


def test_patch_mask() -> None:
    img = picture((40, 24))  # 8-pixel patches: 5 x 3 = 15 cells, none black
    assert same(patch_mask(img, 0.0, 8, seed=0), img)
    a = patch_mask(img, 0.4, 8, seed=1)
    assert same(a, patch_mask(img, 0.4, 8, seed=1)) and not same(a, patch_mask(img, 0.4, 8, seed=2))
    black = (np.asarray(a) == 0).all(axis=-1)
    assert black.sum() == 6 * 8 * 8  # round(0.4 * 15) cells
    assert (np.asarray(patch_mask(img, 1.0, 7, seed=0)) == 0).all()  # ragged edge cells are covered too
    grey = patch_mask(img, 1.0, 8, seed=0, fill=(127, 127, 127))
    assert (np.asarray(grey) == 127).all()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            patch_mask(img, bad, 8, seed=0)


def test_blank_image() -> None:
    img = picture()
    white, black = blank_image(img), blank_image(img, "black")
    assert white.size == img.size and set(white.getdata()) == {(255, 255, 255)}
    assert set(black.getdata()) == {(0, 0, 0)}


def test_prompt_views() -> None:
    """NaPO: language bias drops the image token (N6), vision bias empties the instruction (N7)."""
    assert drop_image("Is the bear white?") == PromptView(has_image=False, text="Is the bear white?")
    assert drop_question("Is the bear white?") == PromptView(has_image=True, text="")
    assert PROMPT_VIEWS["full"]("Q") == PromptView(True, "Q")
    assert set(PROMPT_VIEWS) == {"full", "no_image", "no_question"}


def test_perturb_image_table() -> None:
    img = picture()
    assert same(perturb_image(img, "diffusion_noise", {"t": 900}, seed=3), diffusion_noise_image(img, 900, seed=3))
    assert same(perturb_image(img, "blur", {"sigma": 1.5}, seed=3), gaussian_blur(img, 1.5))
    assert same(perturb_image(img, "patch_mask", {"ratio": 0.5}, seed=3), patch_mask(img, 0.5, seed=3))
    assert same(perturb_image(img, "blank", {"colour": "black"}, seed=3), blank_image(img, "black"))
    assert set(IMAGE_PERTURBATIONS) == {"diffusion_noise", "blur", "patch_mask", "blank"}
    with pytest.raises(ValueError, match="unknown image perturbation"):
        perturb_image(img, "jpeg", {}, seed=0)
