"""Image checks for loaders: the file exists, stays inside the dataset root, opens, and is not a decompression bomb.

The size check reads only the header (``Image.open`` is lazy), so an image claiming 100000 x 100000 pixels is
rejected before any pixel is decoded. PIL's own guard (``DecompressionBombError`` above 2 x ``MAX_IMAGE_PIXELS``) is
caught and reported the same way; its warning is silenced here because ``max_pixels`` is the limit that applies.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from unprior.io import resolve_inside
from unprior.pairs.schema import ImageRef


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
    source = io.BytesIO(ref) if isinstance(ref, bytes) else ref
    name = "<bytes>" if isinstance(ref, bytes) else str(ref)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise RowProblem(
                        "image_too_large",
                        f"{name}: {width}x{height} = {width * height} pixels > max_pixels {max_pixels}",
                    )
                im.verify()
    except RowProblem:
        raise
    except FileNotFoundError:
        raise RowProblem("missing_image", f"{name} not found") from None
    except Image.DecompressionBombError as e:
        raise RowProblem("image_too_large", f"{name}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise RowProblem("unreadable_image", f"{name}: {type(e).__name__}: {e}") from None
    return width, height
