"""``unprior pairs noise``: mix a known share of noisy negatives into a pairs file, to measure robustness.

A *noisy* negative is one that is in fact correct: the pair says "prefer the chosen answer over this one" although
both are right. NaPO (arXiv 2503.17928, §3.2 and Fig. 4) attributes the noise of automatically built negatives to
exactly this: a language- or vision-biased answer that happens to be fine. In a real pairs file such negatives are
mixed in at an unknown rate; here they are planted at a known rate, so a loss's robustness can be measured.

A planted negative must differ from the chosen answer: a negative identical to the chosen answer is dropped by the
pairs filters, and would carry no gradient through any pairwise loss anyway (the chosen and rejected log-probs
cancel). So a planted negative is a *correct rewrite* of the chosen answer (:data:`REWRITES`): for the embedded
world, the same objects and colours in another order or another sentence form, built from the row's metadata.

``rate`` is the share of the negatives of ``kinds`` that are replaced; the replaced negatives keep their kind (so an
objective treats them like the rest) and record ``{"noise": ...}`` in their provenance. The output is a new pairs
file (the input is never touched) plus ``noise.json`` beside it with the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unprior.config import check_range, fail
from unprior.io import write_json
from unprior.pairs.schema import NEGATIVE_KINDS, Negative, PairRow, pairs_metadata, read_pairs, write_pairs


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


@dataclass
class NoiseConfig:
    """Replace a share of the negatives of some kinds with correct rewrites of the chosen answer."""

    pairs: str = ""
    """Input pairs file (.parquet or .jsonl)."""
    out: str = ""
    """Output pairs file (.parquet or .jsonl); ``noise.json`` with the counts is written beside it."""
    rate: float = 0.3
    """Share of the negatives of ``kinds`` to replace, in [0, 1)."""
    kinds: list[str] = field(default_factory=lambda: ["language_bias", "vision_bias"])
    """Negative kinds that receive noise (NaPO's biased kinds by default; the original pair stays clean)."""
    rewrite: str = "world"
    """How a correct answer is built: a key of ``unprior.pairs.noise.REWRITES``."""
    seed: int = 0
    """Seed of which negatives are replaced."""

    def validate(self) -> None:
        if not self.pairs or not self.out:
            fail("pairs" if not self.pairs else "out", "set the input and output pairs files")
        if Path(self.pairs).resolve() == Path(self.out).resolve():
            fail("out", "must differ from the input pairs file")
        check_range(self, "rate", 0.0, 0.999)
        bad = [k for k in self.kinds if k not in NEGATIVE_KINDS]
        if not self.kinds or bad:
            fail("kinds", f"choose among {', '.join(NEGATIVE_KINDS)}; got {self.kinds}")
        if self.rewrite not in REWRITES:
            fail("rewrite", f"unknown rewrite {self.rewrite!r}; known: {', '.join(REWRITES)}")


def plant_noise(rows: list[PairRow], rate: float, kinds: list[str], rewrite: Callable[[PairRow], str | None],
                seed: int) -> tuple[list[PairRow], dict[str, Any]]:
    """``rows`` with ``round(rate · n_k)`` negatives of each kind k replaced by correct rewrites.

    The replaced negatives are drawn uniformly among those of rows that have a rewrite; when fewer than needed have
    one, this fails rather than plant a lower rate than asked.
    """
    rng = np.random.default_rng(seed)
    alternatives = [rewrite(r) for r in rows]
    slots: dict[str, list[tuple[int, int]]] = {k: [] for k in kinds}
    totals: Counter[str] = Counter()
    for i, row in enumerate(rows):
        for j, neg in enumerate(row.negatives):
            if neg.kind in slots:
                totals[neg.kind] += 1
                if alternatives[i] is not None:
                    slots[neg.kind].append((i, j))
    chosen: set[tuple[int, int]] = set()
    for kind in kinds:
        need = round(rate * totals[kind])
        if need > len(slots[kind]):
            raise ValueError(f"rate {rate}: {need} {kind} negatives must be replaced but only {len(slots[kind])} "
                             f"of {totals[kind]} belong to rows with a correct rewrite")
        picked = rng.choice(len(slots[kind]), size=need, replace=False) if need else []
        chosen.update(slots[kind][p] for p in picked)
    out = []
    for i, row in enumerate(rows):
        negatives = [Negative(alternatives[i], neg.kind, {"noise": "correct_rewrite", "replaced": neg.text})
                     if (i, j) in chosen else neg for j, neg in enumerate(row.negatives)]
        out.append(PairRow(row.id, row.image, row.prompt, row.chosen, negatives, row.meta))
    planted = Counter(rows[i].negatives[j].kind for i, j in chosen)
    summary = {"rate": rate, "kinds": kinds, "seed": seed,
               "negatives": {k: totals[k] for k in kinds}, "replaced": {k: planted[k] for k in kinds},
               "realised_rate": {k: planted[k] / totals[k] if totals[k] else 0.0 for k in kinds}}
    return out, summary


def inject_noise(cfg: NoiseConfig) -> dict[str, Any]:
    """Write ``cfg.out`` (the noised pairs) and ``noise.json`` beside it; return the summary."""
    cfg.validate()
    root = pairs_metadata(cfg.pairs).get("image_root") if cfg.pairs.endswith(".parquet") else None
    rows = read_pairs(cfg.pairs)
    noised, summary = plant_noise(rows, cfg.rate, list(cfg.kinds), REWRITES[cfg.rewrite], cfg.seed)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pairs(noised, out, image_root=root if root is not None else Path(cfg.pairs).parent)
    summary = {"source": str(cfg.pairs), "rewrite": cfg.rewrite, **summary}
    write_json(out.with_name("noise.json"), summary)
    return summary


def run_noise(cfg: NoiseConfig) -> int:
    summary = inject_noise(cfg)
    for kind in summary["kinds"]:
        print(f"{kind}: replaced {summary['replaced'][kind]} of {summary['negatives'][kind]} negatives "
              f"({summary['realised_rate'][kind]:.1%})")
    print(f"wrote {cfg.out}")
    return 0
