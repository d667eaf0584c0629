"""The embedded world's vocabulary: categories, their glyphs, canonical colours and co-occurrence partners.

Eight categories, each with a distinct glyph (readable from luminance alone) and one canonical colour (a bijection),
so the language prior "an apple is red" is a fact of the training text. Categories come in four partner pairs that
usually appear together, so a model can learn to "see" an absent partner (the co-occurrence prior).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    glyph: str
    colour: str
    partner: str


COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (235, 130, 20),
    "yellow": (225, 215, 30),
    "green": (40, 180, 50),
    "cyan": (30, 200, 210),
    "blue": (40, 70, 225),
    "purple": (140, 50, 200),
    "pink": (240, 110, 180),
}
"""Saturated RGB of each colour word; rendering keeps only a faint share of each colour's chroma."""

CATEGORIES: tuple[Category, ...] = (Category("apple", "disk", "red", "banana"),
                                    Category("banana", "hbar", "yellow", "apple"),
                                    Category("carrot", "triangle", "orange", "pig"),
                                    Category("pig", "square", "pink", "carrot"),
                                    Category("frog", "diamond", "green", "grape"),
                                    Category("grape", "plus", "purple", "frog"),
                                    Category("whale", "ring", "blue", "iceberg"),
                                    Category("iceberg", "cross", "cyan", "whale"))

BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
PAIRS: tuple[tuple[str, str], ...] = tuple((c.name, c.partner) for c in CATEGORIES[::2])
PAIR_WEIGHTS: tuple[float, ...] = (0.35, 0.3, 0.2, 0.15)
"""How often each partner group is drawn into a scene: makes some objects more frequent (POPE "popular")."""
POPULARITY: tuple[str, ...] = tuple(name for pair in PAIRS for name in pair)
"""Categories from most to least frequent (group weight order, then pair order)."""


def canonical(category: str) -> str:
    return BY_NAME[category].colour


def partner(category: str) -> str:
    return BY_NAME[category].partner


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
