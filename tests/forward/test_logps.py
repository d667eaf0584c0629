"""Response log-probs are gathered at the masked positions only and equal a plain log-softmax."""

import pytest
import torch
from torch.testing import assert_close

from unprior.forward import logps
from unprior.forward.logps import head_logps, sequence_logps, token_logps


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


def _head_case(dtype=torch.float64, bias=True, rows=37, vocab=29, width=6):
    g = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(width, vocab, bias=bias, dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, width, generator=g, dtype=dtype))
    hidden = torch.randn(rows, width, generator=g, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    return head, hidden, targets


def _plain(head, hidden, targets):
    logits = head(hidden).to(torch.promote_types(head.weight.dtype, torch.float32))
    return torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1 << 24, 29 * 5, 1])  # one tile, tiles of 5 rows (the last one short), 1 row each
def test_chunked_head_equals_log_softmax_with_gradients(monkeypatch, bias, chunk):
    monkeypatch.setattr(logps, "HEAD_CHUNK_ELEMENTS", chunk)
    head, hidden, targets = _head_case(bias=bias)
    weights = torch.linspace(-1, 2, len(targets), dtype=torch.float64)  # an arbitrary upstream gradient
    out = head_logps(head, hidden, targets)
    (out * weights).sum().backward()
    got = (out.detach(), hidden.grad, head.weight.grad, head.bias.grad if bias else None)
    for p in (hidden, *head.parameters()):
        p.grad = None
    expected_out = _plain(head, hidden, targets)
    (expected_out * weights).sum().backward()
    assert_close(got[0], expected_out.detach())
    assert_close(got[1], hidden.grad)
    assert_close(got[2], head.weight.grad)
    if bias:
        assert_close(got[3], head.bias.grad)


def test_chunked_head_keeps_no_full_logits_for_backward(monkeypatch):
    """Saved for backward: hidden, weight, bias, targets and one float per row, never a (rows, vocabulary) tile."""
    monkeypatch.setattr(logps, "HEAD_CHUNK_ELEMENTS", 200 * 4)
    head, hidden, targets = _head_case(dtype=torch.float32, rows=64, vocab=200)
    saved: list[torch.Size] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        head_logps(head, hidden, targets).sum().backward()
    assert all(shape.numel() < 64 * 200 for shape in saved), saved
    assert saved, "nothing saved: the chunked path was not taken"


def test_frozen_head_gets_no_gradient_and_bf16_weights_score_in_float32():
    head, hidden, targets = _head_case(dtype=torch.bfloat16)
    head.requires_grad_(False)
    out = head_logps(head, hidden, targets)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert head.weight.grad is None and hidden.grad is not None and hidden.grad.dtype == torch.bfloat16
    assert_close(out.detach(), _plain(head, hidden, targets).detach())


def test_other_heads_take_the_plain_path():
    """A wrapped head (here a hook; LoRA, sharded weights and autocast alike) is called as a module."""
    head, hidden, targets = _head_case()
    calls = []
    head.register_forward_hook(lambda *_: calls.append(1))
    assert_close(head_logps(head, hidden, targets), _plain(head, hidden, targets))
    assert len(calls) == 2


@pytest.mark.parametrize("chunk", [1 << 24, 29 * 5])
def test_frozen_head_gradient_is_built_in_forward_and_exact(monkeypatch, chunk):
    """A frozen head keeps ∂logp/∂h (rows × width) from the forward pass; the hidden states' gradient equals the
    plain path's, and nothing of vocabulary size is saved."""
    monkeypatch.setattr(logps, "HEAD_CHUNK_ELEMENTS", chunk)
    head, hidden, targets = _head_case()
    head.requires_grad_(False)
    weights = torch.linspace(-1, 2, len(targets), dtype=torch.float64)
    saved: list[torch.Size] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        out = head_logps(head, hidden, targets)
    (out * weights).sum().backward()
    got = hidden.grad.clone()
    hidden.grad = None
    (_plain(head, hidden, targets) * weights).sum().backward()
    assert_close(got, hidden.grad)
    assert saved == [hidden.shape]
    with torch.no_grad():  # scoring (the reference, eval): no gradient factor is computed
        assert_close(head_logps(head, hidden, targets), _plain(head, hidden, targets))
