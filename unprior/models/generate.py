"""Batched generation with any transformers image-text-to-text model and its processor (left padding).

This is the ``hf`` generation path shared by the world report, ``unprior pairs`` and ``unprior eval``: chat template
from the processor, images through the processor, one ``generate`` call per batch.

Beyond plain prompts it covers what the negative strategies need:

- BPO image weakening on the *processor's pixel tensor* (docs/papers.md, BPO step 2): a prompt with ``noise_step = t``
  gets forward-diffusion noise at step ``t`` on its own rows of ``pixel_values``, drawn from a generator seeded with
  its ``noise_seed``, so the noise does not depend on which other prompts share the batch;
- NaPO's views (docs/papers.md, NaPO part 1): a prompt without an image (no image token at all, N6) and an image
  with an empty question (the user turn is the image alone, N7);
- text-only causal LMs (the error injector's LLM): pass the tokenizer as ``processor``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from unprior.perturb import diffusion_noise_tensor


@dataclass(frozen=True)
class Prompt:
    """One generation request: an optional image and the user text (no image token; the template adds it)."""

    text: str
    image: Image.Image | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    system: str | None = None
    """Optional system message (the error injector's instructions go in the user turn; this is for chat LLMs)."""
    noise_step: int = 0
    """Diffusion step t of the noise added to this prompt's pixel tensor (0: none; BPO uses 900)."""
    noise_seed: int = 0
    """Seed of that noise (one ``torch.Generator`` per prompt)."""


def chat_messages(text: str, image: dict[str, Any] | None = None, system: str | None = None) -> list[dict[str, Any]]:
    """The chat for one user turn: ``[image part][text part]`` with an image part, a plain string without one.

    ``image`` is the image's content part: ``{"type": "image"}`` for a chat template (the processor expands it) or
    an ``image_url`` part for an OpenAI endpoint. An empty ``text`` with an image gives a user turn holding only the
    image (NaPO's vision-biased prompt). Text-only turns use string content, which every chat template accepts.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if image is None:
        messages.append({"role": "user", "content": text})
    else:
        messages.append({"role": "user", "content": [image] + ([{"type": "text", "text": text}] if text else [])})
    return messages


def chat_text(processor, text: str, has_image: bool, system: str | None = None) -> str:
    """The templated prompt string (generation prompt added) for ``processor`` (a processor or a tokenizer)."""
    messages = chat_messages(text, {"type": "image"} if has_image else None, system)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def tokenizer_of(processor):
    """The tokenizer inside a processor, or the object itself when it is a tokenizer (text-only LMs)."""
    return getattr(processor, "tokenizer", processor)


def pixel_slices(enc: dict[str, torch.Tensor], n: int) -> list[slice]:
    """Which rows of ``enc["pixel_values"]`` belong to each of the ``n`` prompts of a batch (one image each).

    Qwen-VL processors flatten every image's patches into one (sum of patches, D) tensor; ``image_grid_thw`` gives
    each image's patch count. Other processors (LLaVA's (B, C, H, W), Idefics3's (B, N, C, H, W)) put one leading
    row per prompt.
    """
    pixels = enc["pixel_values"]
    if "image_grid_thw" in enc:
        counts = [int(c) for c in enc["image_grid_thw"].prod(dim=-1)]
        if len(counts) != n or sum(counts) != pixels.shape[0]:
            raise ValueError(f"image_grid_thw {counts} does not match {n} prompts / {pixels.shape[0]} rows")
        ends = list(itertools.accumulate(counts))
        return [slice(end - c, end) for c, end in zip(counts, ends, strict=True)]
    if pixels.shape[0] != n:
        raise ValueError(f"pixel_values has {pixels.shape[0]} leading rows for {n} prompts; cannot noise per prompt")
    return [slice(i, i + 1) for i in range(n)]


def _noise_pixels(enc: dict[str, torch.Tensor], batch: Sequence[Prompt]) -> None:
    if not any(p.noise_step for p in batch):
        return
    pixels = enc["pixel_values"]
    noised = pixels.clone()
    for p, rows in zip(batch, pixel_slices(enc, len(batch)), strict=True):
        if p.noise_step:
            gen = torch.Generator().manual_seed(p.noise_seed)
            noised[rows] = diffusion_noise_tensor(pixels[rows], p.noise_step, generator=gen)
    enc["pixel_values"] = noised


def _encode(processor, batch: Sequence[Prompt]) -> dict[str, torch.Tensor]:
    texts = [chat_text(processor, p.text, p.image is not None, p.system) for p in batch]
    images = [p.image for p in batch if p.image is not None]
    if images and len(images) != len(batch):
        raise ValueError("a generation batch mixes prompts with and without images; group them first")
    tok = tokenizer_of(processor)
    tok.padding_side = "left"
    if images:
        enc = processor(images=images, text=texts, return_tensors="pt", padding=True)
        _noise_pixels(enc, batch)
        return enc
    if any(p.noise_step for p in batch):
        raise ValueError("noise_step needs an image")
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _to_model(enc, model) -> dict[str, Any]:
    """Move the batch to the model's device; floating tensors (pixels) to the model's dtype."""
    out = {}
    for k, v in enc.items():
        if isinstance(v, torch.Tensor):
            v = v.to(model.device, dtype=model.dtype if v.is_floating_point() else None)
        out[k] = v
    return out


def vision_merge(config: Any) -> int:
    """Vision-tower positions per image token: pixel shuffle (Idefics3 ``scale_factor``²), Qwen-VL's
    ``spatial_merge_size``², else 1 (LLaVA: one token per patch)."""
    if getattr(config, "scale_factor", None):
        return int(config.scale_factor) ** 2
    merge = getattr(getattr(config, "vision_config", None), "spatial_merge_size", None)
    return int(merge) ** 2 if merge else 1


@dataclass(frozen=True)
class RowShape:
    """What one prompt puts in a ``generate`` call: its prompt tokens (image tokens included) and image tokens."""

    prompt: int
    image: int = 0


def row_shapes(processor, prompts: Sequence[Prompt], image_token_id: int | None) -> list[RowShape]:
    """Each prompt's :class:`RowShape`, without building pixel tensors for the batch.

    The image part's length depends only on the image's size (every supported processor), so the processor runs
    once per distinct size, on a blank image of that size; the text is tokenized without its image.
    """
    tok = tokenizer_of(processor)
    texts = [chat_text(processor, p.text, p.image is not None, p.system) for p in prompts]
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    parts: dict[tuple[int, int], tuple[int, int]] = {}
    shapes = []
    for p, n in zip(prompts, lengths, strict=True):
        if p.image is None:
            shapes.append(RowShape(n))
            continue
        if p.image.size not in parts:
            parts[p.image.size] = _image_part(processor, p.image.size, image_token_id)
        extra, image = parts[p.image.size]
        shapes.append(RowShape(n + extra, image))
    return shapes


def _image_part(processor, size: tuple[int, int], image_token_id: int | None) -> tuple[int, int]:
    """(tokens the processor adds when it expands one image of ``size``, image tokens among them)."""
    text = chat_text(processor, "", True)
    ids = processor(images=[Image.new("RGB", size)], text=[text], return_tensors="pt")["input_ids"]
    plain = len(tokenizer_of(processor)(text, add_special_tokens=False)["input_ids"])
    image = int((ids == image_token_id).sum()) if image_token_id is not None else 0
    return ids.shape[1] - plain, image


def batch_cost(shapes: Sequence[RowShape], *, num_beams: int, max_new_tokens: int, merge: int) -> int:
    """Positions a ``generate`` call holds at once: every beam of every row in the language model, padded to the
    longest prompt, plus every image's patches in the vision tower (image tokens x ``merge``; HF encodes the images
    once per row, before beam expansion). Both grow memory about alike per position at SmolVLM's size
    (docs/pairs.md, "Real sizes")."""
    if not shapes:
        return 0
    longest = max(s.prompt for s in shapes)
    return len(shapes) * num_beams * (longest + max_new_tokens) + merge * sum(s.image for s in shapes)


def budget_batches(shapes: Sequence[RowShape], *, batch_size: int, max_batch_tokens: int, num_beams: int,
                   max_new_tokens: int, merge: int) -> list[list[int]]:
    """Consecutive batches of at most ``batch_size`` rows whose :func:`batch_cost` stays within
    ``max_batch_tokens`` (0: no budget). A row over the budget on its own gets a batch of its own."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in range(len(shapes)):
        trial = [shapes[j] for j in [*current, i]]
        over = max_batch_tokens and batch_cost(trial, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                               merge=merge) > max_batch_tokens
        if current and (len(current) >= batch_size or over):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _groups(prompts: Sequence[Prompt]) -> list[list[int]]:
    """Indices of prompts with images, then without (each group is batched on its own)."""
    with_image = [i for i, p in enumerate(prompts) if p.image is not None]
    without = [i for i, p in enumerate(prompts) if p.image is None]
    return [g for g in (with_image, without) if g]


