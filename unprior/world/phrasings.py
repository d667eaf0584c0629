"""Equally valid phrasings of the world's answers (``WorldConfig.phrasings``): one template family per task.

Each task has a family of sentence templates that state the same content (the objects and colours, the yes/no) in
the same form class, a full sentence, and differ only in wording::

    attribute   "The apple is red."  /  "The apple is coloured red."  /  "That apple is red."
    describe    "A red apple and a yellow banana."  /  "There is a red apple and a yellow banana."
                /  "The image shows a red apple and a yellow banana."
    exists      "Yes, there is a pig."  /  "Yes, a pig is there."  /  "Yes, the image has a pig."
                "No, there is no pig."  /  "No, a pig is not there."  /  "No, the image has no pig."

With ``phrasings = 1`` (the default) every answer uses template 0, the world's original single form, so its data and
config hash are what they were before phrasings existed. With n ≥ 2 each row's answer uses one of the first n
templates, drawn uniformly per row with the world's seed, and the row's ``meta`` records ``phrasing`` (the index)
and ``phrasings`` (n). Two answers of one family can then both be correct and share their form: the same-form
correct negatives of ``unprior pairs noise mode=same_form`` (:func:`answer_from_meta` rebuilds any phrasing of a
row from its meta). Every template parses with :mod:`unprior.world.metrics` (tests/world/test_phrasings.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unprior.world.spec import article

ATTRIBUTE = ("The {category} is {colour}.", "The {category} is coloured {colour}.", "That {category} is {colour}.")
DESCRIBE = ("{listing}.", "There is {listing}.", "The image shows {listing}.")
EXISTS_YES = ("Yes, there is {a} {category}.", "Yes, {a} {category} is there.", "Yes, the image has {a} {category}.")
EXISTS_NO = ("No, there is no {category}.", "No, {a} {category} is not there.", "No, the image has no {category}.")

MAX_PHRASINGS = len(ATTRIBUTE)
"""How many phrasings each family has (the upper bound of ``WorldConfig.phrasings``)."""
TASKS = ("describe", "attribute", "exists")


def _check(phrasing: int) -> None:
    if not 0 <= phrasing < MAX_PHRASINGS:
        raise ValueError(f"phrasing {phrasing} is not in [0, {MAX_PHRASINGS})")


def listing(objects: Sequence[tuple[str, str]]) -> str:
    """``[(category, colour), ...]`` -> "a red apple, a yellow banana and a green frog" (in the given order)."""
    parts = [f"{article(colour)} {colour} {category}" for category, colour in objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe_text(objects: Sequence[tuple[str, str]], phrasing: int = 0) -> str:
    """The description of ``objects`` (``(category, colour)`` pairs, in description order) in one phrasing."""
    _check(phrasing)
    text = DESCRIBE[phrasing].format(listing=listing(objects))
    return text[0].upper() + text[1:]


def attribute_text(category: str, colour: str, phrasing: int = 0) -> str:
    """The answer to "What color is the <category>?" in one phrasing."""
    _check(phrasing)
    return ATTRIBUTE[phrasing].format(category=category, colour=colour)


def exists_text(category: str, present: bool, phrasing: int = 0) -> str:
    """The answer to "Is there a <category> in the image?" in one phrasing."""
    _check(phrasing)
    return (EXISTS_YES if present else EXISTS_NO)[phrasing].format(a=article(category), category=category)


def answer_from_meta(task: str, meta: Mapping[str, Any], phrasing: int) -> str | None:
    """A world row's answer in ``phrasing``, rebuilt from the row's ``meta``; None for a row that is not the world's.

    describe: ``meta.objects`` in their stored (description) order; attribute: ``meta.target`` and ``meta.colour``;
    exists: ``meta.target`` and ``meta.label`` (yes / no).
    """
    if task == "describe" and meta.get("objects"):
        return describe_text([(o["category"], o["colour"]) for o in meta["objects"]], phrasing)
    if task == "attribute" and meta.get("target") and meta.get("colour"):
        return attribute_text(meta["target"], meta["colour"], phrasing)
    if task == "exists" and meta.get("target") and meta.get("label") in ("yes", "no"):
        return exists_text(meta["target"], meta["label"] == "yes", phrasing)
    return None
