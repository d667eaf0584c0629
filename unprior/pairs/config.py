"""Config dataclasses for the pairs stage's loaders and filters (the stage config composes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from unprior.config import Renamed, check_choice, check_range, fail

FORMATS = ("auto", "unprior", "llava", "hf", "rlaifv", "trl")
SCHEMA_FIELDS = ("id", "image", "prompt", "answer", "rejected")


@dataclass
class LoadConfig:
    """How to read a source dataset into :class:`unprior.pairs.schema.Sample` rows."""

    RENAMED: ClassVar[dict[str, Renamed]] = {"root": Renamed("image_root")}  # old keys, read until unprior 0.2

    format: str = "auto"
    """Source format: auto (sniffed from the path and its columns), unprior (``<split>.jsonl`` + ``images/``), llava
    (LLaVA / LLaMA-Factory sharegpt conversation JSON), hf (a ``datasets`` directory or parquet, columns mapped by
    ``columns``), rlaifv (RLAIF-V / RLAIF-V-Bias parquet), trl (TRL preference rows: prompt/chosen/rejected/images)."""
    split: str = "train"
    """Split to read: ``<split>.jsonl`` for the unprior format, the split of a saved ``DatasetDict``, or parquet
    files named ``<split>-*.parquet`` when a directory holds several splits."""
    image_root: str = ""
    """Directory that relative image paths are resolved against (and must stay inside). Empty: the dataset
    directory (unprior format) or the directory holding the JSON/parquet file."""
    max_pixels: int = 40_000_000
    """Largest image (width x height, read from the header before decoding) that is kept; larger ones are reported
    as decompression-bomb-sized and dropped. PIL itself refuses anything above 2 x Image.MAX_IMAGE_PIXELS."""
    check_images: bool = True
    """Open and verify every image at load time (missing, unreadable, oversized images are reported and dropped).
    Off: only path checks (exists, inside root) are done and a broken image fails later, at generation."""
    limit: int = 0
    """Stop after this many kept samples (0: all)."""
    llava_turns: str = "all"
    """Multi-turn LLaVA conversations: all (every human/gpt turn becomes its own sample, id suffixed ``#k`` from
    the second turn on) or first (the first turn only)."""
    columns: dict[str, str] = field(default_factory=dict)
    """For format hf: source column per sample field (id, image, prompt, answer, rejected) when the defaults
    (id/idx, image/images, prompt/question/instruction/query, answer/response/output/chosen, rejected) don't fit."""

    def validate(self) -> None:
        check_choice(self, "format", FORMATS)
        check_choice(self, "llava_turns", ("all", "first"))
        check_range(self, "max_pixels", lo=1)
        check_range(self, "limit", lo=0)
        if not self.split:
            fail("split", "must not be empty")
        for key in self.columns:
            if key not in SCHEMA_FIELDS:
                fail(f"columns.{key}", f"unknown sample field; known fields: {', '.join(SCHEMA_FIELDS)}")


@dataclass
class FilterConfig:
    """Which generated negatives are dropped before pairs are written (see :mod:`unprior.pairs.filters`)."""

    max_words: int = 350
    """Drop negatives longer than this many whitespace-separated words (BPO drops samples with any completion over
    350 words, papers.md §1.2 step 4); 0 disables the limit."""

    def validate(self) -> None:
        check_range(self, "max_words", lo=0)


BACKENDS = ("hf", "vllm", "openai")


@dataclass
class DecodingConfig:
    """How a strategy decodes (transformers ``generate`` / vLLM ``SamplingParams`` / OpenAI request fields)."""

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


@dataclass
class WeakeningDecoding(DecodingConfig):
    """BPO image weakening decodes by sampling at temperature 0.2 (papers.md §1.2 step 2)."""

    do_sample: bool = True
    """Sample instead of greedy / beam search."""
    temperature: float = 0.2
    """Sampling temperature (BPO: 0.2)."""


@dataclass
class InjectionDecoding(DecodingConfig):
    """BPO's error injector samples at temperature 0.8, top-p 0.95 (papers.md §1.2 step 3)."""

    do_sample: bool = True
    """Sample instead of greedy decoding."""
    temperature: float = 0.8
    """Sampling temperature (BPO: 0.8)."""
    top_p: float = 0.95
    """Nucleus sampling mass (BPO: 0.95)."""


