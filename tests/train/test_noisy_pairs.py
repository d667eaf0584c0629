"""Pairs noised by ``unprior pairs noise mode=flip`` and ``mode=same_form`` train through the trainer with NaPO.

The rows are world-like attribute questions whose chosen answers come in the world's three phrasings (so
``same_form`` can plant another phrasing), with one negative of each of the napo preset's kinds.
"""

from __future__ import annotations

import math

import pytest
from score.helpers import png

from unprior.formats.pairs import Negative, PairRow, read_pairs, write_pairs
from unprior.pairs.noise import NoiseConfig, inject_noise
from unprior.train.trainer import setup, train
from unprior.world.phrasings import attribute_text

from .helpers import config, metrics

KINDS = ("error_injection", "language_bias", "vision_bias")
COLOURS = ("red", "green", "blue", "yellow")


def _rows(n: int) -> list[PairRow]:
    rows = []
    for i in range(n):
        colour, phrasing = COLOURS[i % 4], i % 3
        meta = {"task": "attribute", "target": "apple", "colour": colour, "phrasing": phrasing, "phrasings": 3,
                "objects": [{"category": "apple", "colour": colour}]}
        wrong = {"error_injection": attribute_text("apple", "red" if colour != "red" else "green", phrasing),
                 "language_bias": "The apple is red." if colour != "red" else "The apple is pink.",
                 "vision_bias": f"A {colour} apple."}
        chosen = attribute_text("apple", colour, phrasing)
        rows.append(PairRow(f"r{i}", png(100 + i), "What color is the apple?", chosen,
                            [Negative(wrong[k], k) for k in KINDS], meta))
    return rows


@pytest.fixture(scope="module")
def clean_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("noisy") / "clean" / "pairs.parquet"
    write_pairs(_rows(12), path)
    return path


@pytest.mark.parametrize("mode", ["flip", "same_form"])
def test_noised_pairs_train_with_napo(mode, clean_pairs, family_model, tmp_path):
    noisy = tmp_path / mode / "pairs.parquet"
    summary = inject_noise(NoiseConfig(pairs=str(clean_pairs), out=str(noisy), mode=mode, rate=0.5, seed=1))
    assert summary["replaced"] == {"language_bias": 6, "vision_bias": 6}
    run = setup(config(family_model("llava"), noisy, tmp_path / "run", steps=3, log_every=1))
    rows = read_pairs(noisy)
    assert len(run.data) == len(rows) and not run.data.skipped  # every noised row is usable
    if mode == "flip":
        _check_flipped_rows(run, rows)
    train(run)
    logged = [m for m in metrics(tmp_path / "run") if "loss" in m]
    assert [m["step"] for m in logged] == [1, 2, 3]
    for m in logged:
        assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
        assert 0.001 <= m["q/language_bias"] <= 1 and 0.001 <= m["q/vision_bias"] <= 1


def _check_flipped_rows(run, rows: list[PairRow]) -> None:
    """A flipped row trains its one kind with the wrong answer as chosen and the truth as rejected; its other kinds
    are masked. The truth is scored identically in the flipped row and in its source row (same prompt and image)."""
    index = {r.id: i for i, r in enumerate(rows)}
    flipped = [i for i, r in enumerate(rows) if "-flip" in r.id]
    assert len(flipped) == 12
    batch = run.data.batch([run.data.rows.index(i) for i in flipped])
    for b, i in enumerate(flipped):
        (truth,) = rows[i].negatives
        assert run.data.picks[i] == {truth.kind: 1}
        assert {k: bool(m[b]) for k, m in batch.kind_mask.items()} == {k: k == truth.kind for k in KINDS}
        source = index[truth.provenance["source_row"]]
        assert rows[source].chosen == truth.text
        assert run.data.reference.sums[i][1] == pytest.approx(run.data.reference.sums[source][0])
        assert batch.reference[truth.kind].sum[b].item() == pytest.approx(run.data.reference.sums[i][1], abs=1e-4)
