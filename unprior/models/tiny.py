"""Tiny real transformers VLMs built from configs (random weights), saved and reloaded like any hub model.

The embedded default is a LLaVA: a tiny CLIP vision tower, a GELU projector and a tiny Llama. It is saved with
``save_pretrained`` and loads offline through ``AutoProcessor`` + ``AutoModelForImageTextToText``: the same code
path a user's real model takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

# CLIP's normalisation constants (the LLaVA image processor's defaults).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_vision_config(image_size: int, patch_size: int, hidden: int, layers: int) -> CLIPVisionConfig:
    """The tiny CLIP vision tower of :func:`build_tiny_llava` (also pretrained on its own: unprior.world.vision)."""
    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        projection_dim=hidden,
    )


def build_tiny_llava(
    tokenizer: PreTrainedTokenizerFast,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 128,
    text_layers: int = 2,
    text_heads: int = 4,
    seed: int = 0,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised tiny LLaVA and its processor (PIL image processor; no torchvision).

    The vision tower yields (image_size/patch_size)^2 patch features plus CLS; the "default" feature strategy drops
    CLS, and the processor's ``num_additional_image_tokens=1`` accounts for it, so the prompt gets exactly one
    image token per patch.
    """
    image_token = "<image>"
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    n_patches = (image_size // patch_size) ** 2
    vision = tiny_vision_config(image_size, patch_size, vision_hidden, vision_layers)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=text_hidden * 2,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=max(1, text_heads // 2),
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=n_patches,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=tokenizer.chat_template,
        image_token=image_token,
        num_additional_image_tokens=1,
    )
    return model, processor


def save_model(model: torch.nn.Module, processor: object, out: str | Path) -> None:
    """``save_pretrained`` model (safetensors) and processor into one directory."""
    model.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]
    processor.save_pretrained(out)  # type: ignore[attr-defined]
