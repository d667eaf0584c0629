"""Scoring the world's tasks from generated answers: pure functions of (row, answer).

- attribute accuracy, and the prior-follow rate (the answer names the category's canonical colour);
- over-description on busy scenes: an attribute answer that names other objects (vision bias);
- POPE-style yes/no metrics per sampling setting, with the official first-sentence rule;
- CHAIR-style description metrics: CHAIR_i, CHAIR_s, recall, colour accuracy, partner hallucination.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from unprior.answers import parse_pope
from unprior.world.spec import CATEGORY_NAMES, COLOUR_NAMES, canonical, partner

PARSER_VERSION = "world-2"
"""world-2: yes/no answers use the official POPE parser (world-1 lowercased every word first)."""
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def parse_colour(answer: str) -> str | None:
    """The first colour word in the answer, or None."""
    return next((w for w in words(answer) if w in COLOUR_NAMES), None)


def parse_yes_no(answer: str) -> str:
    """POPE's official rule (one implementation: :func:`unprior.answers.parse_pope`).

    Keep the first sentence, drop commas, split on spaces: a ``No``, ``not`` or ``no`` token means no, anything
    else yes.
    """
    return parse_pope(answer)


def parse_objects(answer: str) -> list[tuple[str | None, str]]:
    """(colour or None, category) for each category word, with the colour word right before it if any."""
    ws = words(answer)
    out = []
    for i, w in enumerate(ws):
        if w in CATEGORY_NAMES:
            out.append((ws[i - 1] if i and ws[i - 1] in COLOUR_NAMES else None, w))
    return out


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def attribute_metrics(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> dict[str, Any]:
    n = correct = follow = unparsed = canon_n = canon_ok = non_n = non_ok = busy_n = busy_over = 0
    for row, ans in zip(rows, answers, strict=True):
        meta = row["meta"]
        colour, target = parse_colour(ans), meta["target"]
        ok = colour == meta["colour"]
        n += 1
        correct += ok
        unparsed += colour is None
        follow += colour == canonical(target)
        if meta["canonical"]:
            canon_n, canon_ok = canon_n + 1, canon_ok + ok
        else:
            non_n, non_ok = non_n + 1, non_ok + ok
        if meta.get("busy"):
            busy_n += 1
            busy_over += any(c != target for _, c in parse_objects(ans))
    return {
        "n": n,
        "accuracy": _ratio(correct, n),
        "accuracy_canonical": _ratio(canon_ok, canon_n),
        "accuracy_noncanonical": _ratio(non_ok, non_n),
        "prior_follow": _ratio(follow, n),
        "unparsed": _ratio(unparsed, n),
        "busy_overdescribe": _ratio(busy_over, busy_n),
    }


def pope_metrics(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per sampling setting: accuracy, precision, recall, F1, yes-ratio and false-positive rate ('yes' to absent)."""
    by: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row, ans in zip(rows, answers, strict=True):
        by[row["meta"].get("pope", "train")].append((row["meta"]["label"], parse_yes_no(ans)))
    out = {}
    for setting, pairs in sorted(by.items()):
        tp = sum(g == "yes" and p == "yes" for g, p in pairs)
        fp = sum(g == "no" and p == "yes" for g, p in pairs)
        tn = sum(g == "no" and p == "no" for g, p in pairs)
        fn = sum(g == "yes" and p == "no" for g, p in pairs)
        prec, rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        out[setting] = {
            "n": len(pairs),
            "accuracy": _ratio(tp + tn, len(pairs)),
            "precision": prec,
            "recall": rec,
            "f1": _ratio(2 * prec * rec, prec + rec) if prec and rec else 0.0,
            "yes_ratio": _ratio(tp + fp, len(pairs)),
            "false_positive_rate": _ratio(fp, fp + tn),
        }
    return out


def describe_metrics(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> dict[str, Any]:
    mentions = halluc = caps_halluc = present_total = recalled = colour_n = colour_ok = 0
    partner_n = partner_hall = canon_named = 0
    for row, ans in zip(rows, answers, strict=True):
        truth = {o["category"]: o["colour"] for o in row["meta"]["objects"]}
        said = parse_objects(ans)
        named = {c for _, c in said}
        bad = [c for _, c in said if c not in truth]
        mentions += len(said)
        halluc += len(bad)
        caps_halluc += bool(bad)
        present_total += len(truth)
        recalled += len(named & set(truth))
        for colour, cat in said:
            if cat in truth:
                colour_n += 1
                colour_ok += colour == truth[cat]
                canon_named += colour == canonical(cat)
        for cat in truth:
            if partner(cat) not in truth:
                partner_n += 1
                partner_hall += partner(cat) in named
    return {
        "n": len(rows),
        "chair_i": _ratio(halluc, mentions),
        "chair_s": _ratio(caps_halluc, len(rows)),
        "recall": _ratio(recalled, present_total),
        "colour_accuracy": _ratio(colour_ok, colour_n),
        "colour_prior_follow": _ratio(canon_named, colour_n),
        "partner_hallucination": _ratio(partner_hall, partner_n),
    }


def split_metrics(rows: Iterable[dict[str, Any]], answers: Iterable[str]) -> dict[str, Any]:
    """All task metrics of one split."""
    by: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for row, ans in zip(rows, answers, strict=True):
        by[row["task"]][0].append(row)
        by[row["task"]][1].append(ans)
    out: dict[str, Any] = {}
    if "attribute" in by:
        out["attribute"] = attribute_metrics(*by["attribute"])
    if "exists" in by:
        out["pope"] = pope_metrics(*by["exists"])
    if "describe" in by:
        out["describe"] = describe_metrics(*by["describe"])
    return out
