"""Real-geometry benchmark shapes: LLaVA-1.5 and Qwen2-VL at reduced width, and their pairs data.

A :class:`Shape` fixes what decides the cost of a preference step at real sizes: image tokens per prompt (576 for
LLaVA-1.5's 336 px CLIP ViT-L/14), prompt length (image tokens + a short instruction, ≈ 600 tokens), answer length
(100–200 tokens), vocabulary (32k LLaVA / Llama-2, 152k Qwen2) and negatives per row; only the widths and depths are
reduced so that one CPU thread can run it. The model keeps the family's real architecture (CLIP + projector + Llama;
Qwen2-VL's vision transformer with 2×2 patch merging and M-RoPE), random weights.

The vocabulary is the model's (embedding rows and LM-head width); the tokenizer is a small local BPE, as a padded
vocabulary in real checkpoints (llava-1.5's is 32,064 for 32,002 tokens), so the LM head and the log-softmax cost
what a real vocabulary costs.

Qwen2-VL's image tokens are dynamic: each row's image gets its own size (a multiple of 28 px on each side), so rows
carry different numbers of image tokens around the shape's mean; LLaVA's are fixed by the image size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PROMPT = "Describe this image in detail: every object, its colour, its position and what it is doing."
_TEXT = """the a red green blue small large dog cat bird car tree house table chair window door person man woman child
ball cup plate book lamp sky cloud road grass water boat bike sign wall floor left right top bottom behind front near
next under over sitting standing holding looking white black yellow brown wooden metal open closed two three several
many bright dark round square tall short old new with and of on in is are"""
WORDS = tuple(_TEXT.split())
"""The answers' words (random sequences of them: the cost depends on lengths, not on the words)."""
NEGATIVE_KINDS = ("error_injection", "image_weakening", "language_bias", "vision_bias")
"""The kinds of the 1st..4th negative of a row (one objective kind each: the trainer takes one negative per kind)."""


@dataclass(frozen=True)
class Shape:
    """One benchmark geometry."""

    family: str
    """``llava`` or ``qwen2_vl``."""
    image_tokens: int
    """Image tokens per prompt (Qwen2-VL: the mean over rows; a square grid for LLaVA)."""
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 2
    vocab: int = 32_000
    answer_tokens: tuple[int, int] = (100, 200)
    """Inclusive range of answer lengths in tokens (uniform per response)."""
    negatives: int = 2
    """Negatives per row (1–4), each of its own kind; TRL gets one pair per negative."""
    tokenizer_vocab: int = 2_000
    text_intermediate: int = 0
    """MLP width of the language model (0: 4 × ``text_hidden``)."""
    vision_intermediate: int = 0
    """MLP width of the vision tower (0: 4 × ``vision_hidden``)."""
    vision_feature_layer: int = -1
    """LLaVA: the vision layer whose features go to the projector (LLaVA-1.5: -2)."""

    @property
    def grid(self) -> int:
        """LLaVA: patches per side (image tokens = grid²)."""
        return math.isqrt(self.image_tokens)

    def describe(self) -> str:
        lo, hi = self.answer_tokens
        tokens = f"{self.image_tokens} image tokens" + (" (mean, dynamic)" if self.family == "qwen2_vl" else "")
        return (f"{self.family}: {tokens}, text {self.text_hidden}×{self.text_layers} layers, vision "
                f"{self.vision_hidden}×{self.vision_layers}, vocabulary {self.vocab:,}, answers {lo}–{hi} tokens, "
                f"{self.negatives} negative(s) per row")


PRESETS: dict[str, Shape] = {
    "llava15": Shape("llava", image_tokens=576),
    "qwen2vl": Shape("qwen2_vl", image_tokens=576, vocab=151_936),
    "llava15_7b": Shape("llava", image_tokens=576, text_hidden=4096, text_layers=32, text_heads=32,
                        text_intermediate=11_008, vision_hidden=1024, vision_layers=24, vision_intermediate=4096,
                        vocab=32_064, vision_feature_layer=-2),
    "smoke": Shape("llava", image_tokens=16, text_hidden=64, text_layers=2, vision_hidden=32, vision_layers=1,
                   vocab=1000, answer_tokens=(10, 20), tokenizer_vocab=400),
}
"""LLaVA-1.5 (336 px, patch 14 → 24² = 576 image tokens, 32k vocabulary) and Qwen2-VL (dynamic resolution around 576
merged tokens, 151,936-token vocabulary), both at text width 256 × 4 layers, vision width 128 × 2 layers; and
LLaVA-1.5-7B's full shape (CLIP ViT-L/14-336 + Llama-2-7B, 7.06 B parameters) for bench/gpu.sh, and a tiny one for
its CPU smoke run."""


def preset(name: str, **changes) -> Shape:
    """A preset, with fields changed (``negatives=3``, ``image_tokens=256``)."""
    return replace(PRESETS[name], **changes)


# ----------------------------------------------------------------------------------------------------- models


def build_model(shape: Shape, tokenizer, device: str = "cpu", dtype: str = "float32"):
    """A random-weight model of ``shape`` (built on ``device`` in ``dtype``) and its processor."""
    import torch

    with torch.device(device):
        return (_llava if shape.family == "llava" else _qwen2_vl)(shape, tokenizer, getattr(torch, dtype))


