"""Tiny real transformers VLMs built from configs (random weights), saved and reloaded like any hub model.

The embedded default is a LLaVA: a tiny CLIP vision tower, a GELU projector and a tiny Llama. It is saved with
``save_pretrained`` and loads offline through ``AutoProcessor`` + ``AutoModelForImageTextToText``: the same code
path a user's real model takes.

The tiny families (:data:`FAMILIES`, :func:`build_tiny`) exist so that generation (``unprior pairs``), scoring and
training are tested on more than one architecture: LLaVA (CLIP + Llama), Qwen2-VL and Qwen2.5-VL (M-RoPE,
``image_grid_thw``), Idefics3 (SigLIP-style tower, pixel shuffle, ``pixel_attention_mask``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaProcessor,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from unprior.models.families import Qwen2_5_VLProcessorNoVideo, Qwen2VLProcessorNoVideo
from unprior.models.tokenizer import train_tokenizer

# CLIP's normalisation constants (the LLaVA image processor's defaults).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_vision_config(image_size: int, patch_size: int, hidden: int, layers: int) -> CLIPVisionConfig:
    """The tiny CLIP vision tower of :func:`build_tiny_llava` (also pretrained on its own: unprior.world.vision)."""
    return CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden,
                            intermediate_size=hidden * 2, num_hidden_layers=layers,
                            num_attention_heads=max(1, hidden // 32), projection_dim=hidden)


def build_tiny_llava(tokenizer: PreTrainedTokenizerFast, *, image_size: int = 32, patch_size: int = 8,
                     vision_hidden: int = 64, vision_layers: int = 2, text_hidden: int = 128, text_layers: int = 2,
                     text_heads: int = 4, seed: int = 0) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised tiny LLaVA and its processor (PIL image processor; no torchvision).

    The vision tower yields (image_size/patch_size)^2 patch features plus CLS; the "default" feature strategy drops
    CLS, and the processor's ``num_additional_image_tokens=1`` accounts for it, so the prompt gets exactly one
    image token per patch.
    """
    image_token = "<image>"
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    n_patches = (image_size // patch_size) ** 2
    vision = tiny_vision_config(image_size, patch_size, vision_hidden, vision_layers)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=text_hidden * 2,
                       num_hidden_layers=text_layers, num_attention_heads=text_heads,
                       num_key_value_heads=max(1, text_heads // 2), max_position_embeddings=512,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                         image_seq_length=n_patches, vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    image_processor = LlavaImageProcessorPil(size={"shortest_edge": image_size},
                                             crop_size={"height": image_size, "width": image_size},
                                             image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", chat_template=tokenizer.chat_template,
                               image_token=image_token, num_additional_image_tokens=1)
    return model, processor


def save_model(model: torch.nn.Module, processor: object, out: str | Path) -> None:
    """``save_pretrained`` model (safetensors) and processor into one directory."""
    model.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]
    processor.save_pretrained(out)  # type: ignore[attr-defined]


QWEN_TOKENS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
IDEFICS3_TOKENS = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")


@dataclass(frozen=True)
class Family:
    """What the tokenizer needs for a family, and how to build the tiny model + processor."""

    image_tokens: tuple[str, ...]
    """Special tokens the family's processor looks up (added to the tokenizer)."""
    image_part: str
    """What the chat template writes for one ``{"type": "image"}`` part (the processor expands it)."""
    build: Callable[..., tuple[Any, Any]]
    """``build(tokenizer, seed=...) -> (model, processor)``."""


def _text_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def set_generation_ids(model, tokenizer: PreTrainedTokenizerBase) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def _build_llava(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    return build_tiny_llava(tokenizer, vision_hidden=32, text_hidden=64, seed=seed)  # type: ignore[arg-type]


def _qwen_text(tokenizer: PreTrainedTokenizerBase, hidden: int) -> dict[str, Any]:
    # mrope_section must sum to head_dim / 2 (hidden 64, 4 heads -> 8).
    return {
        **_text_ids(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rope_parameters": {"rope_type": "default", "mrope_section": [4, 2, 2], "rope_theta": 1e4},
    }


def qwen_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_TOKENS))
    return {
        "vision_start_token_id": ids[0],
        "image_token_id": ids[1],
        "vision_end_token_id": ids[2],
        "video_token_id": ids[3],
    }


def _qwen_processor(cls: type[ProcessorMixin], tokenizer: PreTrainedTokenizerBase):
    # A 56 px image -> 16 patches of 14 px -> 4 image tokens after the 2x2 merge.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56)
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def _build_qwen2_vl(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    vision = {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2VLConfig(text_config=_qwen_text(tokenizer, 64), vision_config=vision, **qwen_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, _qwen_processor(Qwen2VLProcessorNoVideo, tokenizer)


def _build_qwen2_5_vl(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(text_config=_qwen_text(tokenizer, 64), vision_config=vision, **qwen_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model, _qwen_processor(Qwen2_5_VLProcessorNoVideo, tokenizer)


def _build_idefics3(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    image_size, patch_size, scale = 32, 8, 2
    image_seq_len = (image_size // patch_size) ** 2 // scale**2
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    text = {
        **_text_ids(tokenizer),
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
    }
    config = Idefics3Config(text_config=text, vision_config=vision, scale_factor=scale,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                            pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": image_size},
                                                max_image_size={"longest_edge": image_size}, do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                                  chat_template=tokenizer.chat_template)
    return model, processor


FAMILIES: dict[str, Family] = {
    "llava": Family(("<image>",), "<image>", _build_llava),
    "qwen2_vl": Family(QWEN_TOKENS, "<|vision_start|><|image_pad|><|vision_end|>", _build_qwen2_vl),
    "qwen2_5_vl": Family(QWEN_TOKENS, "<|vision_start|><|image_pad|><|vision_end|>", _build_qwen2_5_vl),
    "idefics3": Family(IDEFICS3_TOKENS, "<image>", _build_idefics3),
}
"""The tiny families, by name (``model_type`` spelling)."""


def family_tokenizer(family: str, corpus: Iterable[str], vocab_size: int = 400) -> PreTrainedTokenizerBase:
    """A local BPE tokenizer with ``family``'s image tokens and a chat template rendering its image part."""
    spec = _family(family)
    return train_tokenizer(corpus, vocab_size, image_tokens=spec.image_tokens, image_part=spec.image_part)


def build_tiny(
    family: str, tokenizer_or_corpus: PreTrainedTokenizerBase | Iterable[str], *, seed: int = 0
) -> tuple[Any, Any]:
    """A randomly initialised tiny ``family`` model and its processor.

    Args:
        family: one of :data:`FAMILIES`.
        tokenizer_or_corpus: a tokenizer from :func:`family_tokenizer` (it must hold the family's image tokens),
            or an iterable of strings to train one on.
        seed: torch seed for the weights.

    Returns:
        ``(model, processor)``; save both with :func:`save_model`, load with
        :func:`unprior.models.families.load_model`.
    """
    spec = _family(family)
    if isinstance(tokenizer_or_corpus, PreTrainedTokenizerBase):
        tokenizer = tokenizer_or_corpus
        missing = [t for t in spec.image_tokens if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"tokenizer lacks {family} image tokens {missing}; build it with family_tokenizer()")
    else:
        tokenizer = family_tokenizer(family, tokenizer_or_corpus)
    return spec.build(tokenizer, seed=seed)


def _family(family: str) -> Family:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[family]
