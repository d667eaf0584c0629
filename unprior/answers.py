"""How the benchmarks read a model's answer, shared by eval's benchmarks, the world's metrics and the rule-based
error injection: POPE's yes/no rules and CHAIR's COCO object vocabulary (synonym -> class, two-word names).

POPE (Li et al., EMNLP 2023): the official parser (``RUCAIBox/POPE:evaluate.py``, identical to LLaVA's
``llava/eval/eval_pope.py``) and lmms-eval's exact-match rule; :mod:`unprior.eval.benchmarks.pope` scores with them.

CHAIR (Rohrbach et al., EMNLP 2018): the 80-class COCO synonym list of ``LisaAnne/Hallucination`` (``lisaanne``)
and RLAIF-V's patch on it (``refine``); :mod:`unprior.eval.benchmarks.chair` documents both and scores captions with
them. The list itself is ``unprior/eval/data/coco_synonyms.txt`` (its licence: ``unprior/eval/data/NOTICE.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


def parse_pope(answer: str) -> str:
    """The official POPE parser: "no" if the first sentence contains the token No/not/no, else "yes".

    >>> parse_pope("No, there is not."), parse_pope("Yes."), parse_pope("There is a dog."), parse_pope("")
    ('no', 'yes', 'yes', 'yes')
    """
    text = answer.split(".")[0] if "." in answer else answer
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def parse_pope_exact(answer: str) -> str | None:
    """lmms-eval's rule: "yes"/"no" only on an exact match after lowercasing and stripping, else None."""
    text = answer.strip().lower()
    return text if text in ("yes", "no") else None


# LisaAnne's hard-coded two-word names (utils/chair.py), plus "train track" as in the later ports.
_COCO_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate", "train track",
)
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
_SPECIAL = {"passenger jet": "jet", "passenger train": "train", "bow tie": "tie", "toilet seat": "toilet",
            "wine glas": "wine glass"}
_REFINE_ADDITIONS = {"person": ("brother", "pedestrian"), "dining table": ("coffee table",),
                     "remote": ("remote control",)}


@dataclass(frozen=True)
class Vocabulary:
    """A CHAIR word list: synonym -> COCO class, and the two-word merges."""

    name: str
    synonym_to_class: dict[str, str]
    double_words: dict[str, str]
    words: frozenset[str]
    """Every single word of the list and of the merges (the lemmatizer's fallback vocabulary)."""

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.synonym_to_class.values()))


def _synonym_lines() -> list[list[str]]:
    text = resources.files("unprior").joinpath("eval/data/coco_synonyms.txt").read_text(encoding="utf-8")
    return [line.strip().split(", ") for line in text.splitlines() if line.strip() and not line.startswith("#")]


@cache
def vocabulary(variant: str) -> Vocabulary:
    """The ``lisaanne`` or ``refine`` word list (:mod:`unprior.eval.benchmarks.chair` describes both)."""
    lines = _synonym_lines()
    if variant == "refine":
        lines = [[w.strip() for w in line] for line in lines]
        lines = [line + list(_REFINE_ADDITIONS.get(line[0], ())) for line in lines]
        doubles = {w: w for line in lines for w in line if " " in w} | {w: w for w in ("home plate", "train track")}
    elif variant == "lisaanne":
        doubles = {w: w for w in _COCO_DOUBLE_WORDS}
    else:
        raise ValueError(f"unknown CHAIR synonym list {variant!r}")
    doubles |= {f"{q} {a}": a for a in _ANIMALS for q in ("baby", "adult")} | _SPECIAL
    mapping = {w: line[0] for line in lines for w in line}
    words = {part for phrase in [*mapping, *doubles] for part in phrase.split()}
    return Vocabulary(variant, mapping, doubles, frozenset(words))