def _text_config(shape: Shape, tokenizer) -> dict:
    return dict(vocab_size=shape.vocab, hidden_size=shape.text_hidden,
                intermediate_size=shape.text_intermediate or shape.text_hidden * 4,
                num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
                num_key_value_heads=shape.text_heads, max_position_embeddings=8192,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def _llava(shape: Shape, tokenizer, dtype):
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessorPil,
        LlavaProcessor,
    )

    from unprior.models.tiny import CLIP_MEAN, CLIP_STD

    if shape.grid**2 != shape.image_tokens:
        raise ValueError(f"LLaVA image tokens must be a square grid, got {shape.image_tokens}")
    patch, size = 14, 14 * shape.grid
    vision = CLIPVisionConfig(image_size=size, patch_size=patch, hidden_size=shape.vision_hidden,
                              intermediate_size=shape.vision_intermediate or shape.vision_hidden * 4,
                              num_hidden_layers=shape.vision_layers,
                              num_attention_heads=max(1, shape.vision_hidden // 64),
                              projection_dim=shape.vision_hidden)
    config = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**_text_config(shape, tokenizer)),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=shape.image_tokens, vision_feature_select_strategy="default",
                         vision_feature_layer=shape.vision_feature_layer)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    images = LlavaImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                    image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", chat_template=tokenizer.chat_template,
                               image_token="<image>", num_additional_image_tokens=1)
    return model, processor


def _qwen2_vl(shape: Shape, tokenizer, dtype):
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from unprior.models.families import Qwen2VLProcessorNoVideo
    from unprior.models.tiny import qwen_ids

    head_dim = shape.text_hidden // shape.text_heads
    section = [head_dim // 4, head_dim // 8, head_dim // 8]  # sums to head_dim / 2 (Qwen2-VL: 16/24/24 of 64)
    section[0] += head_dim // 2 - sum(section)
    text = {**_text_config(shape, tokenizer),
            "rope_parameters": {"rope_type": "default", "mrope_section": section, "rope_theta": 1e6}}
    vision = {"depth": shape.vision_layers, "embed_dim": shape.vision_hidden, "hidden_size": shape.text_hidden,
              "num_heads": max(1, shape.vision_hidden // 64), "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_ids(tokenizer))
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    most = 28 * 28 * 4 * shape.image_tokens  # any image of this shape's sizes keeps its own size
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=most)
    processor = Qwen2VLProcessorNoVideo(image_processor=images, tokenizer=tokenizer,
                                        chat_template=tokenizer.chat_template)
    return model, processor


def image_size(shape: Shape, rng: np.random.Generator) -> tuple[int, int]:
    """``(width, height)`` of one row's image: LLaVA's fixed square; Qwen2-VL a random aspect ratio (3:4 to 4:3 in
    merged-token grid units, 28 px each) with about ``image_tokens`` merged tokens."""
    if shape.family == "llava":
        return (14 * shape.grid,) * 2
    aspect = rng.uniform(0.75, 4 / 3)
    scale = rng.uniform(0.8, 1.2)  # ±20 % of the mean token count
    w = max(1, round(math.sqrt(shape.image_tokens * scale * aspect)))
    h = max(1, round(shape.image_tokens * scale / w))
    return 28 * w, 28 * h


# ----------------------------------------------------------------------------------------------------- data


def answer(rng: np.random.Generator, lengths: dict[str, int], tokens: int) -> str:
    """Random words whose byte-level BPE tokens add up to ``tokens`` (±1): a word's tokens do not depend on its
    neighbours, as the byte-level pre-tokenizer splits on the spaces."""
    words: list[str] = []
    total = 0
    while total < tokens:
        word = WORDS[rng.integers(len(WORDS))]
        words.append(word)
        total += lengths[word]
    return " ".join(words)


def word_lengths(tokenizer) -> dict[str, int]:
    """Tokens of each word as it appears after a space."""
    return {w: len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in WORDS}


def build(shape: Shape, root: Path, n_rows: int, seed: int = 0, device: str = "cpu",
          dtype: str = "float32") -> tuple[Path, Path]:
    """Save a random model of ``shape`` (built on ``device`` in ``dtype``) under ``root/model`` and ``n_rows`` pairs
    (``shape.negatives`` negatives per row, embedded noise images) as ``root/pairs.parquet``; reuse both when they
    exist."""
    from PIL import Image

    from unprior.formats.pairs import Negative, PairRow, write_pairs
    from unprior.models.tiny import family_tokenizer, save_model

    model_dir, pairs = root / "model", root / "pairs.parquet"
    if model_dir.is_dir() and pairs.is_file():
        return model_dir, pairs
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20 + [PROMPT]
    tokenizer = family_tokenizer(shape.family, corpus, shape.tokenizer_vocab)
    lengths = word_lengths(tokenizer)
    rng = np.random.default_rng(seed)
    lo, hi = shape.answer_tokens
    rows = []
    for i in range(n_rows):
        width, height = image_size(shape, rng)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
        texts = [answer(rng, lengths, int(rng.integers(lo, hi + 1)) - 1) for _ in range(1 + shape.negatives)]
        negatives = [Negative(t, kind) for t, kind in zip(texts[1:], NEGATIVE_KINDS, strict=False)]
        rows.append(PairRow(f"r{i}", buf.getvalue(), PROMPT, texts[0], negatives))
    model, processor = build_model(shape, tokenizer, device, dtype)
    save_model(model, processor, model_dir)
    write_pairs(rows, pairs)
    return model_dir, pairs
