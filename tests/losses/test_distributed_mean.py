"""The global-batch means behind dynamic q and γ are right across two real gloo processes (N3).

Two CPU ranks hold unequal shares of one 5-row batch (2 and 3 rows, with a kind missing from some rows). Each runs
the NaPO preset objective; q, ψ̄ and γ must equal a single process's values on the whole batch, and the per-example
losses must equal that process's rows. A mean of per-rank means would differ, because the shares are unequal.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.testing import assert_close

from unprior.losses import Responses, SeqLogps, global_mean, objective_loss, objective_preset

SHARDS = [slice(0, 2), slice(2, 5)]
GLOBAL_KEYS = ["q/language_bias", "q/vision_bias", "q_margin/language_bias", "q_margin/vision_bias"]
GLOBAL_KEYS += ["gamma/error_injection", "gamma/language_bias", "gamma/vision_bias"]


def full_batch() -> tuple[Responses, dict[str, Responses]]:
    generator = torch.Generator().manual_seed(0)

    def responses(lift: float, mask=None) -> Responses:
        """The policy has raised these responses by about ``lift`` nats over the reference."""
        counts = torch.randint(1, 9, (5,), generator=generator).to(torch.float64)
        policy = -counts * torch.rand(5, generator=generator, dtype=torch.float64) * 3
        reference = policy - lift - torch.randn(5, generator=generator, dtype=torch.float64)
        return Responses(SeqLogps(policy, counts), SeqLogps(reference, counts), mask)

    negatives = {
        "error_injection": responses(-2.0),
        "language_bias": responses(-3.0, torch.tensor([True, True, False, True, True])),
        "vision_bias": responses(-9.0, torch.tensor([False, True, True, True, False])),
    }
    return responses(2.0), negatives


def shard(responses: Responses, rows: slice) -> Responses:
    def cut(logps: SeqLogps) -> SeqLogps:
        return SeqLogps(logps.sum[rows], logps.count[rows])

    mask = None if responses.mask is None else responses.mask[rows]
    return Responses(cut(responses.policy), cut(responses.reference), mask)


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        chosen, negatives = full_batch()
        rows = SHARDS[rank]
        local = {kind: shard(r, rows) for kind, r in negatives.items()}
        out = objective_loss(shard(chosen, rows), local, objective_preset("napo"))
        values = torch.arange(5, dtype=torch.float64) ** 2
        mean = global_mean(values[rows])
        torch.save({"losses": out.losses, "metrics": out.metrics, "mean": mean}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_agree_with_one_process(tmp_path, monkeypatch):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]

    chosen, negatives = full_batch()
    whole = objective_loss(chosen, negatives, objective_preset("napo"))
    for result in ranks:
        # Squares of 0..4: global mean 6; the mean of the two ranks' means would be (0.5 + 29/3)/2 = 5.08.
        assert result["mean"].item() == pytest.approx(6.0)
        for key in GLOBAL_KEYS:
            assert_close(result["metrics"][key], whole.metrics[key], msg=key)
    assert_close(torch.cat([result["losses"] for result in ranks]), whole.losses)
    # The data must make the check meaningful: q strictly inside its clip range, γ not all equal.
    for kind in ("language_bias", "vision_bias"):
        assert 0.001 < whole.metrics[f"q/{kind}"].item() < 1, kind
    assert whole.metrics["gamma/vision_bias"].item() > whole.metrics["gamma/error_injection"].item()
