"""Image checks for loaders: the file exists, stays inside the dataset root, opens, and is not a decompression bomb.

The size check reads only the header (``Image.open`` is lazy), so an image claiming 100000 x 100000 pixels is
rejected before any pixel is decoded. PIL's own guard (``DecompressionBombError`` above 2 x ``MAX_IMAGE_PIXELS``) is
caught and reported the same way; its warning is silenced here because ``max_pixels`` is the limit that applies.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import UnidentifiedImageError

from unprior.formats.pairs import ImageProblem, ImageRef, bounded_image
from unprior.io import resolve_inside


class RowProblem(ValueError):
    """A source row (or its image) that cannot be used; ``reason`` is a key of ``loaders.REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def resolve_image_path(root: Path, relative: str) -> Path:
    """The image file for a path relative to ``root``; raises RowProblem if it escapes the root or is missing."""
    try:
        path = resolve_inside(root, relative)
    except ValueError as e:
        raise RowProblem("image_outside_root", str(e)) from None
    if not path.is_file():
        raise RowProblem("missing_image", f"{relative!r} not found under {root}")
    return path


def check_image(ref: ImageRef, max_pixels: int) -> tuple[int, int]:
    """Check that ``ref`` opens as an image of at most ``max_pixels`` pixels and passes ``Image.verify``.

    Returns:
        (width, height) from the header.

    Raises:
        RowProblem: reason ``missing_image``, ``image_too_large`` or ``unreadable_image``.
    """
    name = "<image bytes>" if isinstance(ref, bytes) else str(ref)
    try:
        with bounded_image(ref, max_pixels) as im:
            width, height = im.size
            im.verify()
    except ImageProblem as e:
        raise RowProblem(e.reason, e.detail) from None
    except FileNotFoundError:
        raise RowProblem("missing_image", f"{name} not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise RowProblem("unreadable_image", f"{name}: {type(e).__name__}: {e}") from None
    return width, height
