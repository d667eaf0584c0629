"""Builders for tiny test images and rows (imported by the tests and conftest.py)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny file whose IHDR claims width x height RGB pixels (a decompression-bomb stand-in)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A PNG cut in the middle of its data: the header opens, verify fails."""
    data = png_bytes(size=(32, 32))
    return data[: len(data) // 2]


def write_jsonl(path: Path, rows: list[dict | str]) -> None:
    """Rows as JSON lines; a str row is written verbatim (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
