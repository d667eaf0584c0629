"""Generation backends behind one small interface: ``hf`` (transformers), ``vllm`` (optional), ``openai`` (HTTP).

A backend turns :class:`~unprior.models.generate.Prompt` requests into answer strings, in order, decoding as a
:class:`Decoding` says. ``unprior pairs`` builds one per backend section (:class:`BackendConfig`: ``generator``,
``injector``) and records :meth:`Backend.info` in each negative's provenance; ``unprior eval run`` builds one from
its run config (:mod:`unprior.eval.generation`). Backends are imported on demand, so neither vLLM nor the ``openai``
client is needed unless used.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from unprior.config import check_choice, check_range, fail

if TYPE_CHECKING:
    from unprior.models.generate import Prompt

DEFAULT_MAX_NEW_TOKENS = 512
"""What a backend generates with when ``max_new_tokens`` is unset (``unprior pairs`` sets it before generating)."""


@dataclass
class Decoding:
    """How a model decodes (transformers ``generate`` / vLLM ``SamplingParams`` / OpenAI request fields): a strategy's
    ``decoding`` section in ``unprior pairs``, built from the run's flat keys in ``unprior eval run``."""

    max_new_tokens: int | None = None
    """Answer length budget in tokens. null: a cap that follows the task, from the chosen answers' lengths (3 tokens
    per word of the 95th-percentile answer, 32 to 1024: short for QA, long for detailed descriptions), printed at
    the start of the run. The papers use 1024 for detailed descriptions."""
    do_sample: bool = False
    """Sample instead of greedy / beam search."""
    temperature: float = 1.0
    """Sampling temperature (used when do_sample)."""
    top_p: float = 1.0
    """Nucleus sampling mass (used when do_sample)."""
    top_k: int = 0
    """Top-k cut-off for sampling (0: off)."""
    num_beams: int = 1
    """Beam width (greedy beam search when do_sample is off). Not supported by the openai backend."""

    def validate(self) -> None:
        if self.max_new_tokens is not None:
            check_range(self, "max_new_tokens", lo=1)
        check_range(self, "temperature", lo=0.0)
        check_range(self, "top_p", lo=0.0, hi=1.0)
        check_range(self, "top_k", lo=0)
        check_range(self, "num_beams", lo=1)
        if self.do_sample and self.temperature == 0:
            fail("temperature", "must be > 0 when do_sample is on (turn do_sample off for greedy decoding)")

    @property
    def budget(self) -> int:
        """``max_new_tokens``, or :data:`DEFAULT_MAX_NEW_TOKENS` while it is unset."""
        return self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS

    def as_dict(self) -> dict[str, Any]:
        """Only the fields that matter for this mode (what provenance records), the budget resolved."""
        d = asdict(replace(self, max_new_tokens=self.budget))
        if not self.do_sample:
            for k in ("temperature", "top_p", "top_k"):
                d.pop(k)
        return d


BACKENDS = ("hf", "vllm", "openai")


@dataclass
class BackendConfig:
    """A generation backend: a local model (hf, vllm) or an OpenAI-compatible chat endpoint (openai)."""

    backend: str = "hf"
    """hf (transformers generate, batched, left padded), vllm (offline engine; needs the vllm package), or openai
    (any OpenAI-compatible chat endpoint: vLLM, SGLang, ``transformers serve``, OpenAI)."""
    model: str = ""
    """Local directory or hub id (hf, vllm), or the model name the endpoint serves (openai)."""
    batch_size: int = 32
    """Prompts per ``generate`` call (hf) or per engine call (vllm)."""
    max_batch_tokens: int = 32_768
    """hf: memory budget of one ``generate`` call, in positions: beams x (longest prompt + max_new_tokens) per row
    plus the vision tower's patches (image tokens x pixel-shuffle / merge factor). A batch holds fewer than
    ``batch_size`` prompts where it binds (SmolVLM with image splitting: 2 rows of 13 tiles). 0: batch_size alone
    (docs/pairs.md, "Real sizes")."""
    dtype: str = "auto"
    """Weights dtype for hf / vllm: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."""
    device: str = "auto"
    """hf device: auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps."""
    trust_remote_code: bool = False
    """Allow custom modelling code from the model repository (hf, vllm)."""
    engine_args: dict[str, Any] = field(default_factory=dict)
    """Extra ``vllm.LLM(...)`` keyword arguments (tensor_parallel_size, gpu_memory_utilization, max_model_len, ...)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai: the endpoint's /v1 URL."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: environment variable holding the API key (unset: "EMPTY", for local servers). Never logged."""
    timeout_s: float = 120.0
    """openai: per-request timeout in seconds."""
    max_retries: int = 6
    """openai: retries of a transient failure (connection error, timeout, HTTP 408/409/429/5xx)."""
    backoff_s: float = 2.0
    """openai: first retry delay; doubles on each retry, capped at 60 s."""
    concurrency: int = 8
    """openai: requests in flight at once."""

    def validate(self) -> None:
        check_choice(self, "backend", BACKENDS)
        check_choice(self, "dtype", ("auto", "float32", "bfloat16", "float16"))
        check_range(self, "batch_size", lo=1)
        check_range(self, "max_batch_tokens", lo=0)
        check_range(self, "timeout_s", lo=0.001)
        check_range(self, "max_retries", lo=0)
        check_range(self, "backoff_s", lo=0.0)
        check_range(self, "concurrency", lo=1)
        if self.backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            fail("base_url", f"expected an http(s) URL, got {self.base_url!r}")


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

    def generate(self, prompts: Sequence[Prompt], decoding: Decoding, *, seed: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
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
        from unprior.models.backends.hf import HFBackend

        return HFBackend.from_config(cfg)
    if cfg.backend == "vllm":
        from unprior.models.backends.vllm import VLLMBackend

        return VLLMBackend.from_config(cfg)
    from unprior.models.backends.openai import OpenAIBackend

    return OpenAIBackend.from_config(cfg)
