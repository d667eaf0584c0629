"""Tiny random-weight VLMs of several transformers families, and a processor loader that works offline for all.

Each family is built from configs (no hub), saved with ``save_pretrained`` and reloaded with
:func:`load_model` exactly as a user's real checkpoint would be. They exist so that generation (``unprior pairs``),
scoring and training are tested on more than one architecture: LLaVA (CLIP + Llama), Qwen2-VL and Qwen2.5-VL
(M-RoPE, ``image_grid_thw``), Idefics3 (SigLIP-style tower, pixel shuffle, ``pixel_attention_mask``).

Without torchvision, transformers 5.23 cannot build ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` (their video
processor needs it), see platform.md §2. :class:`Qwen2VLProcessorNoVideo` and :class:`Qwen2_5_VLProcessorNoVideo`
drop the video attribute; :func:`load_processor` falls back to them when ``AutoProcessor`` fails on a Qwen-VL
checkpoint, so users' real Qwen2-VL models load the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

from unprior.io import InputError

# Model classes are imported inside the builders: loading a processor should not import every architecture.


class _NoVideoSavesStandard:
    """Save a no-video Qwen-VL processor under the standard class names, so that plain transformers loads it.

    ``processor_config.json`` and ``tokenizer_config.json`` name the stock processor (``Qwen2VLProcessor``, ...) and
    ``processor_config.json`` carries a ``video_processor`` entry (``Qwen2VLVideoProcessor``, with the image
    processor's patch geometry): with torchvision installed, ``AutoProcessor.from_pretrained`` then builds the real
    processor, as for a hub Qwen-VL checkpoint. Without torchvision :func:`load_processor` still falls back to the
    subclass (docs/pairs.md, "Your own Qwen-VL folder").
    """

    standard_name: str
    VIDEO_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "do_convert_rgb")

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)  # the standard entry this class writes; there is no video processor here
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()  # type: ignore[misc]
        out["processor_class"] = self.standard_name
        image = out.get("image_processor") or {}
        out.setdefault("video_processor", {
            "video_processor_type": "Qwen2VLVideoProcessor",
            **{k: image[k] for k in self.VIDEO_KEYS if k in image},
        })
        return out

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        saved = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)  # type: ignore[misc]
        self.tokenizer._set_processor_class(self.standard_name)  # type: ignore[attr-defined]
        config = Path(save_directory) / "tokenizer_config.json"
        if config.is_file():
            data = json.loads(config.read_text())
            if "processor_class" in data:
                data["processor_class"] = self.standard_name
                config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return saved


class Qwen2VLProcessorNoVideo(_NoVideoSavesStandard, Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without the video processor (which needs torchvision; platform.md §2).

    ``ProcessorMixin`` reads its attributes from this signature, so the video attribute disappears; save and
    ``from_pretrained`` work and give identical ids. What it saves names ``Qwen2VLProcessor``.
    """

    standard_name = "Qwen2VLProcessor"


class Qwen2_5_VLProcessorNoVideo(_NoVideoSavesStandard, Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (platform.md §2); saves as ``Qwen2_5_VLProcessor``."""

    standard_name = "Qwen2_5_VLProcessor"


NO_VIDEO_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": Qwen2VLProcessorNoVideo,
    "qwen2_5_vl": Qwen2_5_VLProcessorNoVideo,
}
"""``config.json`` ``model_type`` -> the processor subclass :func:`load_processor` falls back to."""

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


def _set_generation_ids(model, tokenizer: PreTrainedTokenizerBase) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def _build_llava(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    from unprior.models.tiny import build_tiny_llava

    return build_tiny_llava(tokenizer, vision_hidden=32, text_hidden=64, seed=seed)  # type: ignore[arg-type]


def _qwen_text(tokenizer: PreTrainedTokenizerBase, hidden: int) -> dict[str, Any]:
    # mrope_section must sum to head_dim / 2 (hidden 64, 4 heads -> 8); platform.md §3.
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


def _qwen_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_TOKENS))
    return {
        "vision_start_token_id": ids[0],
        "image_token_id": ids[1],
        "vision_end_token_id": ids[2],
        "video_token_id": ids[3],
    }


def _qwen_processor(cls: type[ProcessorMixin], tokenizer: PreTrainedTokenizerBase):
    from transformers import Qwen2VLImageProcessorPil

    # A 56 px image -> 16 patches of 14 px -> 4 image tokens after the 2x2 merge.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56)
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def _build_qwen2_vl(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2VLConfig(text_config=_qwen_text(tokenizer, 64), vision_config=vision, **_qwen_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    return model, _qwen_processor(Qwen2VLProcessorNoVideo, tokenizer)


def _build_qwen2_5_vl(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

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
    config = Qwen2_5_VLConfig(text_config=_qwen_text(tokenizer, 64), vision_config=vision, **_qwen_ids(tokenizer))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    return model, _qwen_processor(Qwen2_5_VLProcessorNoVideo, tokenizer)


def _build_idefics3(tokenizer: PreTrainedTokenizerBase, seed: int = 0):
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

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
    config = Idefics3Config(
        text_config=text,
        vision_config=vision,
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=tokenizer.chat_template,
    )
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
    from unprior.models.tokenizer import train_tokenizer

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
        ``(model, processor)``; save both with :func:`unprior.models.tiny.save_model`, load with :func:`load_model`.
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


def _model_type(path: str | Path) -> str | None:
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("model_type")


def require_model_dir(path: str | Path) -> None:
    """InputError when ``path`` names a local folder (it exists, or looks like a path) that is not a model folder.

    A bare name given as a string (``llava-hf/llava-1.5-7b-hf``) is left to transformers (a hub id, from its cache
    offline); a ``Path`` is always a folder.
    """
    p = Path(path)
    looks_local = isinstance(path, Path) or p.exists() or str(path).startswith((".", "/", "~")) or len(p.parts) > 2
    if not looks_local:
        return
    if not p.is_dir():
        raise InputError(f"model {path}: no such folder; pass a model folder (config.json, weights, processor) or a "
                         "hub id")
    if not (p / "config.json").is_file():
        raise InputError(f"model {path}: no config.json; pass a model folder saved with save_pretrained")


def require_chat_template(processor: Any, path: str | Path) -> None:
    """InputError when the processor has no chat template: every stage builds prompts with it, so a folder without
    one is refused when loaded, not at the first generation."""
    if not getattr(processor, "chat_template", None):
        raise InputError(f"model {path}: the processor has no chat template (no chat_template.jinja or "
                         "chat_template in its processor/tokenizer config); save the processor with its template")


def load_processor(path: str | Path, *, trust_remote_code: bool = False):
    """``AutoProcessor.from_pretrained(path)``, falling back to the no-video Qwen-VL processors (platform.md §2).

    ``AutoProcessor`` cannot know the subclass a tiny Qwen model was saved with, and cannot build the stock Qwen-VL
    processors without torchvision; in both cases it fails or returns a bare tokenizer. Then the checkpoint's
    ``model_type`` picks :data:`NO_VIDEO_PROCESSORS`. A folder that is not a model's, or whose processor has no chat
    template, is refused (InputError).
    """
    processor = _load_processor(path, trust_remote_code)
    require_chat_template(processor, path)
    return processor


def _load_processor(path: str | Path, trust_remote_code: bool):
    require_model_dir(path)
    model_type = _model_type(path)
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (AttributeError, TypeError, ImportError, ValueError, OSError):
        processor = None
    if isinstance(processor, ProcessorMixin) and getattr(processor, "image_processor", None) is not None:
        return processor
    if model_type in NO_VIDEO_PROCESSORS:
        return NO_VIDEO_PROCESSORS[model_type].from_pretrained(path)
    if processor is None:  # re-raise AutoProcessor's own error
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return processor


def load_model(path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None):
    """Any image-text-to-text model + processor from a local dir (or hub id), Qwen-VL without torchvision too."""
    from transformers import AutoModelForImageTextToText

    processor = load_processor(path, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
    except Exception as e:  # safetensors' own error type is not an OSError: catch what loading raises
        if not Path(path).is_dir():
            raise
        raise InputError(f"model {path}: the weights cannot be loaded ({type(e).__name__}: {_first_line(e)}); the "
                         "folder is damaged or incomplete (a truncated model.safetensors?): copy or save it "
                         "again") from None
    return model, processor


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
