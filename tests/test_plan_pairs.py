"""The memory plan of ``unprior pairs`` (unprior/plan.py; docs/pairs.md, "Memory plan for pairs"): each term against
hand-computed numbers, the calls against the processor's own encoding of a tiny Idefics3, ``--plan`` on model
folders that hold no weights, nothing written, and bad input refused in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from unprior import plan as P
from unprior.cli import main
from unprior.models.generate import RowShape

TEXT = P.TextShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=400)
MODEL = P.ModelShape(TEXT, params=1000, language=600, layer=100, lora_per_rank=50, dtype="float32",
                     vision_tokens_per_image_token=4, vision_hidden=32, vision_intermediate=64, vision_heads=2,
                     vision_block=16)
CALL = P.CallShape("vision_bias", "generator", rows=2, beams=3, prompt=30, new_tokens=8, image=8, pixels=1000)


def test_vision_tower_terms():
    assert P.tower_floats(MODEL, 16) == 4 * 32 + 2 * 64  # sdpa: 4 H + 2 I per tower token
    eager = dataclasses.replace(MODEL, vision_eager=True)
    assert P.tower_floats(eager, 16) == max(4 * 32 + 2 * 64, 6 * 32 + 2 * 2 * 16)
    assert P.tower_floats(eager, 1024) == 6 * 32 + 2 * 2 * 1024  # the scores dominate big tiles
    assert P.tower_bytes(MODEL, CALL) == 8 * 4 * 256 * 4  # 8 image tokens × merge 4, fp32


def test_language_model_terms():
    assert P.kv_cache_bytes(TEXT, 6, 38, 4) == 6 * 38 * 2 * 2 * 32 * 4  # sequences × length × layers × 2 × kv width
    assert P.prefill_bytes(TEXT, 6, 30, 2) == 6 * 30 * (4 * 64 + 3 * 128) * 2
    assert P.logits_bytes(TEXT, 6) == 4 * 6 * 400 * 4
    assert CALL.sequences == 6


def test_call_moments():
    kv_prompt, kv_all = 6 * 30 * 2 * 2 * 32 * 4, 6 * 38 * 2 * 2 * 32 * 4
    prefill, logits, tower = 6 * 30 * 640 * 4, 4 * 6 * 400 * 4, 8 * 4 * 256 * 4
    assert P.call_moments(MODEL, CALL) == {
        "noising": 0,  # vision_bias noises nothing
        "vision tower": 2 * 1000 + tower,  # the batch's image tensors and the tower's copy
        "prefill": 1000 + kv_prompt + prefill + logits,
        "decoding": 1000 + kv_all + logits,
    }
    weakened = P.CallShape("image_weakening", "generator", 2, 1, 30, 8, 8, 1000, weakened=True)
    assert P.call_moments(MODEL, weakened)["noising"] == 2000
    text_only = P.CallShape("language_bias", "generator", 3, 3, 12, 8, 0, 0)
    assert P.call_moments(MODEL, text_only)["vision tower"] == 0
    assert P.call_peak(MODEL, CALL) == max(P.call_moments(MODEL, CALL).values())


def _request(budget_rows: list[tuple[int, int]], beams: int = 1) -> P.Request:
    shapes = tuple(RowShape(prompt, image) for prompt, image in budget_rows)
    return P.Request("image_weakening", "generator", shapes, tuple(100 * (i + 1) for i in range(len(shapes))),
                     beams, 8, weakened=True)


def test_request_calls_follow_the_budget():
    request = _request([(30, 4), (20, 4), (25, 4), (10, 0)])
    # costs (unprior.models.generate.batch_cost): one row 30 + 8 + 4 × 4 = 54; rows 0-1: 2 × 38 + 32 = 108
    calls = P.request_calls(request, batch_size=8, budget=110, merge=4)
    assert [(c.rows, c.prompt, c.image, c.pixels) for c in calls] == [(2, 30, 8, 2 * 200), (2, 25, 4, 2 * 400)]
    assert all(c.weakened and c.new_tokens == 8 for c in calls)
    no_budget = P.request_calls(request, batch_size=3, budget=0, merge=4)
    assert [c.rows for c in no_budget] == [3, 1]


def _inputs(budget: int = 0, host: int = 500) -> P.PairsInputs:
    return P.PairsInputs({"generator": MODEL}, (_request([(30, 4), (30, 4), (30, 4), (30, 4)]),),
                         {"generator": (8, budget)}, host, "cpu", samples=4, planned=4)


def test_peak_and_largest_budget():
    inputs = _inputs()
    calls = P.pairs_calls(inputs)
    assert [c.rows for c in calls] == [4]
    peak, worst = P.pairs_peak(inputs, calls)
    assert worst == calls[0] and peak == 500 + 1000 * 4 + P.call_peak(MODEL, calls[0])
    one_row = P.pairs_peak(inputs, P.pairs_calls(inputs, budget=1))[0]
    two_rows = P.pairs_peak(inputs, P.pairs_calls(inputs, budget=2 * 38 + 32))[0]
    assert one_row < two_rows < peak
    assert P.largest_budget(inputs, peak) == 0  # fits without a budget
    assert P.largest_budget(inputs, one_row - 1) is None  # not even one row per call
    budget = P.largest_budget(inputs, two_rows)
    assert 2 * 38 + 32 <= budget < 3 * 38 + 48  # two rows a call fit, three do not
    assert P.largest_budget(inputs, one_row) < 2 * 38 + 32


# --- on a tiny Idefics3 folder and a LLaVA JSON of five photos ---


def _dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (size, question) in enumerate([((40, 30), "What colour is it?"), ((30, 40), "Is there a frog?"),
                                           ((64, 48), "What colour is it?"), ((40, 30), "Describe the image."),
                                           ((48, 64), "Is there a frog?")]):
        Image.new("RGB", size, (40 * i, 100, 200)).save(root / "images" / f"p{i}.png")
        rows.append({"id": f"p{i}", "image": f"images/p{i}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": "A red apple."}]})
    (root / "data.json").write_text(json.dumps(rows))
    return root / "data.json"


def _weightless(model: Path, out: Path) -> Path:
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return out


def _args(data: Path, model: Path, *extra: str) -> list[str]:
    return [f"source={data}", f"out={data.parent / 'out'}", "strategies=[image_weakening,rules,vision_bias]",
            f"generator.model={model}", "generator.batch_size=2", "generator.max_batch_tokens=0",
            "image_weakening.decoding.max_new_tokens=8", "vision_bias.decoding.max_new_tokens=8", *extra]


def _files(*roots: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for root in roots for p in root.rglob("*")}


def test_calls_against_the_processor(family_model, tmp_path):
    from transformers import AutoModelForImageTextToText

    from unprior.config import load_config
    from unprior.models.families import load_processor
    from unprior.models.generate import chat_text
    from unprior.pairs.config import PairsConfig

    model = family_model("idefics3")
    data = _dataset(tmp_path / "data")
    inputs = P.pairs_inputs(load_config(PairsConfig, None, _args(data, _weightless(model, tmp_path / "m"))), 512)
    shape = inputs.models["generator"]
    loaded = AutoModelForImageTextToText.from_pretrained(model)
    assert shape.params == sum(p.numel() for p in loaded.parameters()) and shape.dtype == "float32"  # CPU: fp32
    decoded = sum(3 * w * h for w, h in [(40, 30), (30, 40), (64, 48), (40, 30), (48, 64)])
    assert inputs.host == P.CPU_PROCESS_BYTES + decoded and inputs.device == "cpu"
    calls = P.pairs_calls(inputs)
    assert [(c.strategy, c.rows, c.beams) for c in calls] == [("image_weakening", 2, 1), ("image_weakening", 2, 1),
                                                              ("image_weakening", 1, 1), ("vision_bias", 2, 3),
                                                              ("vision_bias", 2, 3), ("vision_bias", 1, 3)]
    processor = load_processor(model)
    processor.tokenizer.padding_side = "left"
    images = [Image.open(tmp_path / "data" / "images" / f"p{i}.png").convert("RGB") for i in (0, 1)]
    enc = processor(images=images, text=[chat_text(processor, q, True) for q in ("What colour is it?",
                                                                               "Is there a frog?")],
                    return_tensors="pt", padding=True)
    first = calls[0]
    assert first.weakened and first.new_tokens == 8
    assert first.prompt == enc["input_ids"].shape[1]
    assert first.image == int((enc["input_ids"] == loaded.config.image_token_id).sum())
    assert first.pixels == enc["pixel_values"].nbytes + enc["pixel_attention_mask"].nbytes
    # the hand-computed moments: Idefics3 32 px tiles of 8 px patches (16 tower tokens, 4 image tokens: merge 4),
    # tower H 32, I 64; Llama H 64, I 128, 2 layers, 2 KV heads of 16
    assert (shape.vision_tokens_per_image_token, shape.vision_hidden, shape.vision_intermediate) == (4, 32, 64)
    moments = P.call_moments(shape, first)
    assert moments["vision tower"] == 2 * first.pixels + first.image * 4 * (4 * 32 + 2 * 64) * 4
    assert moments["decoding"] == first.pixels + 2 * (first.prompt + 8) * 2 * 2 * 32 * 4 + 4 * 2 * shape.text.vocab * 4


def test_plan_runs_without_weights_and_writes_nothing(family_model, tmp_path, capsys):
    from pairs.tiny import build_tiny_text_llm

    data = _dataset(tmp_path / "data")
    model = _weightless(family_model("idefics3"), tmp_path / "m")
    llm = _weightless(build_tiny_text_llm(tmp_path / "llm-full"), tmp_path / "llm")
    before = _files(tmp_path)
    args = _args(data, model, "strategies=[image_weakening,rules,vision_bias,error_injection]",
                 "injector.backend=hf", f"injector.model={llm}", "error_injection.decoding.max_new_tokens=8")
    assert main(["pairs", *args, "--plan", "--device-memory=1GiB"]) == 0
    text = capsys.readouterr().out
    assert "memory plan: pairs, hf backend on cpu" in text and "5 of 5 samples" in text
    for line in ("weights (generator)", "weights (injector)", "process and images (CPU)", "rules", "generates nothing",
                 "error_injection", "largest call", "KV cache", "prefill layer", "peak per device",
                 "fits 1.0 GiB without a budget"):
        assert line in text, line
    assert _files(tmp_path) == before  # nothing written, nothing touched
    assert main(["pairs", *_args(data, model), "plan=true", "device_memory=1MiB"]) == 0
    assert "does not fit 1.0 MiB, not even one row per call" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [("generator.model=/nowhere/model", "no such folder"),
                                          ("--device-memory=lots", "not a memory size")])
def test_bad_input_is_one_line(bad, message, family_model, tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    args = _args(data, family_model("idefics3"))
    assert main(["pairs", *args, bad, "--plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("unprior pairs: ")
