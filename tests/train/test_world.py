"""A short training on the world's pairs measurably raises held-out preference accuracy.

The world (unprior.world) is built small; pairs get one rule-based error_injection negative (a colour swap, BPO
style without an LLM). A tiny random LLaVA with the world's vocabulary is trained with DPO plus the SFT anchor, full
fine-tuning, 100 steps. Held-out = the in-distribution test split, never trained on. Accuracy = share of held-out
pairs whose chosen answer gets a higher summed log-prob than the negative under the policy: it starts at chance
(about 0.5) and must rise by at least 0.2.
"""

from __future__ import annotations

from score.helpers import world_pairs

from unprior.losses import objective_preset
from unprior.models.tiny import build_tiny_llava, save_model
from unprior.models.tokenizer import train_tokenizer
from unprior.train.config import LoraSettings
from unprior.train.trainer import setup, train
from unprior.world.base import vocabulary_corpus
from unprior.world.build import build_world
from unprior.world.config import WorldConfig

from .helpers import config, metrics


def test_training_raises_held_out_preference_accuracy(tmp_path):
    world = build_world(WorldConfig(out=str(tmp_path / "world"), n_train=300, n_test=50))
    model, processor = build_tiny_llava(train_tokenizer(vocabulary_corpus()), vision_hidden=32, text_hidden=64)
    save_model(model, processor, tmp_path / "model")
    train_pairs = world_pairs(world, "train", tmp_path / "train.parquet", limit=400)
    held_out = world_pairs(world, "test_id", tmp_path / "test.parquet", limit=100)
    objective = objective_preset("dpo")
    objective.sft_weight = 1.0
    out = tmp_path / "run"
    cfg = config(tmp_path / "model", train_pairs, out, eval_pairs=str(held_out), objective=objective,
                 lora=LoraSettings(enabled=False), batch_size=8, max_steps=100, lr=2e-3, warmup_ratio=0.05)
    train(setup(cfg))
    key = "eval/logp_accuracy/error_injection"
    accuracy = {m["step"]: m[key] for m in metrics(out) if key in m}
    assert accuracy[0] < 0.65
    assert accuracy[100] >= accuracy[0] + 0.2, accuracy
