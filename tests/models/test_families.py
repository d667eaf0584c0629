"""Every tiny family builds, saves, reloads offline and generates with an image (batched == one at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from unprior.models.families import FAMILIES, build_tiny, family_tokenizer, load_model, load_processor
from unprior.models.generate import Prompt, generate
from unprior.models.tiny import save_model

CORPUS = ["a red cube on the table", "What colour is the ball?", "There is a blue dog and a green cat."] * 20


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_build_save_reload_generate(family: str, tmp_path: Path) -> None:
    tokenizer = family_tokenizer(family, CORPUS)
    model, processor = build_tiny(family, tokenizer, seed=1)
    save_model(model, processor, tmp_path)
    reloaded, proc = load_model(tmp_path)
    assert type(proc).__name__ == type(processor).__name__
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    prompts = [
        Prompt("What colour?", Image.new("RGB", (40, 40), (250, 10, 10))),
        Prompt("What is on the table, and what colour is it?", Image.new("RGB", (56, 56), (10, 10, 250))),
        Prompt("", Image.new("RGB", (32, 32), (10, 250, 10))),
        Prompt("Text only question?"),
    ]
    batched = generate(reloaded, proc, prompts, batch_size=4, max_new_tokens=6)
    single = [generate(reloaded, proc, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert any(batched)


def test_tokenizer_must_hold_family_tokens() -> None:
    tokenizer = family_tokenizer("llava", CORPUS)
    with pytest.raises(ValueError, match="image tokens"):
        build_tiny("qwen2_vl", tokenizer)
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny("nope", CORPUS)


def test_load_processor_plain_llava(tmp_path: Path) -> None:
    model, processor = build_tiny("llava", CORPUS)
    save_model(model, processor, tmp_path)
    assert type(load_processor(tmp_path)).__name__ == "LlavaProcessor"
