"""The shared-prefix forward equals the naive concatenated forward: losses and gradients within 1e-5 in fp32.

Checked on every tiny family: LLaVA and Idefics3 (1-D RoPE) and Qwen2-VL / Qwen2.5-VL (M-RoPE with rope deltas),
with and without activation checkpointing. The loss is the NaPO preset objective with an SFT anchor over a chosen
answer and three negatives per row, on rows with different prompt and response lengths (so padding is exercised).
"""

from __future__ import annotations

import pytest
import torch

from unprior.formats.pairs import read_pairs
from unprior.forward import prefix as prefix_module
from unprior.forward.batch import RowEncoder
from unprior.forward.prefix import ResponseScorer, enable_activation_checkpointing
from unprior.losses import Responses, SeqLogps, objective_loss, objective_preset
from unprior.models.families import load_model
from unprior.models.tiny import FAMILIES

KINDS = ("error_injection", "language_bias", "vision_bias")


def encoded(model_dir, pairs_path, n=3):
    _, processor = load_model(model_dir)
    rows = read_pairs(pairs_path)[:n]
    rows[1] = rows[1].__class__(**{**rows[1].__dict__, "prompt": "What color is the apple in the picture?"})
    encoder = RowEncoder(processor, max_length=128)
    encoded, dropped = encoder.encode(list(enumerate(rows)))
    assert not dropped
    return encoded, encoder


def objective(scorer: ResponseScorer, rows, encoder) -> torch.Tensor:
    picks = [list(range(len(r))) for r in rows.responses]
    batch = encoder.collate(rows, picks, repeat_prompts=scorer.repeat_prompts)
    sums, counts = scorer(**batch.inputs())
    sums, counts = sums.view(len(rows), 4), counts.view(len(rows), 4)
    reference = sums.detach() + torch.linspace(-1.0, 1.0, sums.numel()).view_as(sums)  # fixed, policy != reference
    cfg = objective_preset("napo")
    cfg.sft_weight = 1.0

    def responses(j: int) -> Responses:
        return Responses(SeqLogps(sums[:, j], counts[:, j]), SeqLogps(reference[:, j], counts[:, j]))

    negatives = {kind: responses(j) for j, kind in enumerate(KINDS, start=1)}
    return objective_loss(responses(0), negatives, cfg).losses.mean()


def loss_and_grads(model, method, rows, encoder):
    model.zero_grad(set_to_none=True)
    scorer = ResponseScorer(model, method)
    loss = objective(scorer, rows, encoder)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_shared_prefix_equals_naive_forward(family, family_model, small_pairs):
    rows, encoder = encoded(family_model(family), small_pairs)
    model, _ = load_model(family_model(family))
    assert prefix_module.prefix_positions(model) is not None
    naive_loss, naive_grads = loss_and_grads(model, "naive", rows, encoder)
    prefix_loss, prefix_grads = loss_and_grads(model, "prefix", rows, encoder)
    assert abs(naive_loss.item() - prefix_loss.item()) < 1e-5
    assert naive_grads.keys() == prefix_grads.keys()
    assert any("vision" in name or "visual" in name for name in prefix_grads)  # through the cache into the tower
    worst = max((naive_grads[k] - prefix_grads[k]).abs().max().item() for k in naive_grads)
    assert worst < 1e-5, worst


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_shared_prefix_with_activation_checkpointing(family, family_model, small_pairs):
    """transformers drops caches inside checkpointed layers unless they are read-only; ours are replay-safe."""
    rows, encoder = encoded(family_model(family), small_pairs)
    model, _ = load_model(family_model(family))
    naive_loss, naive_grads = loss_and_grads(model, "naive", rows, encoder)
    enable_activation_checkpointing(model)
    model.train()
    loss, grads = loss_and_grads(model, "prefix", rows, encoder)
    assert abs(naive_loss.item() - loss.item()) < 1e-5
    assert max((naive_grads[k] - grads[k]).abs().max().item() for k in naive_grads) < 1e-5


def test_vision_tower_runs_once_per_row_with_the_prefix(family_model, small_pairs):
    rows, encoder = encoded(family_model("llava"), small_pairs)
    model, _ = load_model(family_model("llava"))
    calls = []
    model.model.vision_tower.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    for method in ("prefix", "naive"):
        scorer = ResponseScorer(model, method)
        batch = encoder.collate(rows, [[0, 1, 2, 3]] * len(rows), repeat_prompts=scorer.repeat_prompts)
        with torch.no_grad():
            scorer(**batch.inputs())
    assert calls == [len(rows), 4 * len(rows)]


def test_unsupported_family_falls_back_to_naive_with_one_log_line(family_model, monkeypatch):
    monkeypatch.delitem(prefix_module.PREFIX_SUPPORT, "llava")
    model, _ = load_model(family_model("llava"))
    lines: list[str] = []
    scorer = ResponseScorer(model, "auto", log=lines.append)
    assert scorer.method == "naive" and scorer.repeat_prompts
    assert len(lines) == 1 and "not supported for model type 'llava'" in lines[0]
    with pytest.raises(ValueError, match="not supported"):
        ResponseScorer(model, "prefix")
