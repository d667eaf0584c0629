"""The real-geometry benchmark's pieces: shapes (token counts), the objective equal to TRL's mean pair loss, the
plain TRL head equal to TRL's kernel, the candidate log-softmax head equal to ours, the phase arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unprior.formats.pairs import read_pairs
from unprior.forward.batch import RowEncoder
from unprior.losses import Responses, SeqLogps, objective_loss
from unprior.models.families import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import geometry
import phases
import shapes


def encoded(shape: shapes.Shape, root: Path, rows: int):
    model_dir, pairs = shapes.build(shape, root, rows)
    model, processor = load_model(model_dir)
    batch, dropped = RowEncoder(processor, 4096).encode(list(enumerate(read_pairs(pairs))))
    assert not dropped
    return model, batch, read_pairs(pairs)


def test_llava15_preset_has_llava_1_5_geometry(tmp_path):
    model, batch, rows = encoded(shapes.preset("llava15", negatives=3), tmp_path, 3)
    assert model.config.text_config.vocab_size == 32_000 and model.config.image_seq_length == 576
    assert batch.prompt["pixel_values"].shape[-2:] == (336, 336)
    assert batch.prompt_lens.tolist() == [602] * 3  # 576 image tokens + the templated instruction
    lengths = [len(r) for row in batch.responses for r in row]
    assert len(lengths) == 3 * 4 and all(99 <= n <= 201 for n in lengths)
    assert [n.kind for n in rows[0].negatives] == ["error_injection", "image_weakening", "language_bias"]


def test_qwen2vl_image_tokens_are_dynamic(tmp_path):
    _, batch, _ = encoded(shapes.preset("qwen2vl", vocab=1000), tmp_path, 4)
    tokens = batch.prompt["image_grid_thw"].prod(-1) // 4  # 2×2 merge
    assert len(set(tokens.tolist())) > 1
    assert all(0.7 * 576 <= t <= 1.3 * 576 for t in tokens.tolist())
    assert (batch.prompt_lens - tokens).unique().numel() == 1  # the same instruction around every image


@pytest.mark.parametrize("k", [1, 2, 3])
def test_objective_is_trls_mean_sigmoid_loss_over_the_pairs(k):
    torch.manual_seed(k)
    b = 5
    chosen = Responses(SeqLogps(torch.randn(b), torch.ones(b)), SeqLogps(torch.randn(b), torch.ones(b)))
    negatives = {kind: Responses(SeqLogps(torch.randn(b), torch.ones(b)), SeqLogps(torch.randn(b), torch.ones(b)),
                                 torch.ones(b, dtype=torch.bool)) for kind in shapes.NEGATIVE_KINDS[:k]}
    ours = objective_loss(chosen, negatives, geometry.objective(k)).losses.mean()
    margins = [(chosen.policy.sum - chosen.reference.sum) - (n.policy.sum - n.reference.sum)
               for n in negatives.values()]
    trl = -F.logsigmoid(0.1 * torch.cat(margins)).mean()  # TRL's loss_type="sigmoid" over the b·k pairs
    assert torch.allclose(ours, trl, atol=1e-6)


def test_plain_head_gives_trls_fused_kernel_log_probs_and_gradients():
    from trl.kernels import ChunkedLogProbFunction

    torch.manual_seed(0)
    hidden, weight = torch.randn(7, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (7,))
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    grads = []
    for fn in (ChunkedLogProbFunction.apply, geometry.PlainHead.apply):
        log_probs = fn(hidden, weight, None, targets, 1.0, 32, None, 1.0, outputs)[0]
        grads.append((*torch.autograd.grad(log_probs.sum(), (hidden, weight)), log_probs.detach()))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_plain_head_equals_head_logps():
    from unprior.forward.logps import head_logps, plain_head_logps

    torch.manual_seed(0)
    head, hidden, targets = torch.nn.Linear(8, 40), torch.randn(9, 8), torch.randint(0, 40, (9,))
    assert torch.allclose(plain_head_logps(head, hidden, targets), head_logps(head, hidden, targets), atol=1e-6)


def test_phases_per_steady_step(monkeypatch):
    monkeypatch.setattr(phases, "SNAPSHOTS", [(10.0, {"backward": 1.0}), (12.0, {"backward": 2.0, "head": 0.5}),
                                              (14.0, {"backward": 3.0, "head": 1.0})])
    steady = phases.steady(warmup=1)  # the two steps after the first
    assert steady == pytest.approx({"backward": 1000.0, "head": 500.0, "step": 2000.0, "rest": 500.0})
    assert phases.steady(warmup=3) == {}
    assert phases.columns({"a": steady}) == ["head", "backward", "rest", "step"]
