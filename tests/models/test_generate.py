"""Generation extras for the negative strategies: per-prompt pixel-tensor noise, NaPO views, text-only LMs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from unprior.models.generate import Prompt, _encode, chat_text, generate, pixel_slices
from unprior.models.tiny import build_tiny, family_tokenizer
from unprior.perturb import diffusion_noise_tensor

CORPUS = ["a red cube on the table", "What colour is the ball?", "There is a blue dog and a green cat."] * 20


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), c) for c in [(200, 20, 20), (20, 200, 20), (20, 20, 200)]]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_pixel_noise_is_per_prompt_and_seeded(family: str) -> None:
    _, processor = build_tiny(family, family_tokenizer(family, CORPUS))
    a, b, c = _images()
    clean = _encode(processor, [Prompt("q?", a), Prompt("q?", b), Prompt("q?", c)])
    noised = _encode(processor, [Prompt("q?", a), Prompt("q?", b, noise_step=900, noise_seed=7), Prompt("q?", c)])
    rows = pixel_slices(clean, 3)
    assert torch.equal(noised["pixel_values"][rows[0]], clean["pixel_values"][rows[0]])
    assert torch.equal(noised["pixel_values"][rows[2]], clean["pixel_values"][rows[2]])
    expected = diffusion_noise_tensor(clean["pixel_values"][rows[1]], 900, generator=torch.Generator().manual_seed(7))
    assert torch.equal(noised["pixel_values"][rows[1]], expected)
    alone = _encode(processor, [Prompt("q?", b, noise_step=900, noise_seed=7)])
    assert torch.equal(alone["pixel_values"], expected)  # independent of the batch it is in


def test_noise_and_views_generate_batched_like_single() -> None:
    tok = family_tokenizer("llava", CORPUS)
    model, processor = build_tiny("llava", tok)
    a, b, _ = _images()
    prompts = [
        Prompt("What colour?", a, noise_step=900, noise_seed=1),
        Prompt("", b),  # NaPO vision-biased view: the image alone
        Prompt("What colour?"),  # NaPO language-biased view: no image token at all
        Prompt("What colour?", b, noise_step=500, noise_seed=2),
    ]
    batched = generate(model, processor, prompts, batch_size=4, max_new_tokens=5, num_beams=2)
    assert batched == [generate(model, processor, [p], max_new_tokens=5, num_beams=2)[0] for p in prompts]
    assert "<image>" not in chat_text(processor, "What colour?", False)
    assert chat_text(processor, "", True).count("<image>") == 1
    with pytest.raises(ValueError, match="needs an image"):
        generate(model, processor, [Prompt("x", noise_step=3)])


def test_sampling_is_reproducible_with_the_seed() -> None:
    model, processor = build_tiny("llava", family_tokenizer("llava", CORPUS))
    prompts = [Prompt("What colour?", im) for im in _images()]
    kw = dict(max_new_tokens=6, do_sample=True, temperature=1.5, seed=3)
    assert generate(model, processor, prompts, **kw) == generate(model, processor, prompts, **kw)


def test_text_only_causal_lm_with_a_tokenizer_as_processor() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = family_tokenizer("llava", CORPUS)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    model = LlamaForCausalLM(config)
    out = generate(model, tok, [Prompt("Rewrite: a red cube.", system="Be brief."), Prompt("Hi")], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
