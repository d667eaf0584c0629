"""Helpers for the eval tests: fake images and data files written into tmp_path, a scripted generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unprior.eval.registry import Request


def touch_images(root: Path, names: list[str]) -> Path:
    """Create placeholder image files (the scorers never decode images, the runner only checks they exist)."""
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x89PNG placeholder")
    return root


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


class ScriptedGenerator:
    """A GenerateFn answering from a dict (prompt substring -> answer), recording every request.

    With ``fail_after=N`` the call after N answers raises, as a kill in the middle of a run would.
    """

    def __init__(self, answers: dict[str, str] | None = None, default: str = "Yes", fail_after: int | None = None):
        self.answers = answers or {}
        self.default = default
        self.fail_after = fail_after
        self.seen: list[str] = []

    def __call__(self, requests: list[Request]) -> list[str]:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")  # between batches, like a kill while the model runs
        out = []
        for r in requests:
            self.seen.append(r.id)
            out.append(next((a for k, a in self.answers.items() if k in r.prompt), self.default))
        return out


def pope_files(root: Path, n: int = 10) -> tuple[Path, Path]:
    """A POPE question file with ``n`` questions on 2 images (odd ids "yes"), and the image folder."""
    images = touch_images(root / "val2014", ["a.jpg", "b.jpg"])
    rows = [{"question_id": i, "image": "ab"[i % 2] + ".jpg", "text": f"Is there a thing{i} in the image?",
             "label": "yes" if i % 2 else "no"} for i in range(n)]
    return write_jsonl(root / "pope.jsonl", rows), images


def pope_config(root: Path, out: Path, **extra: Any) -> Any:
    from unprior.config import from_dict
    from unprior.eval.config import EvalConfig

    questions, images = pope_files(root)
    data = {"benchmark": "pope", "out": str(out), "batch_size": 3,
            "options": {"questions": {"random": str(questions)}, "image_root": str(images)}, **extra}
    return from_dict(EvalConfig, data)
