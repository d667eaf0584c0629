"""``unprior pairs noise``: mix a known share of noisy pairs into a pairs file, to measure robustness.

Real preference data is noisy in two ways, and each mode plants one at a known rate:

- **A correct negative** (``mode=rewrite``, ``mode=same_form``): the pair says "prefer the chosen answer over this
  one" although both are right. NaPO (arXiv 2503.17928, §3.2 and Fig. 4) attributes the noise of automatically built
  negatives to exactly this: a language- or vision-biased answer that happens to be fine.
- **A flipped pair** (``mode=flip``): the preference is reversed, the wrong answer is "chosen" and the right one
  rejected. This is the label-noise model of conservative DPO (Mitchell 2023) and robust DPO (Chowdhury et al.
  2024, arXiv 2403.00409, §3: each preference flipped with probability ε).

A planted correct negative must differ from the chosen answer: a negative identical to the chosen answer is dropped
by the pairs filters, and would carry no gradient through any pairwise loss anyway (the chosen and rejected
log-probs cancel). ``rewrite`` plants a *correct rewrite in another form* (:data:`REWRITES`; for the embedded world
"It is red." for "The apple is red."). Such a negative is easy to push down without touching the chosen answer's
form (docs/experiments.md §4). ``same_form`` plants *another valid phrasing of the chosen answer* from the same
template family: the same content in the same form class ("That apple is red." for "The apple is red."), which
needs a world built with ``phrasings`` ≥ 2 (:mod:`unprior.world.phrasings`).

``rate`` is the share of the negatives of ``kinds`` that are noised, per kind. Replaced negatives keep their kind
(so an objective treats them like the rest) and record ``{"noise": ...}`` in their provenance. A flipped pair is
written as a row of its own (:func:`flip_pairs`). The output is a new pairs file (the input is never touched) plus
``noise.json`` beside it with the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unprior.config import check_choice, check_range, fail
from unprior.formats.pairs import (
    NEGATIVE_KINDS,
    Negative,
    PairRow,
    pairs_metadata,
    read_pairs,
    require_pairs_rows,
    write_pairs,
)
from unprior.io import InputError, write_json
from unprior.numerics import stable_seed
from unprior.world.phrasings import answer_from_meta

MODES = ("rewrite", "same_form", "flip")
Slot = tuple[int, int]
"""(row index, negative index) of one negative."""


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _listing(objects: list[dict[str, Any]]) -> str:
    parts = [f"{_article(o['colour'])} {o['colour']} {o['category']}" for o in objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def world_rewrite(row: PairRow) -> str | None:
    """A correct answer to a world row that differs from its chosen answer, or None when the row has none.

    describe: the same objects, rotated by one (two or more objects), or "There is a red apple." (one object);
    attribute: "It is red."; exists: "Yes." / "No.". Everything stays true of the image.
    """
    meta = row.meta
    task = meta.get("task")
    objects = meta.get("objects") or []
    if task == "describe" and objects:
        text = (f"There is {_listing(objects)}." if len(objects) == 1
                else _listing(objects[1:] + objects[:1]) + ".")
        text = text[0].upper() + text[1:]
    elif task == "attribute" and meta.get("colour"):
        text = f"It is {meta['colour']}."
    elif task == "exists" and row.chosen.split(",")[0] in ("Yes", "No"):
        text = row.chosen.split(",")[0] + "."
    else:
        return None
    return text if text != row.chosen else None


REWRITES: dict[str, Callable[[PairRow], str | None]] = {"world": world_rewrite}
"""Name -> a function giving a correct answer different from the chosen one (None: the row cannot be noised)."""


def world_same_form(row: PairRow, seed: int) -> str | None:
    """Another valid phrasing of a world row's chosen answer (same content, same template family), or None.

    The row must come from a world built with ``phrasings`` ≥ 2 (its meta records ``phrasing`` and ``phrasings``)
    and its chosen answer must be the world's own answer in that phrasing. The other phrasing is drawn uniformly
    among the world's remaining ones, seeded by ``seed`` and the row id.
    """
    meta, n, k = row.meta, row.meta.get("phrasings"), row.meta.get("phrasing")
    if not isinstance(n, int) or not isinstance(k, int) or n < 2 or not 0 <= k < n:
        return None
    task = str(meta.get("task"))
    if answer_from_meta(task, meta, k) != row.chosen:
        return None
    others = [j for j in range(n) if j != k]
    j = others[int(np.random.default_rng(stable_seed(seed, "same_form", row.id)).integers(len(others)))]
    return answer_from_meta(task, meta, j)


@dataclass
class NoiseConfig:
    """Plant a known share of noisy pairs: correct negatives (in another form or the same form), or flipped pairs."""

    pairs: str = ""
    """Input pairs file (.parquet or .jsonl)."""
    out: str = ""
    """Output pairs file (.parquet or .jsonl); ``noise.json`` with the counts is written beside it."""
    mode: str = "rewrite"
    """rewrite: replace negatives with correct answers in another form (``rewrite``). same_form: replace them with
    another valid phrasing of the chosen answer (a world built with phrasings >= 2). flip: swap chosen and rejected
    (the label noise of cDPO / rDPO); each flipped pair becomes a row of its own."""
    rate: float = 0.3
    """Share of the negatives of ``kinds`` to noise (replace or flip), per kind, in [0, 1)."""
    kinds: list[str] = field(default_factory=lambda: ["language_bias", "vision_bias"])
    """Negative kinds that receive noise (NaPO's biased kinds by default; the original pair stays clean)."""
    rewrite: str = "world"
    """mode=rewrite: how a correct answer is built, a key of ``unprior.pairs.noise.REWRITES``."""
    seed: int = 0
    """Seed of which negatives are noised (and, for same_form, of which other phrasing is planted)."""

    def validate(self) -> None:
        if not self.pairs or not self.out:
            fail("pairs" if not self.pairs else "out", "set the input and output pairs files")
        if Path(self.pairs).resolve() == Path(self.out).resolve():
            fail("out", "must differ from the input pairs file")
        check_choice(self, "mode", MODES)
        check_range(self, "rate", 0.0, 0.999)
        bad = [k for k in self.kinds if k not in NEGATIVE_KINDS]
        if not self.kinds or bad:
            fail("kinds", f"choose among {', '.join(NEGATIVE_KINDS)}; got {self.kinds}")
        if self.rewrite not in REWRITES:
            fail("rewrite", f"unknown rewrite {self.rewrite!r}; known: {', '.join(REWRITES)}")


def _draw_slots(rows: list[PairRow], rate: float, kinds: list[str], eligible: list[bool],
                seed: int) -> tuple[set[Slot], Counter[str]]:
    """``round(rate · n_k)`` negatives of each kind k, drawn uniformly among those of eligible rows.

    Returns the drawn slots and the number of negatives of each kind. Fails rather than noise a lower rate than
    asked when too few negatives belong to eligible rows.
    """
    rng = np.random.default_rng(seed)
    slots: dict[str, list[Slot]] = {k: [] for k in kinds}
    totals: Counter[str] = Counter()
    for i, row in enumerate(rows):
        for j, neg in enumerate(row.negatives):
            if neg.kind in slots:
                totals[neg.kind] += 1
                if eligible[i]:
                    slots[neg.kind].append((i, j))
    chosen: set[Slot] = set()
    for kind in kinds:
        need = round(rate * totals[kind])
        if need > len(slots[kind]):
            raise InputError(f"rate {rate}: {need} {kind} negatives must be noised but only {len(slots[kind])} "
                             f"of {totals[kind]} belong to rows with a correct alternative; lower rate, pass pairs "
                             "whose rows the rewrite can answer (rows of an unprior world), or use mode=flip")
        picked = rng.choice(len(slots[kind]), size=need, replace=False) if need else []
        chosen.update(slots[kind][p] for p in picked)
    return chosen, totals


def _summary(rows: list[PairRow], chosen: set[Slot], totals: Counter[str], rate: float, kinds: list[str],
             seed: int) -> dict[str, Any]:
    planted = Counter(rows[i].negatives[j].kind for i, j in chosen)
    return {"rate": rate, "kinds": kinds, "seed": seed,
            "negatives": {k: totals[k] for k in kinds}, "replaced": {k: planted[k] for k in kinds},
            "realised_rate": {k: planted[k] / totals[k] if totals[k] else 0.0 for k in kinds}}


def _alternative(rewrite: Callable[[PairRow], str | None], row: PairRow) -> str | None:
    """``rewrite(row)``; a row whose meta the rewrite cannot read (a hand-edited or foreign file) has no alternative:
    it is left clean, like any row without one, instead of stopping the run."""
    try:
        return rewrite(row)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def plant_noise(rows: list[PairRow], rate: float, kinds: list[str], rewrite: Callable[[PairRow], str | None],
                seed: int, label: str = "correct_rewrite") -> tuple[list[PairRow], dict[str, Any]]:
    """``rows`` with ``round(rate · n_k)`` negatives of each kind k replaced by correct answers.

    Args:
        rows: The pairs.
        rate: Share of each kind's negatives to replace.
        kinds: The kinds that receive noise.
        rewrite: A row's correct answer that differs from its chosen one, or None (the row cannot be noised).
        seed: Seed of the draw.
        label: The ``noise`` value recorded in a replaced negative's provenance.

    Returns:
        The noised rows (same order, same count) and the counts (``replaced``, ``realised_rate`` per kind).
    """
    alternatives = [_alternative(rewrite, r) for r in rows]
    chosen, totals = _draw_slots(rows, rate, kinds, [a is not None for a in alternatives], seed)
    out = []
    for i, row in enumerate(rows):
        negatives = [Negative(alternatives[i], neg.kind, {"noise": label, "replaced": neg.text})
                     if (i, j) in chosen else neg for j, neg in enumerate(row.negatives)]
        out.append(PairRow(row.id, row.image, row.prompt, row.chosen, negatives, row.meta))
    return out, _summary(rows, chosen, totals, rate, kinds, seed)


def same_form_noise(rows: list[PairRow], rate: float, kinds: list[str], seed: int,
                    ) -> tuple[list[PairRow], dict[str, Any]]:
    """:func:`plant_noise` with :func:`world_same_form`: the planted negatives are other phrasings of the chosen.

    Raises:
        ValueError: when no row records two or more phrasings (the world was built with ``phrasings=1``), or when
            too few rows can reach the rate.
    """
    if rate > 0 and not any(isinstance(r.meta.get("phrasings"), int) and r.meta["phrasings"] >= 2 for r in rows):
        raise InputError("mode=same_form needs pairs from a world built with phrasings >= 2 (rows record "
                         "meta.phrasing); none of these rows does. Rebuild the world with `unprior world build "
                         "phrasings=3` (or world.phrasings=3) and generate the pairs again")
    return plant_noise(rows, rate, kinds, lambda row: world_same_form(row, seed), seed, label="same_form")


def _flipped_row(row: PairRow, j: int) -> PairRow:
    """The pair (chosen, negative j) of ``row`` reversed, as a row of its own with only that kind."""
    neg = row.negatives[j]
    provenance = {"noise": "flip", "source_row": row.id, "chosen_provenance": neg.provenance}
    truth = Negative(row.chosen, neg.kind, provenance)
    return PairRow(f"{row.id}-flip{j}", row.image, row.prompt, neg.text, [truth], row.meta)


def flip_pairs(rows: list[PairRow], rate: float, kinds: list[str], seed: int) -> tuple[list[PairRow], dict[str, Any]]:
    """Reverse ``round(rate · n_k)`` pairs of each kind k: the negative becomes chosen, the chosen answer its negative.

    The schema has one chosen answer per row, shared by all its negatives (Eq. 14 shares y_w across kinds), so a
    flipped pair cannot stay in its row. It is written as a new row right after it (id ``<id>-flip<j>``, the same
    image, prompt and meta) whose chosen answer is the wrong one and whose only negative, of the same kind, is the
    true answer, with provenance ``{"noise": "flip", "source_row", "chosen_provenance"}``. The source row keeps its
    other negatives; a source row left with none is dropped, so for a file with one negative per row a flip is
    exactly a swapped row. The trainer then sees a flipped pair as a row where only that kind is present (the
    others masked). An SFT anchor also trains on its chosen answer, the wrong one, as it would on a real file with
    flipped labels.

    Returns:
        The rows and the counts (``replaced`` = flipped pairs per kind, ``rows_added``, ``rows_dropped``).
    """
    chosen, totals = _draw_slots(rows, rate, kinds, [True] * len(rows), seed)
    out: list[PairRow] = []
    dropped = 0
    for i, row in enumerate(rows):
        kept = [neg for j, neg in enumerate(row.negatives) if (i, j) not in chosen]
        if kept or not row.negatives:
            out.append(row if len(kept) == len(row.negatives) else
                       PairRow(row.id, row.image, row.prompt, row.chosen, kept, row.meta))
        else:
            dropped += 1
        out += [_flipped_row(row, j) for j in range(len(row.negatives)) if (i, j) in chosen]
    summary = _summary(rows, chosen, totals, rate, kinds, seed)
    return out, {**summary, "rows_added": len(chosen), "rows_dropped": dropped}


def noise_rows(rows: list[PairRow], cfg: NoiseConfig) -> tuple[list[PairRow], dict[str, Any]]:
    """The rows noised as ``cfg.mode`` asks, and the counts."""
    kinds = list(cfg.kinds)
    if cfg.mode == "flip":
        return flip_pairs(rows, cfg.rate, kinds, cfg.seed)
    if cfg.mode == "same_form":
        return same_form_noise(rows, cfg.rate, kinds, cfg.seed)
    return plant_noise(rows, cfg.rate, kinds, REWRITES[cfg.rewrite], cfg.seed)


def inject_noise(cfg: NoiseConfig) -> dict[str, Any]:
    """Write ``cfg.out`` (the noised pairs) and ``noise.json`` beside it; return the summary."""
    cfg.validate()
    require_pairs_rows(cfg.pairs)
    root = pairs_metadata(cfg.pairs).get("image_root") if cfg.pairs.endswith(".parquet") else None
    rows = read_pairs(cfg.pairs)
    noised, summary = noise_rows(rows, cfg)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pairs(noised, out, image_root=root if root is not None else Path(cfg.pairs).parent)
    how = {"rewrite": cfg.rewrite} if cfg.mode == "rewrite" else {}
    summary = {"source": str(cfg.pairs), "mode": cfg.mode, **how, **summary,
               "rows": {"in": len(rows), "out": len(noised)}}
    write_json(out.with_name("noise.json"), summary)
    return summary


def run_noise(cfg: NoiseConfig) -> int:
    summary = inject_noise(cfg)
    verb = "flipped" if cfg.mode == "flip" else "replaced"
    for kind in summary["kinds"]:
        print(f"{kind}: {verb} {summary['replaced'][kind]} of {summary['negatives'][kind]} pairs "
              f"({summary['realised_rate'][kind]:.1%})")
    print(f"wrote {cfg.out} ({summary['rows']['out']} rows from {summary['rows']['in']})")
    return 0
