"""Drawing the world's images: glyphs on a grid, shape in luminance, colour as a faint tint under noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unprior.world.config import ImageConfig
from unprior.world.spec import BY_NAME, COLOURS


@dataclass(frozen=True)
class Placed:
    """One object in a scene."""

    category: str
    colour: str
    cell: int
    """Grid cell index, row-major."""


def glyph_mask(glyph: str, n: int) -> np.ndarray:
    """Boolean (n, n) mask of a glyph drawn in an n-pixel box."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    c = (n - 1) / 2
    dy, dx = yy - c, xx - c
    r = n / 2
    if glyph == "disk":
        return dy**2 + dx**2 <= (r * 0.95) ** 2
    if glyph == "square":
        return np.ones((n, n), bool)
    if glyph == "ring":
        edge = max(1, n // 4)
        inner = (abs(dy) < c - edge + 1) & (abs(dx) < c - edge + 1)
        return ~inner
    if glyph == "hbar":
        return abs(dy) <= max(1, n // 5)
    if glyph == "diamond":
        return abs(dy) + abs(dx) <= r
    if glyph == "plus":
        w = max(1, n // 6)
        return (abs(dy) <= w) | (abs(dx) <= w)
    if glyph == "cross":
        w = max(1.0, n / 6)
        return (abs(dy - dx) <= w) | (abs(dy + dx) <= w)
    if glyph == "triangle":
        return (yy >= 0) & (abs(dx) <= (yy + 1) / 2)
    raise ValueError(f"unknown glyph {glyph!r}")


def render(objects: list[Placed], cfg: ImageConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as a (size, size, 3) uint8 array.

    Background: a uniform grey (in [120, 190] for dark glyphs, [60, 130] for light ones, [90, 170] for both).
    Each object: its glyph, offset from the background by ``luminance`` (the shape signal), tinted by
    ``s * chroma(colour)`` with s ~ U(saturation_lo, saturation_hi)
    plus a per-object RGB jitter (the colour signal), then per-pixel noise over the whole image.
    """
    size, cell = cfg.size, cfg.cell
    per_row = size // cell
    lo, hi = {"dark": (120, 190), "light": (60, 130), "both": (90, 170)}[cfg.polarity]
    img = np.full((size, size, 3), rng.uniform(lo, hi), dtype=np.float32)
    for obj in objects:
        n = cell - 1
        mask = glyph_mask(BY_NAME[obj.category].glyph, n)
        r0, c0 = divmod(obj.cell, per_row)
        oy, ox = r0 * cell + int(rng.integers(0, cell - n + 1)), c0 * cell + int(rng.integers(0, cell - n + 1))
        rgb = np.asarray(COLOURS[obj.colour], dtype=np.float32)
        chroma = rgb - rgb.mean()
        s = rng.uniform(cfg.saturation_lo, cfg.saturation_hi)
        tint = s * chroma + rng.normal(0, cfg.hue_jitter, 3)
        sign = {"dark": -1.0, "light": 1.0}.get(cfg.polarity) or (1.0 if rng.random() < 0.5 else -1.0)
        lum = cfg.luminance * sign
        patch = img[oy : oy + n, ox : ox + n]
        patch[mask] = patch[mask] + lum + tint
    img += rng.normal(0, cfg.noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
