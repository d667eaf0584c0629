"""The memory plan (unprior/plan.py): each term against hand-computed numbers, the activation terms against the
tensors autograd really keeps, and ``plan=true`` on tiny model folders that hold no weights at all."""

from __future__ import annotations

import shutil

import pytest
import torch
from score.helpers import CORPUS

from unprior import plan as P
from unprior.cli import main, split_plan

TEXT = P.TextShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=400)
MODEL = P.ModelShape(TEXT, params=1000, language=600, layer=100, lora_per_rank=50, dtype="bfloat16")
ROW = P.RowShape(prompt=10, image=6, responses=3, response=4)


def test_parse_bytes_and_human():
    assert P.parse_bytes("80GiB") == 80 * 2**30
    assert P.parse_bytes("80GB") == 80 * 10**9
    assert P.parse_bytes("512 MiB") == 512 * 2**20
    assert P.parse_bytes("1e9") == 10**9
    with pytest.raises(ValueError, match="not a memory size"):
        P.parse_bytes("lots")
    assert P.human(3 * 2**30) == "3.0 GiB"


def test_weights_one_device_and_sharded():
    # bf16 weights (2 B) + the fp32 LoRA adapter (r 4 × 50 parameters × 4 B)
    assert P.weight_bytes(MODEL, P.RunShape(lora_rank=4)) == 1000 * 2 + 4 * 50 * 4
    assert P.weight_bytes(MODEL, P.RunShape(lora_rank=0, setup="ddp", devices=4)) == 2000
    # FSDP2 / ZeRO-3: a quarter, plus one whole layer (100 × 2 B) gathered
    assert P.weight_bytes(MODEL, P.RunShape(lora_rank=0, setup="fsdp2", devices=4)) == 500 + 200
    assert P.weight_bytes(MODEL, P.RunShape(lora_rank=0, setup="zero3", devices=4)) == 500 + 200


def test_gradients_and_optimizer():
    lora = P.RunShape(lora_rank=4)
    assert P.trainable_params(MODEL, lora) == 200
    assert P.gradient_bytes(MODEL, lora) == 200 * 4  # fp32 adapter
    assert P.optimizer_bytes(MODEL, lora) == 2 * 200 * 4  # AdamW: two fp32 moments
    full = P.RunShape(lora_rank=0)
    assert P.gradient_bytes(MODEL, full) == 600 * 2  # the language side, in bf16
    assert P.optimizer_bytes(MODEL, full) == 2 * 600 * 2
    assert P.gradient_bytes(MODEL, P.RunShape(lora_rank=0, setup="ddp", devices=2)) == 2 * 1200  # + buckets
    assert P.gradient_bytes(MODEL, P.RunShape(lora_rank=0, setup="zero3", devices=4)) == 300
    assert P.optimizer_bytes(MODEL, P.RunShape(lora_rank=0, setup="fsdp2", devices=4)) == 600


def test_activation_terms():
    assert TEXT.kv_width == 32
    assert P.per_token_layer_floats(TEXT, 0) == 8 * 64 + 2 * 32 + 4 * 128
    assert P.per_token_layer_floats(TEXT, 8) == 16 * 64 + 2 * 32 + 5 * 128 + 7 * 8
    assert P.row_tokens(ROW) == 9 + 3 * 5  # the prompt minus its last token, then 3 × (last token + 4)
    assert P.continuation_kv_floats(TEXT, ROW) == 3 * 2 * 15 * 64
    assert P.prefix_copy_floats(TEXT, ROW) == 3 * 2 * 10 * 32
    assert P.forward_floats(TEXT, ROW, 0) == 2 * 24 * 64 + 3 * 5 * 14
    assert P.head_bytes(TEXT, ROW, P.RunShape()) == 12 * 64 * 4
    fp32 = P.ModelShape(TEXT, 1000, 600, 100, 50, "float32")
    per_layer = 24 * 1088 + 5760 + 1920
    assert P.activation_bytes(fp32, ROW, P.RunShape(lora_rank=0)) == 4 * (2 * per_layer + 3282) + 3072
    bf16 = P.activation_bytes(fp32, ROW, P.RunShape(lora_rank=0, precision="bf16"))
    assert bf16 == 2 * (2 * per_layer + 3282) + 3072  # autocast halves all but the fp32 head term
    kept = 2 * (24 * 64 + 2 * 9 * 32)  # checkpointing: layer inputs and prompt keys/values, one layer recomputed
    checkpointed = P.activation_bytes(fp32, ROW, P.RunShape(lora_rank=0, checkpointing=True))
    assert checkpointed == 4 * (kept + 24 * 1088 + 5760 + 3282) + 3072


