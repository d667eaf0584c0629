"""The ``hf`` backend: transformers ``generate``, batched with left padding, on any local or hub model.

Vision-language models load through ``AutoModelForImageTextToText`` and the processor through
:func:`unprior.models.families.load_processor` (which also handles Qwen-VL without torchvision; docs/pairs.md,
"Model families").
A checkpoint that is not an image-text-to-text model is loaded as a causal LM with its tokenizer, for text prompts
(the error injector's LLM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from unprior.models.backends import BackendConfig, Decoding, model_revision
from unprior.models.families import load_processor
from unprior.models.generate import Prompt, generate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_generator(path: str, *, dtype: torch.dtype, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(model, processor) for an image-text-to-text checkpoint, else (causal LM, tokenizer)."""
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
    except ValueError:  # not an image-text-to-text architecture
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        return model, AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model, load_processor(path, trust_remote_code=trust_remote_code)


class HFBackend:
    """Batched transformers generation (see :func:`unprior.models.generate.generate`).

    Args:
        model: A loaded model, or a path / hub id to load.
        processor: Its processor (or tokenizer); loaded with the model when ``model`` is a path.
        batch_size: Prompts per ``generate`` call.
        max_batch_tokens: Memory budget per call (:func:`unprior.models.generate.batch_cost`); 0: none.
        name_or_path: What provenance records as the generator (default: ``model`` when it is a path).
    """

    name = "hf"
    pixel_noise = True

    def __init__(self, model: Any, processor: Any = None, *, batch_size: int = 32, max_batch_tokens: int = 0,
                 name_or_path: str = "") -> None:
        self.model, self.processor = model, processor
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.name_or_path = name_or_path or str(getattr(model.config, "_name_or_path", ""))
        self._revision: str | None = None

    @classmethod
    def from_config(cls, cfg: BackendConfig) -> HFBackend:
        device = resolve_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, device)
        model, processor = load_generator(cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        return cls(model.to(device), processor, batch_size=cfg.batch_size, max_batch_tokens=cfg.max_batch_tokens,
                   name_or_path=cfg.model)

    def info(self) -> dict[str, Any]:
        if self._revision is None:
            self._revision = model_revision(self.name_or_path, self.model.config)
        return {"backend": self.name, "generator": self.name_or_path, "revision": self._revision}

    def generate(self, prompts: Sequence[Prompt], decoding: Decoding, *, seed: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
        return generate(self.model, self.processor, prompts, batch_size=self.batch_size,
                        max_batch_tokens=self.max_batch_tokens, max_new_tokens=decoding.budget,
                        do_sample=decoding.do_sample, temperature=decoding.temperature, top_p=decoding.top_p,
                        top_k=decoding.top_k, num_beams=decoding.num_beams, seed=seed, on_batch=on_batch)

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