@torch.no_grad()
def generate(model, processor, prompts: Sequence[Prompt], *, batch_size: int = 64, max_batch_tokens: int = 0,
             max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             top_k: int = 0, num_beams: int = 1, seed: int = 0, on_batch: Callable[[int], None] | None = None
             ) -> list[str]:
    """Answers for ``prompts`` in order. Greedy by default; prompts with and without images are batched apart.

    Args:
        model: Any ``generate``-capable transformers model (image-text-to-text, or a causal LM for text prompts).
        processor: Its processor, or its tokenizer for a text-only model.
        prompts: Requests; see :class:`Prompt` for pixel noise and the NaPO views.
        batch_size: Prompts per ``generate`` call (left padded).
        max_batch_tokens: Memory budget of one call in positions (:func:`batch_cost`: beams x padded prompt and
            answer tokens, plus vision-tower patches); a batch holds fewer than ``batch_size`` prompts where it
            binds. 0: ``batch_size`` alone.
        max_new_tokens: Generation budget per answer.
        do_sample: Sample (with ``temperature``, ``top_p``, ``top_k``) instead of greedy / beam search.
        temperature: Sampling temperature (BPO image weakening: 0.2).
        top_p: Nucleus sampling mass.
        top_k: Top-k cut-off for sampling (0: off).
        num_beams: Beam width (NaPO generates its biased answers with 3 beams, greedy).
        seed: ``torch.manual_seed`` before generating, so a sampled call is reproducible for the same batches.
        on_batch: Called with the batch size after each ``generate`` call (progress bars).
    """
    model.eval()
    out: list[str] = [""] * len(prompts)
    gen: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams)
    if do_sample:
        gen.update(temperature=temperature, top_p=top_p, top_k=top_k)
    torch.manual_seed(seed)
    tok = tokenizer_of(processor)
    for idx in _groups(prompts):
        for batch in _batches(model, processor, [prompts[i] for i in idx], batch_size, max_batch_tokens, gen):
            chunk = [idx[j] for j in batch]
            enc = _to_model(_encode(processor, [prompts[i] for i in chunk]), model)
            seqs = model.generate(**enc, **gen, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(seqs[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            del enc, seqs  # nothing of a batch outlives it (pixels, ids, beams)
            for i, t in zip(chunk, texts, strict=True):
                out[i] = t.strip()
            if on_batch is not None:
                on_batch(len(chunk))
    return out


def _batches(model, processor, prompts: Sequence[Prompt], batch_size: int, max_batch_tokens: int,
             gen: dict[str, Any]) -> list[list[int]]:
    """Batches of ``prompts`` (indices): ``batch_size`` rows each, fewer where ``max_batch_tokens`` binds."""
    if not max_batch_tokens:
        return [list(range(s, min(s + batch_size, len(prompts)))) for s in range(0, len(prompts), batch_size)]
    config = model.config
    image_token_id = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    shapes = row_shapes(processor, prompts, image_token_id)
    return budget_batches(shapes, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                          num_beams=gen["num_beams"], max_new_tokens=gen["max_new_tokens"],
                          merge=vision_merge(config))
