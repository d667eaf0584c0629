"""Random-weight models with the exact architectures users run, built from published config numbers (no hub).

:func:`build_smolvlm_256m` is SmolVLM-256M-Instruct (Idefics3: SigLIP 768 wide x 12 layers at 512 px, patch 16,
pixel shuffle 4 -> 64 tokens per tile; Llama 576 wide x 30 layers, 9 heads, 3 KV heads, vocabulary 49,280), with
image splitting on (longest edge 2048: up to 4 x 4 tiles plus the global one) or off (one 512 px tile).
:func:`build_qwen2_vl_2b` is Qwen2-VL-2B-Instruct (ViT 1280 x 32 at patch 14, 2x2 merge; Qwen2 1536 x 28,
vocabulary 151,936). The tokenizer is a local BPE (:func:`real_tokenizer`) trained to the model's vocabulary size,
so generated ids decode to text. They exist to measure time and memory at real sizes (bench/real_sizes.py,
docs/pairs.md "Real sizes"); the weights are random, so the answers are noise.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from unprior.models.families import Qwen2VLProcessorNoVideo
from unprior.models.tiny import IDEFICS3_TOKENS, QWEN_TOKENS, qwen_ids, set_generation_ids

SMOLVLM_VOCAB = 49_280
QWEN2_VL_VOCAB = 151_936
SMOLVLM_GRID = 4
"""Largest tile grid at longest edge 2048 / tile 512."""


def _tile_tokens() -> tuple[str, ...]:
    return tuple(f"<row_{r}_col_{c}>" for r in range(1, SMOLVLM_GRID + 1) for c in range(1, SMOLVLM_GRID + 1))


def real_tokenizer(vocab_size: int, image_tokens: tuple[str, ...], image_part: str, seed: int = 0
                   ) -> PreTrainedTokenizerBase:
    """A local BPE of up to ``vocab_size`` tokens: English prompts plus seeded pseudo-words (a few seconds). The corpus
    yields about 75,000 merges, so a larger vocabulary (Qwen2-VL's 151,936) leaves embedding rows no token uses, as
    Qwen2-VL's own tokenizer does (151,657 tokens); the embedding and LM head keep the model's full size."""
    from unprior.models.tokenizer import train_tokenizer
    from unprior.world.base import vocabulary_corpus

    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + list("aeiou")
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 5))) for _ in range(60_000)]
    corpus = [" ".join(rng.choice(words) for _ in range(50)) for _ in range(8_000)]
    tok = train_tokenizer(vocabulary_corpus() * 20 + corpus, vocab_size, image_tokens=image_tokens,
                          image_part=image_part)
    if len(tok) > vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens, more than {vocab_size}")
    return tok


def smolvlm_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    """SmolVLM-256M-Instruct's ``Idefics3Config`` (its published config.json numbers), ids from ``tokenizer``."""
    from transformers import Idefics3Config

    vision = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 512,
        "patch_size": 16,
    }
    text = {
        "model_type": "llama",
        "vocab_size": SMOLVLM_VOCAB,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 100_000.0},
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return Idefics3Config(text_config=text, vision_config=vision, scale_factor=4, tie_word_embeddings=False,
                          image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                          pad_token_id=tokenizer.pad_token_id)


def smolvlm_tokenizer() -> PreTrainedTokenizerBase:
    """A 49,280-token BPE with Idefics3's image tokens and the tile tokens (``<row_r_col_c>``) as single tokens."""
    return real_tokenizer(SMOLVLM_VOCAB, IDEFICS3_TOKENS + _tile_tokens(), "<image>")


def smolvlm_processor(tokenizer: PreTrainedTokenizerBase, splitting: bool) -> Any:
    """SmolVLM-256M's processor: 512 px tiles of 64 tokens; splitting resizes to longest edge 2048 first."""
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 4 * 512 if splitting else 512},
        max_image_size={"longest_edge": 512},
        do_image_splitting=splitting,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=64,
                             chat_template=tokenizer.chat_template)


def build_smolvlm_256m(tokenizer: PreTrainedTokenizerBase | None = None, *, splitting: bool = True,
                       seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(model, processor)`` of SmolVLM-256M-Instruct's architecture with random weights (about 256M
    parameters, 1 GB in fp32)."""
    from transformers import Idefics3ForConditionalGeneration

    tokenizer = tokenizer or smolvlm_tokenizer()
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(smolvlm_config(tokenizer)).to(dtype)
    set_generation_ids(model, tokenizer)
    return model.eval(), smolvlm_processor(tokenizer, splitting)


def qwen2_vl_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Qwen2-VL-2B-Instruct's ``Qwen2VLConfig`` (its published config.json numbers), ids from ``tokenizer``."""
    from transformers import Qwen2VLConfig

    vision = {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "mlp_ratio": 4,
        "num_heads": 16,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    text = {
        "vocab_size": QWEN2_VL_VOCAB,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **qwen_ids(tokenizer))


def build_qwen2_vl_2b(tokenizer: PreTrainedTokenizerBase | None = None, *, seed: int = 0,
                      dtype: torch.dtype = torch.bfloat16) -> tuple[Any, Any]:
    """``(model, processor)`` of Qwen2-VL-2B-Instruct's architecture with random weights (2.2B parameters: 8.9 GB
    in fp32, 4.4 GB in bf16, the default here), and its processor's pixel range (3,136 to 12,845,056 pixels)."""
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tokenizer = tokenizer or real_tokenizer(QWEN2_VL_VOCAB, QWEN_TOKENS,
                                            "<|vision_start|><|image_pad|><|vision_end|>")
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in ``dtype``: a fp32 copy first would need 8.9 GB
    try:
        model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer))
    finally:
        torch.set_default_dtype(default)
    set_generation_ids(model, tokenizer)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16384)
    processor = Qwen2VLProcessorNoVideo(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=tokenizer.chat_template)
    return model.eval(), processor
