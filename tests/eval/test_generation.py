"""Generation backends: LoRA adapters load and merge, the model loads lazily, vLLM fails clearly when missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from unprior.config import ConfigError, from_dict
from unprior.eval.config import EvalConfig
from unprior.eval.generation import BackendError, make_generate_fn, model_info
from unprior.eval.registry import Request
from unprior.eval.runner import run_eval
from unprior.models.families import load_model
from unprior.models.generate import chat_text

from .helpers import ScriptedGenerator


def _inputs(processor, world):
    from PIL import Image

    image = Image.open(world / "images" / "test_cf" / "000000.png").convert("RGB")
    return processor(images=[image], text=[chat_text(processor, "What color is the apple?", True)],
                     return_tensors="pt")


@pytest.fixture(scope="module")
def adapter(tiny_base, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on the tiny base's language model, saved with PEFT."""
    from peft import LoraConfig, get_peft_model

    net, _ = load_model(tiny_base)
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                      init_lora_weights=False)
    peft_model = get_peft_model(net, lora).eval()
    out = tmp_path_factory.mktemp("adapter") / "lora"
    peft_model.save_pretrained(out)
    return out, peft_model


def test_lora_adapter_is_merged_into_the_base(tiny_base, tiny_world, adapter):
    path, peft_model = adapter
    cfg = from_dict(EvalConfig, {"benchmark": "world", "adapter": str(path), "out": "unused",
                                 "options": {"world_dir": str(tiny_world)}})  # model: the adapter's base
    gen = make_generate_fn(cfg)
    gen.load()
    assert not hasattr(gen.model, "peft_config")  # merged: a plain transformers model
    base, processor = load_model(tiny_base)
    enc = _inputs(processor, tiny_world)
    with torch.no_grad():
        merged, unmerged, plain = (m(**enc).logits for m in (gen.model, peft_model, base.eval()))
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert (merged - plain).abs().max() > 1e-3  # the adapter changes the model
    answer = gen([Request("x", tiny_world / "images" / "test_cf" / "000000.png", "What color is the apple?", 8)])
    assert len(answer) == 1 and isinstance(answer[0], str)
    assert model_info(str(path), "hf") == {"adapter_base": str(tiny_base), "adapter_merged": True}


def test_missing_model_and_bad_adapter_fail_clearly(tmp_path):
    gen = make_generate_fn(EvalConfig(benchmark="pope"))
    with pytest.raises(BackendError, match="set `model`"):
        gen([Request("x", None, "hi", 4)])
    with pytest.raises(BackendError, match=r"no adapter_config\.json"):
        model_info(str(tmp_path), "hf")


def test_model_loads_only_when_an_answer_is_missing(tiny_world, tmp_path, quiet_console):
    data = {"benchmark": "world", "model": str(tmp_path / "no-such-model"), "out": str(tmp_path / "run"),
            "limit": 2, "options": {"world_dir": str(tiny_world)}}
    cfg = from_dict(EvalConfig, data)
    run_eval(cfg, ScriptedGenerator(), console=quiet_console)
    gen = make_generate_fn(cfg)
    res = run_eval(cfg, gen, console=quiet_console)  # every answer is on disk: re-scored, nothing loaded
    assert res["n_generated"] == 0 and gen.model is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_says_so():
    gen = make_generate_fn(EvalConfig(benchmark="pope", backend="vllm", model="m"))
    with pytest.raises(BackendError, match="needs the vllm package"):
        gen([Request("x", None, "hi", 4)])


def test_vllm_backend_refuses_beam_search():
    with pytest.raises(BackendError, match="num_beams"):
        make_generate_fn(EvalConfig(benchmark="pope", backend="vllm", model="m", num_beams=3))
    with pytest.raises(ConfigError, match="backend"):
        from_dict(EvalConfig, {"benchmark": "pope", "backend": "tgi"})


def test_the_memory_budget_splits_a_batch_and_keeps_the_answers(tiny_base, tiny_world, monkeypatch):
    """``max_batch_tokens`` reaches the hf backend: a budget of one row's cost gives one row per generate call, with
    the same greedy answers as one call of ``batch_size`` rows."""
    import unprior.models.generate as generate

    calls, real = [], generate._batches

    def recorded(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(generate, "_batches", recorded)
    image = tiny_world / "images" / "test_cf" / "000000.png"
    requests = [Request(str(i), image, q, 6) for i, q in enumerate(["What color is the apple?", "Describe it."] * 2)]
    answers = {}
    for budget in (0, 1):
        cfg = from_dict(EvalConfig, {"benchmark": "world", "model": str(tiny_base), "out": "unused", "batch_size": 4,
                                     "max_batch_tokens": budget, "options": {"world_dir": str(tiny_world)}})
        answers[budget] = make_generate_fn(cfg)(requests)
    assert [len(b) for b in calls[0]] == [4] and [len(b) for b in calls[1]] == [1, 1, 1, 1]
    assert answers[0] == answers[1]
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        from_dict(EvalConfig, {"benchmark": "pope", "out": "x", "max_batch_tokens": -1}).validate()
