"""mDPO in the trainer: the ``mdpo`` preset trains; its conditional image term equals a hand-built naive computation
(full forwards of prompt + answer with the original and the corrupted image, trained policy vs untouched starting
model); the corrupted-image reference is cached like the rest (β and loss changes reuse it, a new corruption
rescores only the chosen answers)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unprior.formats.pairs import open_image, read_pairs
from unprior.losses import objective_preset
from unprior.models.families import load_model
from unprior.score.config import CorruptionConfig
from unprior.score.corrupt import corrupt_image
from unprior.train import trainer as trainer_module
from unprior.train.config import LoraSettings
from unprior.train.trainer import setup, train

from .helpers import config, metrics, reset_accelerate


def mdpo_config(model, pairs, out, **overrides):
    return config(model, pairs, out, **{"objective": objective_preset("mdpo"), **overrides})


def answer_logp(model, processor, prompt: str, image, answer: str) -> torch.Tensor:
    """log π(answer | prompt, image) from one full forward over prompt + answer (the naive way, by hand)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[[image]], return_tensors="pt")
    ids = processor.tokenizer(answer + processor.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    inputs = torch.cat([enc["input_ids"], torch.tensor([ids])], 1)
    logits = model(input_ids=inputs, pixel_values=enc["pixel_values"]).logits[0].double()
    start = enc["input_ids"].shape[1]
    return torch.log_softmax(logits[start - 1 : -1], -1).gather(1, torch.tensor(ids)[:, None]).sum()


def test_mdpo_trains_and_its_conditional_term_matches_a_naive_computation(family_model, train_pairs, tmp_path):
    model_dir = family_model("llava")
    out = tmp_path / "run"
    cfg = mdpo_config(model_dir, train_pairs, out, steps=4, lr=5e-3)
    run = setup(cfg)
    train(run)
    logged = [m for m in metrics(out) if "loss" in m]
    assert len(logged) == 4
    assert {"loss/conditional", "rewards/margins/conditional", "loss/anchor", "loss/error_injection"} <= set(logged[0])
    assert logged[0]["loss/conditional"] == pytest.approx(math.log(2), abs=1e-5)  # step 0: policy = reference
    assert all(math.isfinite(m["loss"]) for m in logged)

    # The trained policy's conditional term on rows 0-3, through the trainer (shared prefix, cached reference) ...
    positions = [0, 1, 2, 3]
    with torch.no_grad():
        got = trainer_module._objective(run, run.data.batch(positions)).metrics
    # ... and by hand: full forwards, the corrupted image made from the row's position, the reference recomputed.
    policy = run.accelerator.unwrap_model(run.scorer).model.eval()
    reference, processor = load_model(model_dir)
    reference.eval()
    pairs = read_pairs(train_pairs)
    beta = cfg.objective.beta
    losses, margins = [], []
    with torch.no_grad():
        for row in (run.data.rows[p] for p in positions):
            pair = pairs[row]
            image = open_image(pair.image)
            corrupted = corrupt_image(image, row, cfg.corruption)
            logps = {(name, which): answer_logp(model, processor, pair.prompt, img, pair.chosen)
                     for name, model in (("policy", policy), ("reference", reference))
                     for which, img in (("image", image), ("corrupted", corrupted))}
            chosen = logps["policy", "image"] - logps["reference", "image"]
            worse = logps["policy", "corrupted"] - logps["reference", "corrupted"]
            losses.append(-F.logsigmoid(beta * (chosen - worse)))
            margins.append(beta * (chosen - worse))
    assert float(got["loss/conditional"]) == pytest.approx(float(torch.stack(losses).mean()), abs=1e-5)
    assert float(got["rewards/margins/conditional"]) == pytest.approx(float(torch.stack(margins).mean()), abs=1e-5)
    assert abs(float(got["loss/conditional"]) - math.log(2)) > 1e-4  # the policy has moved: a real check


def test_mdpo_reference_cache_reuse_and_resume_key(family_model, train_pairs, tmp_path, scoring_calls):
    calls = scoring_calls
    model_dir = family_model("llava")

    def build(name: str, **overrides):
        reset_accelerate()
        return setup(mdpo_config(model_dir, train_pairs, tmp_path / name, **overrides))

    run = build("a")
    assert calls == {"pairs": 1, "corrupted": 1}
    batch = run.data.batch([0, 1])
    assert batch.corrupted_index.tolist() == [4, 5]  # two rows × (chosen, error_injection), then the corrupted
    assert len(batch.responses.prompt_lens) == 4  # each corrupted image has its own prompt (and prefix)
    objective = objective_preset("mdpo")
    objective.beta, objective.kinds["error_injection"].loss = 0.3, "ipo"
    build("b", objective=objective)  # β and the loss: everything from the cache
    assert calls == {"pairs": 1, "corrupted": 1}
    build("c", corruption=CorruptionConfig(kind="mask", mask_ratio=0.5))  # a new corruption: only the chosen answers
    assert calls == {"pairs": 1, "corrupted": 2}
    build("d", objective=objective_preset("dpo"), corruption=CorruptionConfig(kind="noise"))  # no conditional term
    assert calls == {"pairs": 1, "corrupted": 2}

    # Without the conditional term the corruption cannot change the numbers, so it is not part of the resume key.
    plain = config(model_dir, train_pairs, tmp_path / "e", objective=objective_preset("dpo"))
    other = config(model_dir, train_pairs, tmp_path / "e", objective=objective_preset("dpo"),
                   corruption=CorruptionConfig(seed=3))
    assert trainer_module._resume_key(plain) == trainer_module._resume_key(other)
    with_term = mdpo_config(model_dir, train_pairs, tmp_path / "e")
    assert trainer_module._resume_key(with_term) != trainer_module._resume_key(
        mdpo_config(model_dir, train_pairs, tmp_path / "e", corruption=CorruptionConfig(seed=3)))


def test_mdpo_with_the_naive_forward_gives_the_shared_prefix_losses(family_model, train_pairs, tmp_path):
    kw = dict(steps=2, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    train(setup(mdpo_config(family_model("qwen2_vl"), train_pairs, tmp_path / "prefix", **kw)))
    reset_accelerate()
    train(setup(mdpo_config(family_model("qwen2_vl"), train_pairs, tmp_path / "naive", method="naive", **kw)))
    for a, b in zip(metrics(tmp_path / "prefix"), metrics(tmp_path / "naive"), strict=True):
        assert a["loss/conditional"] == pytest.approx(b["loss/conditional"], abs=1e-5)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
