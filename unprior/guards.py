"""Guards against bad numbers and leaked secrets: non-finite values, JSON that must stay JSON, echoed API keys.

- :class:`NonFiniteError`: a NaN or ±inf where a stage needs a number (a reference entry, a training step); the
  message names where (file, step) and which rows.
- :func:`json_safe`: metrics and reports are written with non-finite floats as ``null``, so every line of
  ``metrics.jsonl`` is valid JSON (``json.dumps`` writes a bare ``NaN`` otherwise).
- :func:`redact`: a server's error message with every echo of the API key (whole or a long piece of it) replaced,
  before it is printed or raised (docs/pairs.md, "Endpoints").
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET_PIECE = 8
"""Shortest piece of a key that counts as an echo (a server may print ``sk-abcd1234...`` or the key's tail)."""


class NonFiniteError(RuntimeError):
    """A NaN or infinite value where a number is needed; the message names where and which rows."""


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None``, recursively through dicts and lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One strict JSON line (non-finite floats as ``null``; never a bare ``NaN``)."""
    return json.dumps(json_safe(obj), allow_nan=False)


def some_ids(ids: Sequence[Any], n: int = 10) -> str:
    """``"r1, r7, r9 (+12 more)"``: the first ``n`` ids and how many more there are."""
    shown = ", ".join(str(i) for i in ids[:n])
    return shown + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` and every piece of it of at least :data:`MIN_SECRET_PIECE` characters replaced.

    Placeholders (``EMPTY``) and other keys shorter than the minimum piece are only replaced whole, when they are
    at least 4 characters long.
    """
    if not secret or secret == "EMPTY":
        return text
    if len(secret) < MIN_SECRET_PIECE:
        return text.replace(secret, REDACTED) if len(secret) >= 4 else text
    for size in range(len(secret), MIN_SECRET_PIECE - 1, -1):
        for start in range(len(secret) - size + 1):
            piece = secret[start : start + size]
            if piece in text:
                text = text.replace(piece, REDACTED)
    return text
