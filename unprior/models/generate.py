"""Batched generation with any transformers image-text-to-text model and its processor (left padding).

This is the ``hf`` generation path shared by the world report, ``unprior pairs`` and ``unprior eval``: chat template
from the processor, images through the processor, one ``generate`` call per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class Prompt:
    """One generation request: an optional image and the user text (no image token; the template adds it)."""

    text: str
    image: Image.Image | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def chat_text(processor, text: str, has_image: bool) -> str:
    parts: list[dict[str, str]] = [{"type": "image"}] if has_image else []
    if text:
        parts.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": parts}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _encode(processor, batch: Sequence[Prompt]) -> dict[str, torch.Tensor]:
    texts = [chat_text(processor, p.text, p.image is not None) for p in batch]
    images = [p.image for p in batch if p.image is not None]
    if images and len(images) != len(batch):
        raise ValueError("a generation batch mixes prompts with and without images; group them first")
    tok = processor.tokenizer
    tok.padding_side = "left"
    if images:
        return processor(images=images, text=texts, return_tensors="pt", padding=True)
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


@torch.no_grad()
def generate(
    model,
    processor,
    prompts: Sequence[Prompt],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_beams: int = 1,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Answers for ``prompts`` in order. Greedy by default; prompts with and without images are batched apart."""
    model.eval()
    out: list[str | None] = [None] * len(prompts)
    groups: dict[bool, list[int]] = {True: [], False: []}
    for i, p in enumerate(prompts):
        groups[p.image is not None].append(i)
    gen = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams)
    if do_sample:
        gen.update(temperature=temperature, top_p=top_p)
        torch.manual_seed(seed)
    tok = processor.tokenizer
    for idx in groups.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            enc = _encode(processor, [prompts[i] for i in chunk])
            seqs = model.generate(**enc, **gen, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(seqs[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, t in zip(chunk, texts, strict=True):
                out[i] = t.strip()
            if on_batch is not None:
                on_batch(len(chunk))
    return [o or "" for o in out]
