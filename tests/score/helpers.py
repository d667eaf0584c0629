"""Tiny models and pairs files for the score and train tests (built in code, offline, in well under a second)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from unprior.formats.pairs import Negative, PairRow, write_pairs
from unprior.models.tiny import build_tiny, family_tokenizer, save_model

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
OBJECTS = ["apple", "banana", "frog", "bear", "crow", "whale"]
CORPUS = [f"A {c} {o} and a {c2} {o2}." for c, o, c2, o2 in zip(COLOURS * 6, OBJECTS * 6, COLOURS[::-1] * 6,
                                                                 sorted(OBJECTS * 6), strict=True)]
CORPUS += ["Describe the image.", "What color is the apple?", "Is there a frog in the image?"] * 10


def png(seed: int, size: int = 32) -> bytes:
    """A random RGB image, PNG-encoded."""
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def tiny_model(family: str, out: Path, seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny random ``family`` model."""
    model, processor = build_tiny(family, family_tokenizer(family, CORPUS), seed=seed)
    save_model(model, processor, out)
    return out


def make_rows(n: int, seed: int = 0, kinds: tuple[str, ...] = ("error_injection", "language_bias", "vision_bias"),
              ) -> list[PairRow]:
    """``n`` rows with embedded images: a description as the chosen answer and one negative per kind."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        c, o = COLOURS[rng.integers(len(COLOURS))], OBJECTS[rng.integers(len(OBJECTS))]
        other = COLOURS[(COLOURS.index(c) + 1) % len(COLOURS)]
        negatives = {
            "error_injection": f"A {other} {o}.",
            "language_bias": f"A red {o} and a yellow banana.",
            "vision_bias": f"A {c} {o}, a {other} frog and a blue whale.",
            "image_weakening": "A blue whale.",
            "original": f"A {other} bear.",
        }
        rows.append(PairRow(
            id=f"r{i}", image=png(seed * 1000 + i), prompt="Describe the image.", chosen=f"A {c} {o}.",
            negatives=[Negative(negatives[k], k) for k in kinds],
        ))
    return rows


def pairs_file(path: Path, rows: list[PairRow]) -> Path:
    write_pairs(rows, path)
    return path


def world_pairs(world: Path, split: str, out: Path, limit: int = 0) -> Path:
    """Pairs from a world split with one rule-based ``error_injection`` negative per row (BPO-style, no LLM).

    Attribute questions ("What color is the X?") get another colour: the canonical one when the true colour is not,
    else the next colour in the list. Descriptions get the same swap on their first object.
    """
    from unprior.io import read_jsonl
    from unprior.world.spec import COLOUR_NAMES, canonical

    def wrong(category: str, colour: str) -> str:
        if colour != canonical(category):
            return canonical(category)
        return COLOUR_NAMES[(COLOUR_NAMES.index(colour) + 1) % len(COLOUR_NAMES)]

    rows = []
    for r in read_jsonl(world / f"{split}.jsonl"):
        if r["task"] == "attribute":
            target, colour = r["meta"]["target"], r["meta"]["colour"]
            negative = r["answer"].replace(f" is {colour}.", f" is {wrong(target, colour)}.")
        elif r["task"] == "describe":
            first = r["meta"]["objects"][0]
            negative = r["answer"].replace(first["colour"], wrong(first["category"], first["colour"]), 1)
        else:
            continue
        rows.append(PairRow(id=r["id"], image=world / r["image"], prompt=r["prompt"], chosen=r["answer"],
                            negatives=[Negative(negative, "error_injection", {"rule": "colour swap"})]))
        if limit and len(rows) == limit:
            break
    write_pairs(rows, out, image_root=world)
    return out
