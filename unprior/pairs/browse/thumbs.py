"""Thumbnails for the browser: resized copies of the row images and of the regenerated weakened images.

A thumbnail's file name is a hash of where its pixels come from (the resolved path or the image bytes, plus the
perturbation for a weakened one), never a name taken from the pairs file, so every file lands in ``thumbs/`` of
the output folder and identical images (the world's describe and attribute rows share theirs) are written once.
The originals are opened read-only and never copied as they are: a thumbnail is always a new, re-encoded file.

Weakened images are not stored in a pairs file. They are regenerated with :func:`unprior.perturb.perturb_image`
from the negative's provenance (``perturbation``, ``params``, ``seed``, ``space``). With ``space: image`` this is the
exact image the model answered from. With ``space: tensor`` the model saw noise added to its processor's normalised
pixel tensor (after resizing, with a torch generator), so the page shows the same perturbation and strength in pixel
space and says that the noise itself differs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from unprior.formats.pairs import ImageRef, open_image
from unprior.io import resolve_inside
from unprior.pairs.images import RowProblem, check_image

THUMBS = "thumbs"
LOSSLESS_SIDE = 64
"""Thumbnails no larger than this are PNG (tiny synthetic images stay crisp when the page scales them up), larger
ones JPEG (quality 85)."""


@dataclass(frozen=True)
class Thumb:
    """A written thumbnail (``src`` relative to the output folder) or why there is none; ``note`` explains it."""

    src: str | None
    note: str | None = None


def _key(ref: ImageRef) -> str:
    """Where the pixels come from: the bytes' hash, or the path (already resolved by the rows reader)."""
    if isinstance(ref, bytes):
        return "bytes:" + hashlib.sha256(ref).hexdigest()
    return "path:" + str(ref)


def _perturbation(provenance: dict[str, Any]) -> tuple[str, dict[str, Any], int, str] | None:
    name, params, seed = provenance.get("perturbation"), provenance.get("params"), provenance.get("seed")
    if not isinstance(name, str) or not isinstance(params, dict) or not isinstance(seed, int):
        return None
    return name, params, seed, str(provenance.get("space", "image"))


def _describe(name: str, params: dict[str, Any], seed: int) -> str:
    args = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({args}), seed {seed}"


@dataclass
class Thumbnailer:
    """Writes thumbnails under ``out/thumbs``, once per distinct source; counts what it wrote and skipped."""

    out: Path
    size: int = 192
    max_pixels: int = 40_000_000
    done: dict[str, Thumb] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    """written, weakened, and skipped reasons (missing_image, unreadable_image, image_too_large, ...)."""

    def original(self, ref: ImageRef) -> Thumb:
        """The thumbnail of a row's image."""
        key = _key(ref)
        if key not in self.done:
            self.done[key] = self._write(key, ref, None)
        return self.done[key]

    def weakened(self, ref: ImageRef, provenance: dict[str, Any]) -> Thumb:
        """The thumbnail of the weakened image an image_weakening negative was generated from."""
        spec = _perturbation(provenance)
        if spec is None:
            return Thumb(None, "the provenance records no perturbation, params and seed: nothing to regenerate")
        original = self.original(ref)  # checks the image once for all its weakened versions
        if original.src is None:
            return original
        key = _key(ref) + "|" + json.dumps(spec, sort_keys=True)
        if key not in self.done:
            self.done[key] = self._write(key, ref, spec)
        return self.done[key]

    def _write(self, key: str, ref: ImageRef, spec: tuple[str, dict[str, Any], int, str] | None) -> Thumb:
        try:
            if spec is None:
                check_image(ref, self.max_pixels)
            image = _weaken(ref, spec) if spec else _decode(ref, self.size)
        except RowProblem as e:
            self.counts[e.reason] += 1
            return Thumb(None, f"{e.reason}: {e.detail}")
        except OSError as e:  # passed verify() but fails to decode (truncated pixel data)
            self.counts["unreadable_image"] += 1
            return Thumb(None, f"unreadable_image: {e}")
        except (ValueError, TypeError) as e:  # a perturbation the provenance names wrongly
            self.counts["perturbation_error"] += 1
            return Thumb(None, f"cannot regenerate the weakened image: {e}")
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        lossless = max(image.size) <= LOSSLESS_SIDE
        name = hashlib.sha256(key.encode()).hexdigest()[:24] + (".png" if lossless else ".jpg")
        target = resolve_inside(self.out, f"{THUMBS}/{name[:2]}/{name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if lossless:
            image.save(target, format="PNG")
        else:
            image.save(target, format="JPEG", quality=85)
        self.counts["weakened" if spec else "written"] += 1
        return Thumb(target.relative_to(self.out.resolve()).as_posix(), _note(spec))


def _note(spec: tuple[str, dict[str, Any], int, str] | None) -> str | None:
    if spec is None:
        return None
    name, params, seed, space = spec
    what = _describe(name, params, seed)
    if space == "tensor":
        return (f"regenerated: {what} in pixel space. The model saw this perturbation on its normalised pixel "
                "tensor, so the noise itself differs; the strength is the same.")
    return f"regenerated from the provenance: {what}, the image the model answered from."


def _decode(ref: ImageRef, size: int) -> Image.Image:
    """The image as RGB; JPEGs are decoded at a reduced scale near ``size`` (PIL's draft mode) for speed."""
    with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref) as im:
        im.draft("RGB", (size, size))
        return im.convert("RGB")


def _weaken(ref: ImageRef, spec: tuple[str, dict[str, Any], int, str]) -> Image.Image:
    from unprior.perturb import perturb_image  # imports torch: only when there is something to weaken

    name, params, seed, _ = spec
    return perturb_image(open_image(ref), name, dict(params), seed=seed)
