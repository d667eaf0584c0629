"""Configs of the pairs stage: ``unprior pairs`` (``PairsConfig``, composing the loader, strategy and filter configs)
and ``pairs merge`` (``MergeConfig``); ``NoiseConfig`` checks ``unprior.pairs.noise.REWRITES``, so it lives there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from unprior.config import Renamed, check_choice, check_range, fail
from unprior.models.backends import BackendConfig, Decoding

FORMATS = ("auto", "unprior", "llava", "hf", "rlaifv", "trl")
SCHEMA_FIELDS = ("id", "image", "prompt", "answer", "rejected")
STRATEGY_NAMES = ("image_weakening", "error_injection", "rules", "language_bias", "vision_bias", "original")
NEEDS = {
    "image_weakening": "generator",
    "language_bias": "generator",
    "vision_bias": "generator",
    "error_injection": "injector",
}
"""The backend role each model-using strategy needs."""


@dataclass
class LoadConfig:
    """How to read a source dataset into :class:`unprior.formats.pairs.Sample` rows."""

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
    350 words; docs/pairs.md, "Filters"); 0 disables the limit."""

    def validate(self) -> None:
        check_range(self, "max_words", lo=0)


@dataclass
class WeakeningDecoding(Decoding):
    """BPO image weakening decodes by sampling at temperature 0.2 (docs/papers.md, BPO step 2)."""

    do_sample: bool = True
    """Sample instead of greedy / beam search."""
    temperature: float = 0.2
    """Sampling temperature (BPO: 0.2)."""


@dataclass
class InjectionDecoding(Decoding):
    """BPO's error injector samples at temperature 0.8, top-p 0.95 (docs/papers.md, BPO step 3)."""

    do_sample: bool = True
    """Sample instead of greedy decoding."""
    temperature: float = 0.8
    """Sampling temperature (BPO: 0.8)."""
    top_p: float = 0.95
    """Nucleus sampling mass (BPO: 0.95)."""


@dataclass
class BiasDecoding(Decoding):
    """NaPO generates its biased answers greedily with 3 beams (docs/papers.md, NaPO part 1)."""

    num_beams: int = 3
    """Beam width (NaPO: 3)."""


@dataclass
class InjectorBackendConfig(BackendConfig):
    """The error injector's backend: by default an OpenAI-compatible endpoint serving a text LLM."""

    backend: str = "openai"
    """hf (a local causal LM or VLM, batched), vllm (offline engine), or openai (any OpenAI-compatible chat
    endpoint: vLLM, SGLang, ``transformers serve``, OpenAI)."""


@dataclass
class ImageWeakeningConfig:
    """BPO negative type A: the generator answers from a weakened image (docs/papers.md, BPO step 2 and B1)."""

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
        from unprior.perturb import perturbation_params  # imports torch: not at `unprior pairs --help`

        return perturbation_params(self.perturbation, self.params)


@dataclass
class ErrorInjectionConfig:
    """BPO negative type B: a text LLM rewrites the reference answer with plausible errors (docs/papers.md, BPO
    step 3)."""

    template: str = "auto"
    """Prompt template: description (rewrite a description), qa (answer as if for a similar image), or auto
    (description for describe/caption prompts and rows with ``task: describe``, else qa; docs/pairs.md, "Error
    injection")."""
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


@dataclass
class PairsConfig:
    """Generate bootstrapped negatives for a dataset and write a pairs dataset (docs/papers.md: BPO, NaPO)."""

    source: str = ""
    """The dataset: any path ``unprior.pairs.loaders`` reads (a world root, LLaVA JSON, RLAIF-V parquet, ...)."""
    load: LoadConfig = field(default_factory=LoadConfig)
    out: str = ""
    """Output directory (shard directories are created under it)."""
    strategies: list[str] = field(default_factory=lambda: ["rules"])
    """Negative strategies, in order: image_weakening, error_injection, rules, language_bias, vision_bias,
    original. Each sample gets the negatives of every strategy (after filtering)."""
    image_weakening: ImageWeakeningConfig = field(default_factory=ImageWeakeningConfig)
    error_injection: ErrorInjectionConfig = field(default_factory=ErrorInjectionConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    language_bias: BiasConfig = field(default_factory=BiasConfig)
    vision_bias: BiasConfig = field(default_factory=BiasConfig)
    original: OriginalConfig = field(default_factory=OriginalConfig)
    generator: BackendConfig = field(default_factory=BackendConfig)
    """The VLM that answers for image_weakening, language_bias and vision_bias (BPO and NaPO use the model being
    trained)."""
    injector: InjectorBackendConfig = field(default_factory=InjectorBackendConfig)
    """The text LLM of error_injection (BPO: the MLLM's own base LLM)."""
    filters: FilterConfig = field(default_factory=FilterConfig)
    part_size: int = 64
    """Samples per output part (the unit of resumption: a kill loses at most one part's work)."""
    num_shards: int = 1
    """Split the samples into this many shards (by a stable hash of their id)."""
    shard_index: int = 0
    """Which shard this process generates (0-based)."""
    seed: int = 0
    """Seed of every random choice (noise, rule edits, sampled decoding)."""
    embed_images: bool = False
    """Store image bytes in the part files instead of paths relative to the source's image root."""
    overwrite: bool = False
    """Discard this shard's existing output (finished or not) and start again."""
    progress: bool = True
    """Show a progress bar (rate and ETA)."""

    def validate(self) -> None:
        if not self.source:
            fail("source", "set the dataset to read")
        if not self.out:
            fail("out", "set the output directory")
        if not self.strategies:
            fail("strategies", "choose at least one strategy")
        for name in self.strategies:
            if name not in STRATEGY_NAMES:
                fail("strategies", f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")
        if len(set(self.strategies)) != len(self.strategies):
            fail("strategies", "lists a strategy twice")
        for name in self.strategies:
            role = NEEDS.get(name)
            if role and not getattr(self, role).model:
                fail(f"{role}.model", f"strategy {name} needs a {role} model")
        check_range(self, "part_size", lo=1)
        check_range(self, "num_shards", lo=1)
        if not 0 <= self.shard_index < self.num_shards:
            fail("shard_index", f"must be in [0, {self.num_shards - 1}], got {self.shard_index}")
        for section in (self.load, self.image_weakening, self.error_injection, self.rules, self.filters):
            section.validate()
        for section in (self.language_bias, self.vision_bias, self.generator, self.injector):
            section.validate()


@dataclass
class MergeConfig:
    """Merge the shards of a pairs run into one pairs dataset (and optionally a training export)."""

    out: str = ""
    """The pairs run's output directory (holding ``shard-XXXXX-of-YYYYY/``)."""
    output: str = ""
    """Merged pairs file, ``.parquet`` or ``.jsonl``. Empty: ``<out>/pairs.parquet``."""
    export: str = "none"
    """Also write a training export: trl (``<out>/trl/train.parquet``), llamafactory (``<out>/llamafactory/``), or
    none."""
    allow_partial: bool = False
    """Merge what is finished even when shards are missing or incomplete (reported in the summary)."""

    def validate(self) -> None:
        if not self.out:
            fail("out", "set the pairs run's output directory")
        check_choice(self, "export", ("none", "trl", "llamafactory"))
        if self.output and not self.output.endswith((".parquet", ".jsonl")):
            fail("output", "must end in .parquet or .jsonl")