def test_reference_cache_and_largest_batch():
    assert P.reference_cache_bytes(10, 4) == 10 * 4 * 16 + 10 * 16
    assert P.largest_batch(100, 30, 20) == 3
    assert P.largest_batch(20, 30, 20) == 0
    plan = P.TrainPlan(weights=1000, gradients=400, optimizer=800, per_row=100, head=50, vision=10, batch=2)
    assert plan.peak == 1000 + 800 + max(200 + 50, 400 + 100)  # the backward's moment: gradients + half
    assert plan.peak_at(20) == 1000 + 800 + 2000 + 50  # the forward's: activations + head tiles
    assert plan.largest_batch(1800 + 50 + 500) == 3  # forward: 5 rows; backward: (2350 − 2200) / 50 = 3
    assert plan.largest_batch(1800 + 400 + 100) == 2  # the backward limits: 400 + 2 × 50
    assert plan.largest_batch(2000) == 0


def test_head_tiles():
    from unprior.forward.logps import HEAD_CHUNK_ELEMENTS

    assert P.HEAD_TILE_ELEMENTS == HEAD_CHUNK_ELEMENTS
    assert P.head_transient_bytes(TEXT, ROW, 2) == 2 * (2 * 3 * 4) * 400 * 4  # 24 rows, under one tile
    big = P.TextShape(64, 128, 2, 4, 2, vocab=2**20)
    assert P.head_transient_bytes(big, ROW, 2) == 2 * 16 * 2**20 * 4  # one tile: 2^24 / V = 16 rows


def _saved_bytes(lora_rank: int) -> tuple[int, int]:
    """Bytes autograd keeps in one shared-prefix forward of a tiny LLaVA, and what the plan says."""
    from transformers import LlavaForConditionalGeneration

    from unprior.forward.prefix import ResponseScorer
    from unprior.models.tiny import build_tiny_llava, family_tokenizer
    from unprior.train.config import TrainConfig
    from unprior.train.model import build_policy

    tok = family_tokenizer("llava", CORPUS)
    model, _ = build_tiny_llava(tok, text_hidden=128, text_layers=2, text_heads=4)
    model.config.text_config.intermediate_size = 352  # distinct H, H_kv and I
    model = LlavaForConditionalGeneration(model.config)
    cfg = TrainConfig(model="-", pairs="-", out="-")
    cfg.lora.enabled, cfg.lora.r = lora_rank > 0, max(1, lora_rank)
    scorer = ResponseScorer(build_policy(model, cfg, lambda *_: None))
    image = torch.full((16,), tok.convert_tokens_to_ids("<image>"))
    ids = torch.cat([image, torch.randint(10, 300, (40,))])[None]
    n, width = 3, 12
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() and t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        scorer({"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(1, 3, 32, 32)},
               torch.tensor([56]), torch.randint(10, 300, (n, width)), torch.ones(n, width, dtype=torch.bool),
               torch.zeros(n, dtype=torch.long))
    text = P.TextShape(128, 352, 2, 4, 2, len(tok))
    row = P.RowShape(prompt=56, image=16, responses=n, response=width)
    shape = P.ModelShape(text, 0, 0, 0, 0, "float32")
    planned = P.activation_bytes(shape, row, P.RunShape(lora_rank=lora_rank))
    planned -= 4 * text.layers * P.prefix_copy_floats(text, row)  # alive during the forward, not kept for backward
    return sum(kept.values()), planned


@pytest.mark.parametrize("lora_rank", [0, 8])
def test_activations_are_what_autograd_keeps(lora_rank):
    measured, planned = _saved_bytes(lora_rank)
    assert planned == pytest.approx(measured, rel=0.02)


def test_split_plan():
    assert split_plan(["model=m", "plan=true", "devices=8", "setup=fsdp2"]) == (["devices=8", "setup=fsdp2"],
                                                                                ["model=m"])
    assert split_plan(["model=m", "devices=8"]) == (None, ["model=m", "devices=8"])


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_plan_runs_without_weights(family, family_model, train_pairs, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(family_model(family), folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    args = [f"model={folder}", f"pairs={train_pairs}"]
    assert main(["train", *args, f"out={tmp_path / 'run'}", "--plan", "--device-memory=1GiB", "--devices=2",
                 "--setup=zero3", "objective.kinds={error_injection: {}}"]) == 0
    text = capsys.readouterr().out
    assert "memory plan: train, zero3 on 2 device(s)" in text and "largest batch that fits 1.0 GiB" in text
    assert "weights" in text and "optimizer (AdamW)" in text and "peak per device" in text
    assert not (tmp_path / "run").exists()  # nothing written
    assert main(["score", *args, "plan=true"]) == 0
    assert "memory plan: score" in capsys.readouterr().out
