"""Generation backends behind one small interface: ``hf`` (transformers), ``vllm`` (optional), ``openai`` (HTTP).

A backend turns :class:`~unprior.models.generate.Prompt` requests into answer strings, in order. Strategies never
see which backend runs: they build prompts, pick a :class:`Decoding`, and record :meth:`Backend.info` in each
negative's provenance. Backends are imported on demand, so neither vLLM nor the ``openai`` client is needed unless
used.

=========  =======================================  ==============================  ==============================
backend    what it runs                              pixel-tensor noise (BPO)        beams
=========  =======================================  ==============================  ==============================
hf         any AutoModelForImageTextToText (or a     yes (``Prompt.noise_step``)     yes
           causal LM for text prompts), batched
vllm       ``vllm.LLM`` offline engine,              no: noise the PIL image          yes (``LLM.beam_search``)
           ``multi_modal_data``
openai     any OpenAI-compatible chat endpoint       no: noise the PIL image          no
=========  =======================================  ==============================  ==============================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from unprior.models.generate import Prompt
from unprior.pairs.config import BackendConfig, DecodingConfig


@dataclass(frozen=True)
class Decoding:
    """Backend-neutral decoding parameters (a frozen copy of a :class:`DecodingConfig`)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1

    @classmethod
    def from_config(cls, cfg: DecodingConfig) -> Decoding:
        """A frozen copy; an unresolved ``max_new_tokens`` (null: ``unprior pairs`` sets it from the chosen answers
        before generating) keeps this class's default."""
        fields = {k: v for k, v in asdict(cfg).items() if v is not None}
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        """Only the fields that matter for this mode (what provenance records)."""
        d = asdict(self)
        if not self.do_sample:
            for k in ("temperature", "top_p", "top_k"):
                d.pop(k)
        return d


@runtime_checkable
class Backend(Protocol):
    """What every backend offers."""

    name: str
    pixel_noise: bool
    """Whether ``Prompt.noise_step`` is honoured (noise on the processor's pixel tensor). If not, strategies noise
    the PIL image instead."""

    def info(self) -> dict[str, Any]:
        """Provenance: ``backend``, ``generator`` (model id or path) and ``revision`` (commit or fingerprint)."""
        ...

    def generate(
        self,
        prompts: Sequence[Prompt],
        decoding: Decoding,
        *,
        seed: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers for ``prompts``, in order; ``on_batch(n)`` after every ``n`` finished prompts."""
        ...

    def close(self) -> None:
        """Free the model / connections."""
        ...


def model_revision(path: str, config: Any = None) -> str:
    """A short identifier of the exact weights: the hub commit when known, else a cheap local fingerprint.

    The fingerprint hashes ``config.json`` and, for every weight file, its name, size and first and last MiB. It
    changes whenever the weights are rewritten (a training checkpoint) without reading multi-GB files in full.
    """
    commit = getattr(config, "_commit_hash", None) if config is not None else None
    if commit:
        return str(commit)
    root = Path(path)
    if not root.is_dir():
        return "unknown"
    h = hashlib.sha256()
    for f in sorted(root.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt") and f.is_file():
            size = f.stat().st_size
            h.update(json.dumps([f.name, size]).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    return "local-" + h.hexdigest()[:16]


def make_backend(cfg: BackendConfig) -> Backend:
    """Build the backend ``cfg.backend`` names (importing only that backend's dependencies)."""
    cfg.validate()
    if not cfg.model:
        raise ValueError(f"the {cfg.backend} backend needs a model (a local path, hub id or served model name)")
    if cfg.backend == "hf":
        from unprior.pairs.backends.hf import HFBackend

        return HFBackend.from_config(cfg)
    if cfg.backend == "vllm":
        from unprior.pairs.backends.vllm import VLLMBackend

        return VLLMBackend.from_config(cfg)
    from unprior.pairs.backends.openai import OpenAIBackend

    return OpenAIBackend.from_config(cfg)