@dataclass
class BiasDecoding(DecodingConfig):
    """NaPO generates its biased answers greedily with 3 beams (papers.md §2.2)."""

    num_beams: int = 3
    """Beam width (NaPO: 3)."""


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


@dataclass
class InjectorBackendConfig(BackendConfig):
    """The error injector's backend: by default an OpenAI-compatible endpoint serving a text LLM."""

    backend: str = "openai"
    """hf (a local causal LM or VLM, batched), vllm (offline engine), or openai (any OpenAI-compatible chat
    endpoint: vLLM, SGLang, ``transformers serve``, OpenAI)."""


@dataclass
class ImageWeakeningConfig:
    """BPO negative type A: the generator answers from a weakened image (papers.md §1.2 step 2, §4 B1)."""

    perturbation: str = "diffusion_noise"
    """Image perturbation: diffusion_noise (BPO), blur, patch_mask or blank (see ``unprior.perturb``)."""
    params: dict[str, Any] | None = None
    """Keyword parameters of the perturbation, over its defaults: ``{t: 900}`` (diffusion step), ``{sigma: 3}``
    (blur), ``{ratio: 0.5, patch: 16}`` (patch_mask), ``{colour: white}`` (blank). Unset (null): the chosen
    perturbation's defaults, so switching ``perturbation`` alone works."""
    space: str = "auto"
    """Where diffusion noise is added: tensor (the processor's normalised pixel_values, as BPO does; hf only), image
    (PIL pixels, any backend), or auto (tensor when the backend can, else image)."""
    decoding: WeakeningDecoding = field(default_factory=WeakeningDecoding)

    def validate(self) -> None:
        check_choice(self, "perturbation", ("diffusion_noise", "blur", "patch_mask", "blank"))
        check_choice(self, "space", ("auto", "tensor", "image"))
        if self.space == "tensor" and self.perturbation != "diffusion_noise":
            fail("space", "tensor space is only for diffusion_noise")
        try:  # resolved in place: what the run uses (and hashes, and records) is the full parameter set
            self.params = self.kwargs()
        except ValueError as e:
            fail("params", str(e))
        self.decoding.validate()

    def kwargs(self) -> dict[str, Any]:
        """The perturbation's keyword parameters: its defaults updated with ``params``."""
        from unprior.perturb import perturbation_params

        return perturbation_params(self.perturbation, self.params)


@dataclass
class ErrorInjectionConfig:
    """BPO negative type B: a text LLM rewrites the reference answer with plausible errors (papers.md §1.3)."""

    template: str = "auto"
    """Prompt template: description (rewrite a description), qa (answer as if for a similar image), or auto
    (description for describe/caption prompts and rows with ``task: describe``, else qa; papers.md §4 B6)."""
    decoding: InjectionDecoding = field(default_factory=InjectionDecoding)

    def validate(self) -> None:
        check_choice(self, "template", ("auto", "description", "qa"))
        self.decoding.validate()


RULE_EDITS = ("insert_object", "swap_attribute", "flip_existence")


@dataclass
class RulesConfig:
    """Error injection without an LLM, from the dataset's own statistics (see ``unprior.pairs.rules``)."""

    edits: list[str] = field(default_factory=lambda: list(RULE_EDITS))
    """Allowed single edits: insert_object (add the most co-occurring absent object), swap_attribute (replace a
    colour with the object's most common other colour), flip_existence (invert a yes/no existence answer)."""
    max_negatives: int = 1
    """Negatives per sample (each a different single edit, drawn in a seeded order)."""

    def validate(self) -> None:
        if not self.edits:
            fail("edits", "choose at least one edit")
        for e in self.edits:
            if e not in RULE_EDITS:
                fail("edits", f"unknown edit {e!r}; known: {', '.join(RULE_EDITS)}")
        check_range(self, "max_negatives", lo=1, hi=len(RULE_EDITS))


@dataclass
class BiasConfig:
    """NaPO's biased answers: generated without the image (language_bias) or without the question (vision_bias)."""

    decoding: BiasDecoding = field(default_factory=BiasDecoding)

    def validate(self) -> None:
        self.decoding.validate()


@dataclass
class OriginalConfig:
    """Keep negatives the source already has."""

    bias_columns: bool = True
    """Also keep NaPO's precomputed ``question_only`` / ``image_only`` answers (RLAIF-V-Bias rows, in ``meta``) as
    language_bias / vision_bias negatives."""

    def validate(self) -> None:
        pass
