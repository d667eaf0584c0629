"""Evaluation accuracies count a tie at float precision as half a win, so step 0 reads the same on every CPU."""

from __future__ import annotations

import torch

from unprior.train.trainer import TIE_RTOL, setup, train, wins

from .helpers import config, metrics


def test_wins_counts_ties_as_half():
    a = torch.tensor([-40.0, -40.0, -40.0, -40.0, -40.0])
    b = torch.tensor([-41.0, -39.0, -40.0, -40.0 + 1e-5, -40.0 - 1e-3])
    scale = a.abs() + b.abs()
    assert wins(a, b, scale).tolist() == [1.0, 0.0, 0.5, 0.5, 1.0]
    # the tie band scales with the sums: the same relative gap is a tie at any magnitude, a larger one is not
    big = torch.tensor([-4000.0]), torch.tensor([-4000.0 * (1 + TIE_RTOL)])
    assert wins(*big, big[0].abs() + big[1].abs()).item() == 0.5
    assert wins(big[0], big[1] * (1 + 10 * TIE_RTOL), 8000 * torch.ones(1)).item() == 1.0


def test_step_zero_reward_accuracy_is_a_tie(family_model, train_pairs, eval_pairs, tmp_path):
    """At step 0 the LoRA policy is the reference: every reward margin ties, whatever the summation order."""
    out = tmp_path / "run"
    train(setup(config(family_model("qwen2_vl"), train_pairs, out, steps=1, eval_pairs=str(eval_pairs),
                       threads=1)))
    first = next(m for m in metrics(out) if m.get("step") == 0 and any(k.startswith("eval/") for k in m))
    rewards = {k: v for k, v in first.items() if k.startswith("eval/reward_accuracy/")}
    assert rewards and all(v == 0.5 for v in rewards.values()), rewards
    assert all(abs(first[k.replace("reward_accuracy", "margin")]) < 1e-3 for k in rewards)
