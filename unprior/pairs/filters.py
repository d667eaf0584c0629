"""Filters: drop generated negatives that cannot teach a preference, and count why.

A negative is dropped when it is

- ``empty``: nothing left after normalisation (a refusal to generate, or an error);
- ``same_as_chosen``: equal to the chosen answer after :func:`normalize`. For identical texts the DPO margin is
  identically zero, so the pair costs compute and teaches nothing; for texts that differ only in case, spacing or
  final punctuation it would teach formatting, not grounding;
- ``too_long``: more than ``max_words`` whitespace-separated words. BPO drops the whole *sample* when any of its
  completions exceeds 350 words (docs/papers.md, BPO step 4); we drop only the long negative and keep the prompt's
  other negatives, and never drop on the chosen answer's length.

A row left with no negatives is dropped too (counted as ``rows_without_negatives``).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from unprior.formats.pairs import Negative, PairRow
from unprior.pairs.config import FilterConfig

_SPACE = re.compile(r"\s+")
_TRAILING = string.punctuation + "…。！？、"


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip surrounding whitespace and trailing punctuation."""
    return _SPACE.sub(" ", text.lower()).strip().rstrip(_TRAILING + " ")


def n_words(text: str) -> int:
    """Whitespace-separated words, as BPO counts them."""
    return len(text.split())


@dataclass
class FilterReport:
    negatives_in: int = 0
    negatives_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Dropped negatives by reason (empty, same_as_chosen, too_long)."""
    dropped_by_kind: Counter[str] = field(default_factory=Counter)
    """Dropped negatives by ``"<kind>/<reason>"``."""
    rows_without_negatives: int = 0

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.dropped.most_common()) or "none"
        return (
            f"negatives: kept {self.negatives_kept} of {self.negatives_in} (dropped: {reasons}); "
            f"rows dropped for having no negatives left: {self.rows_without_negatives}"
        )


def drop_reason(negative: Negative, chosen_norm: str, max_words: int) -> str | None:
    """Why ``negative`` is dropped, or None to keep it. ``chosen_norm`` is ``normalize(chosen)``."""
    norm = normalize(negative.text)
    if not norm:
        return "empty"
    if norm == chosen_norm:
        return "same_as_chosen"
    if max_words and n_words(negative.text) > max_words:
        return "too_long"
    return None


def filter_row(row: PairRow, cfg: FilterConfig, report: FilterReport) -> PairRow | None:
    """``row`` with its bad negatives removed, or None when none is left; counts go into ``report``."""
    chosen_norm = normalize(row.chosen)
    kept = []
    for negative in row.negatives:
        report.negatives_in += 1
        reason = drop_reason(negative, chosen_norm, cfg.max_words)
        if reason is None:
            kept.append(negative)
            continue
        report.dropped[reason] += 1
        report.dropped_by_kind[f"{negative.kind}/{reason}"] += 1
    report.negatives_kept += len(kept)
    if not kept:
        report.rows_without_negatives += 1
        return None
    return row if len(kept) == len(row.negatives) else replace(row, negatives=kept)


def filter_rows(rows: Iterable[PairRow], cfg: FilterConfig | None = None) -> tuple[list[PairRow], FilterReport]:
    """Apply :func:`filter_row` to every row; returns the rows that keep at least one negative, and the counts."""
    cfg = cfg or FilterConfig()
    report = FilterReport()
    kept = [r for r in (filter_row(row, cfg, report) for row in rows) if r is not None]
    return kept, report
