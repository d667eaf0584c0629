"""Response log-probs are gathered at the masked positions only and equal a plain log-softmax."""

import torch
from torch.testing import assert_close

from unprior.score.logps import sequence_logps, token_logps


def test_token_logps_match_log_softmax_and_zero_outside_the_mask():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 11, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    full = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    out = token_logps(logits, targets, mask)
    assert_close(out[mask], full[mask])
    assert (out[~mask] == 0).all()
    seq = sequence_logps(logits, targets, mask)
    assert_close(seq.sum, (full * mask).sum(-1))
    assert seq.count.tolist() == [2.0, 3.0, 0.0]
    assert seq.mean[2].item() == 0.0  # no tokens: 0, not NaN


def test_half_precision_logits_are_scored_in_float32():
    logits = torch.randn(1, 2, 7).to(torch.bfloat16)
    out = token_logps(logits, torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool))
    assert out.dtype == torch.float32


def test_gradient_flows_only_through_scored_positions():
    logits = torch.randn(1, 3, 5, requires_grad=True)
    sequence_logps(logits, torch.tensor([[0, 1, 2]]), torch.tensor([[True, False, True]])).sum.sum().backward()
    assert logits.grad[0, 1].abs().sum() == 0
    assert logits.grad[0, 0].abs().sum() > 0
