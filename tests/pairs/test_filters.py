"""Negative filters: normalisation, reasons, counts."""

from __future__ import annotations

from unprior.formats.pairs import Negative, PairRow
from unprior.pairs.config import FilterConfig
from unprior.pairs.filters import FilterReport, filter_row, filter_rows, n_words, normalize


def test_normalize() -> None:
    assert normalize("  The cat\n is  RED. ") == "the cat is red"
    assert normalize("Yes!!!") == "yes"
    assert normalize("3.5") == "3.5"
    assert normalize(" ... ") == ""
    assert n_words(" a  b\nc ") == 3


def row(*texts: str, kind: str = "image_weakening") -> PairRow:
    return PairRow("r", None, "Q?", "The cat is red.", [Negative(t, kind) for t in texts])


def test_filter_reasons_and_counts() -> None:
    report = FilterReport()
    long = " ".join(["word"] * 351)
    kept = filter_row(
        row("the cat is RED", "", "  .", long, "The cat is blue.", " ".join(["w"] * 350)), FilterConfig(), report
    )
    assert kept is not None and [n.text for n in kept.negatives] == ["The cat is blue.", " ".join(["w"] * 350)]
    assert report.dropped == {"same_as_chosen": 1, "empty": 2, "too_long": 1}
    assert report.dropped_by_kind["image_weakening/empty"] == 2
    assert (report.negatives_in, report.negatives_kept) == (6, 2)


def test_rows_without_negatives_are_dropped() -> None:
    rows = [row("The cat is red"), row("A dog.", kind="language_bias"), row()]
    kept, report = filter_rows(rows)
    assert [r.negatives[0].text for r in kept] == ["A dog."]
    assert report.rows_without_negatives == 2 and report.negatives_kept == 1
    assert "kept 1 of 2" in report.summary()


def test_max_words_zero_disables_length_limit() -> None:
    kept, report = filter_rows([row(" ".join(["w"] * 1000))], FilterConfig(max_words=0))
    assert len(kept) == 1 and not report.dropped
    unchanged = row("A dog.")
    assert filter_row(unchanged, FilterConfig(), FilterReport()) is unchanged
