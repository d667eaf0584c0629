"""Load any image-text-to-text model and its processor from a local folder (or a hub id), offline.

:func:`load_model` is how every stage loads a user's checkpoint, the embedded default and the tiny test families of
:mod:`unprior.models.tiny` alike.

Without torchvision, transformers 5.23 cannot build ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` (their video
processor needs it; docs/pairs.md, "Model families"). :class:`Qwen2VLProcessorNoVideo` and
:class:`Qwen2_5_VLProcessorNoVideo` drop the video attribute; :func:`load_processor` falls back to them when
``AutoProcessor`` fails on a Qwen-VL checkpoint, so users' real Qwen2-VL models load the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

from unprior.io import InputError


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
    """``Qwen2VLProcessor`` without the video processor (which needs torchvision).

    ``ProcessorMixin`` reads its attributes from this signature, so the video attribute disappears; save and
    ``from_pretrained`` work and give identical ids. What it saves names ``Qwen2VLProcessor``.
    """

    standard_name = "Qwen2VLProcessor"


class Qwen2_5_VLProcessorNoVideo(_NoVideoSavesStandard, Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor; saves as ``Qwen2_5_VLProcessor``."""

    standard_name = "Qwen2_5_VLProcessor"


NO_VIDEO_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": Qwen2VLProcessorNoVideo,
    "qwen2_5_vl": Qwen2_5_VLProcessorNoVideo,
}
"""``config.json`` ``model_type`` -> the processor subclass :func:`load_processor` falls back to."""

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
    """``AutoProcessor.from_pretrained(path)``, falling back to the no-video Qwen-VL processors.

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
