"""The noise report's margins, shares and q values on a hand-made reference table."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from unprior.losses import noise_q
from unprior.score.noise_report import noise_report, reference_margins, write_noise_report
from unprior.score.reference import REFERENCE_SCHEMA


def table() -> pa.Table:
    """Two rows. Row 0: chosen −4 (2 tokens), language_bias −10 (5 tokens). Row 1: chosen −6 (3), language_bias
    −3 (1). Summed margins: [6, −3]; per-token: [−2 − (−2), −2 − (−3)] = [0, 1]."""
    rows = [(0, "a", 0, "chosen", -4.0, 2), (0, "a", 1, "language_bias", -10.0, 5),
            (1, "b", 0, "chosen", -6.0, 3), (1, "b", 1, "language_bias", -3.0, 1)]
    data = {name: [] for name in REFERENCE_SCHEMA.names}
    for row, rid, response, kind, total, count in rows:
        for name, value in zip(REFERENCE_SCHEMA.names, (row, rid, response, kind, total, total / count, count,
                                                        False), strict=True):
            data[name].append(value)
    return pa.Table.from_pydict(data, schema=REFERENCE_SCHEMA)


def test_margins_and_shares():
    margins = reference_margins(table())
    assert margins["language_bias"]["sum"].tolist() == [6.0, -3.0]
    assert margins["language_bias"]["mean"].tolist() == [0.0, 1.0]
    report = noise_report(margins)["kinds"]["language_bias"]
    assert report["n"] == 2
    assert report["sum"]["share_negative"] == 0.5 and report["mean"]["share_negative"] == 0.0
    assert report["mean"]["share_tied"] == 0.5
    assert report["q_start"] == 1.0  # policy = reference at step 0: margin 0, q = 2(1 − σ(0)) = 1
    assert report["sum"]["q_from_reference"] == pytest.approx(noise_q(1.5, alpha=0.01).item())
    assert report["mean"]["q_from_reference"] == pytest.approx(noise_q(0.5, alpha=0.5).item())


def test_written_as_json_and_png(tmp_path):
    write_noise_report(table(), tmp_path)
    assert json.loads((tmp_path / "noise_report.json").read_text())["kinds"]["language_bias"]["n"] == 2
    for name in ("noise_sum.png", "noise_mean.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
