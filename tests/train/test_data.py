"""The row order is a function of (seed, step): the same global batches for any process count, every row once per
epoch; a row brings its chosen answer and its first negative of each objective kind, missing kinds masked."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from unprior.formats.pairs import Negative, read_pairs
from unprior.forward.batch import RowEncoder
from unprior.models.families import load_model
from unprior.score.config import ScoreConfig
from unprior.score.reference import ensure_reference, load_reference
from unprior.train.data import Order, PreferenceData, Prefetcher


def test_global_batches_do_not_depend_on_the_process_split():
    one = Order(n_rows=10, batch_size=4, processes=1, grad_accum=1, seed=3)
    two = Order(n_rows=10, batch_size=2, processes=2, grad_accum=1, seed=3)
    accum = Order(n_rows=10, batch_size=1, processes=2, grad_accum=2, seed=3)
    for step in range(6):
        whole = one.micro_rows(step, 0, 0)
        assert whole == two.micro_rows(step, 0, 0) + two.micro_rows(step, 0, 1)
        assert whole == [r for a in range(2) for p in range(2) for r in accum.micro_rows(step, a, p)]
    stream = [r for step in range(5) for r in one.global_rows(step)]  # 20 positions = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]  # reshuffled each epoch
    assert Order(10, 4, 1, 1, seed=3).global_rows(7) == one.global_rows(7)


def test_batch_layout_masks_and_reference(family_model, tmp_path):
    from score.helpers import make_rows, pairs_file

    rows = make_rows(3)
    rows[1] = rows[1].__class__(**{**rows[1].__dict__, "negatives": [Negative("A blue whale.", "vision_bias")]})
    rows[2] = rows[2].__class__(**{**rows[2].__dict__, "negatives": [
        *rows[2].negatives, Negative("A second one.", "error_injection")]})
    path = pairs_file(tmp_path / "p.parquet", rows)
    model_dir = family_model("llava")
    ref = load_reference(ensure_reference(ScoreConfig(model=str(model_dir), pairs=str(path), max_length=64,
                                                      reference_dir=str(tmp_path / "c")), log=lambda _: None))
    _, processor = load_model(model_dir)
    data = PreferenceData(read_pairs(path), ref, RowEncoder(processor, 64), ["error_injection", "vision_bias"],
                          repeat_prompts=False)
    assert data.rows == [0, 1, 2]
    assert data.picks[2] == {"error_injection": 1, "vision_bias": 3}  # the first of each kind
    batch = data.batch([0, 1, 2])
    assert batch.chosen_index.tolist() == [0, 3, 5]
    assert batch.kind_mask["error_injection"].tolist() == [True, False, True]
    assert batch.kind_index["vision_bias"].tolist() == [2, 4, 7]
    assert batch.reference["vision_bias"].sum[1].item() == pytest.approx(ref.sums[1][1], abs=1e-5)
    sums = torch.arange(8, dtype=torch.float32)
    counts = torch.tensor([float(len(batch.responses.response_ids[i][batch.responses.response_mask[i]]))
                           for i in range(8)])
    chosen, negatives = batch.split(sums, counts)
    assert chosen.policy.sum.tolist() == [0.0, 3.0, 5.0]
    assert negatives["error_injection"].policy.sum.tolist() == [1.0, 0.0, 6.0]  # absent row: 0
    with pytest.raises(ValueError, match="does not match"):
        batch.split(sums, counts + 1)
    ref.counts[1][1] += 1  # a cache that does not belong to these rows fails when the batch is built
    with pytest.raises(ValueError, match="vision_bias: the policy scored"):
        data.batch([0, 1])
    with pytest.raises(ValueError, match="no negatives in this pairs file"):
        PreferenceData(read_pairs(path), ref, RowEncoder(processor, 64), ["image_weakening"], False)


class _Rows:
    """Stands in for PreferenceData: a "batch" is the tuple of its rows, and every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def batch(self, rows):
        self.calls.append(tuple(rows))
        return tuple(rows)


@pytest.mark.parametrize("threaded", [True, False])
def test_prefetcher_yields_the_plan_in_order_and_encodes_ahead_only_when_asked(threaded):
    plan = [(step, 0, [step, step + 1]) for step in range(5)]
    data = _Rows()
    with Prefetcher(data, plan, threaded=threaded) as batches:
        got = []
        for step, micro, batch in batches:
            got.append((step, micro, batch))
            if threaded:
                # From step 1 on, batch k+1 starts encoding only at advance() (called right before backward); before
                # the first advance() the iterator cannot know it will be called, so batch 1 starts with step 0.
                time.sleep(0.01)
                assert len(data.calls) == max(step + 1, 2)
            batches.advance()
    assert got == [(s, m, tuple(r)) for s, m, r in plan]
    assert data.calls == [tuple(r) for _, _, r in plan]
    # Without advance() calls one batch stays in flight, as a plain prefetching iterator.
    assert [b for _, _, b in Prefetcher(_Rows(), plan)] == [tuple(r) for _, _, r in plan]


def test_order_matches_one_permutation_per_epoch():
    order = Order(n_rows=7, batch_size=3, processes=1, grad_accum=1, seed=5)
    stream = np.concatenate([np.random.default_rng([5, e]).permutation(7) for e in range(4)]).tolist()
    assert [r for step in range(9) for r in order.global_rows(step)] == stream[:27]
