"""Configs of the world stage: the synthetic dataset (``WorldConfig``), the base model, the report, the probe."""

from __future__ import annotations

from dataclasses import dataclass, field

from unprior.config import check_choice, check_range, fail
from unprior.world.phrasings import MAX_PHRASINGS


@dataclass
class ImageConfig:
    """How images are drawn. Shape is carried by luminance (easy); colour by a faint chroma tint (hard)."""

    size: int = 32
    """Image side in pixels; a multiple of ``cell``. Must match the vision tower's image size."""
    cell: int = 16
    """Grid cell side in pixels; one object per cell. Equal to the vision patch size, so one patch sees one object."""
    max_objects: int = 4
    """Scene size: at most this many objects per image (busier scenes make focus questions harder)."""
    saturation_lo: float = 0.15
    """Lower bound of the share of the colour's chroma kept (drawn uniformly per object). Lower: harder colours."""
    saturation_hi: float = 0.45
    """Upper bound of that share. The colour signal is the main difficulty knob: the language prior only shows
    when colour is hard to read (docs/world.md, "What the design runs showed", item 1)."""
    luminance: float = 70.0
    """Luminance offset of the glyph from the background. Keeps shapes easy to read."""
    polarity: str = "dark"
    """Glyphs darker than the background ("dark"), lighter ("light"), or either, drawn per object ("both")."""
    hue_jitter: float = 8.0
    """Per-object RGB jitter (std) added to the tint: blurs neighbouring hues (red/orange/pink, blue/cyan/purple)."""
    noise: float = 18.0
    """Per-pixel Gaussian noise std (0-255 scale)."""

    def validate(self) -> None:
        check_range(self, "size", 8, 512)
        check_range(self, "cell", 4, 64)
        if self.size % self.cell:
            fail("size", f"must be a multiple of cell ({self.cell}), got {self.size}")
        check_range(self, "max_objects", 1, (self.size // self.cell) ** 2)
        check_range(self, "saturation_lo", 0.0, 1.0)
        check_range(self, "saturation_hi", self.saturation_lo, 1.0)
        check_range(self, "luminance", 0.0, 120.0)
        check_choice(self, "polarity", ("dark", "light", "both"))
        check_range(self, "hue_jitter", 0.0, 255.0)
        check_range(self, "noise", 0.0, 255.0)


@dataclass
class WorldConfig:
    """The synthetic world: a seeded generator of images, questions and answers with two measurable priors."""

    out: str = ""
    """Output directory of the dataset. Empty: the cache (``$UNPRIOR_CACHE/worlds/<hash>``)."""
    overwrite: bool = False
    """Replace ``out`` if it exists and is not empty."""
    seed: int = 0
    """Seed of everything drawn (layouts, colours, noise, question sampling)."""
    n_train: int = 8000
    """Training images. Each gives a description, attribute questions and yes/no existence questions."""
    n_test: int = 400
    """Images in each test split (``test_id`` and ``test_cf``)."""
    prior_strength: float = 0.95
    """Language prior: probability that an object has its category's canonical colour (else one of the other
    colours, uniformly). 1/8 = no colour prior (the control world)."""
    pair_strength: float = 0.9
    """Co-occurrence prior: probability that a drawn object's partner appears in the same image."""
    two_groups: float = 0.65
    """Probability that a scene holds two partner groups rather than one (busier scenes)."""
    pope_per_image: int = 1
    """POPE-style yes/no questions per test image and sampling setting (as many 'no' as 'yes')."""
    phrasings: int = 1
    """Equally valid answer templates per task (1-3, unprior.world.phrasings): "The apple is red." / "The apple is
    coloured red." / "That apple is red.", one drawn per row. 1: the single original form (the world's data and
    hash unchanged). 2 or more make same-form correct negatives possible (unprior pairs noise mode=same_form)."""
    image: ImageConfig = field(default_factory=ImageConfig)

    def validate(self) -> None:
        check_range(self, "n_train", 1, 10_000_000)
        check_range(self, "n_test", 1, 1_000_000)
        check_range(self, "prior_strength", 0.0, 1.0)
        check_range(self, "pair_strength", 0.0, 1.0)
        check_range(self, "two_groups", 0.0, 1.0)
        check_range(self, "pope_per_image", 1, 4)
        check_range(self, "phrasings", 1, MAX_PHRASINGS)


@dataclass
class ModelConfig:
    """Shape of the tiny LLaVA (CLIP vision tower + Llama), built from configs with random weights."""

    vision_hidden: int = 64
    """CLIP hidden size."""
    vision_layers: int = 2
    """CLIP layers."""
    text_hidden: int = 128
    """Llama hidden size."""
    text_layers: int = 2
    """Llama layers."""
    text_heads: int = 4
    """Llama attention heads (2 key/value heads)."""
    vocab_size: int = 400
    """Target size of the locally trained byte-level BPE vocabulary."""

    def validate(self) -> None:
        for name in ("vision_hidden", "vision_layers", "text_hidden", "text_layers", "text_heads"):
            check_range(self, name, 1, 8192)
        if self.text_hidden % self.text_heads:
            fail("text_hidden", f"must be divisible by text_heads ({self.text_heads})")
        check_range(self, "vocab_size", 300, 100_000)


@dataclass
class VisionPretrainConfig:
    """Pretraining of the vision tower on the world's pictures alone, with no language model (recipe
    ``pretrained_vision``; :mod:`unprior.world.vision`)."""

    images: int = 8000
    """Pictures in the encoder's corpus (rendered like the world's, every colour equally likely)."""
    steps: int = 1500
    """AdamW steps of the attribute objective."""
    batch_size: int = 128
    """Pictures per step."""
    lr: float = 2e-3
    """Peak learning rate (linear warm-up, cosine decay)."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    seed: int = 0
    """Seed of the tower's initialisation, the heads and the batch order."""

    def validate(self) -> None:
        check_range(self, "images", 16, 10_000_000)
        check_range(self, "steps", 0, 10_000_000)
        check_range(self, "batch_size", 1, 100_000)
        check_range(self, "lr", 0.0, 1.0)
        check_range(self, "warmup_steps", 0, 10_000_000)


@dataclass
class BaseConfig:
    """Training of the biased base model: text-only prior pretraining, then a short multimodal SFT."""

    world: WorldConfig = field(default_factory=WorldConfig)
    """The world to train on (built, or reused from the cache, when ``world_dir`` is empty)."""
    world_dir: str = ""
    """Use an existing world dataset directory instead of building ``world``."""
    out: str = ""
    """Where to save the model. Empty: the cache (``$UNPRIOR_CACHE/base/<hash>``), reused when present."""
    overwrite: bool = False
    """Retrain even if ``out`` already holds a finished model."""
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    """Seed of initialisation and batch order."""
    pretrain_steps: int = 150
    """Text-only steps on a corpus that states the priors (no image): how LLMs pick up 'apples are red'."""
    sft_steps: int = 1300
    """Multimodal SFT steps. Fixed on purpose: the prior is a transient that fades with longer training."""
    batch_size: int = 64
    """Rows per step (both phases)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay), both phases."""
    warmup_steps: int = 50
    """Linear warm-up steps of each phase."""
    threads: int = 0
    """torch threads (0: leave torch's default)."""
    recipe: str = "joint"
    """How the base is built. ``joint``: the vision tower is trained from scratch beside the language model in the
    multimodal SFT (the first organism). ``pretrained_vision``: like a real VLM, (a) the tower is pretrained on
    pictures alone (``vision``), (b) the language model on text (the prior, ``pretrain_steps``), (c) the projector
    is aligned on captions with tower and language model frozen (``align_steps``), (d) multimodal SFT with the tower
    frozen (``sft_steps``)."""
    vision: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    """Recipe ``pretrained_vision``: the tower's pretraining."""
    align_steps: int = 300
    """Recipe ``pretrained_vision``: projector-only steps on the describe rows (LLaVA's stage 1)."""

    def validate(self) -> None:
        check_choice(self, "recipe", ("joint", "pretrained_vision"))
        check_range(self, "align_steps", 0, 10_000_000)
        check_range(self, "pretrain_steps", 0, 10_000_000)
        check_range(self, "sft_steps", 0, 10_000_000)
        check_range(self, "batch_size", 1, 100_000)
        check_range(self, "lr", 0.0, 1.0)
        check_range(self, "warmup_steps", 0, 10_000_000)
        check_range(self, "threads", 0, 1024)


@dataclass
class ReportConfig:
    """Bias report of a model on a world's test splits."""

    model: str = ""
    """Model directory (AutoProcessor + AutoModelForImageTextToText). Empty: train/reuse the default base."""
    world_dir: str = ""
    """World dataset directory. Empty: the default world (built or reused from the cache)."""
    out: str = ""
    """Where to write report.json and answers.jsonl. Empty: ``<model>/report``."""
    batch_size: int = 64
    """Prompts per generate call."""
    max_new_tokens: int = 24
    """Greedy decoding budget per answer."""
    limit: int = 0
    """Use only the first N images of each split (0: all)."""

    def validate(self) -> None:
        check_range(self, "batch_size", 1, 10_000)
        check_range(self, "max_new_tokens", 1, 4096)
        check_range(self, "limit", 0, 10_000_000)


@dataclass
class ProbeConfig:
    """Fit and test a linear colour probe on one or more models' image features."""

    models: list[str] = field(default_factory=list)
    """Model directories (e.g. the biased base and the no-prior control)."""
    world_dir: str = ""
    """The world the models were trained on."""
    per_cell: int = 20
    """Train objects per (category, colour) fitting the probe, at most: colour is then nearly independent of the
    category, so the probe cannot score by the prior (a probe fitted on the train split as drawn learns "apples are
    red" from the shape features and fails on counterfactual colours for that reason alone)."""
    steps: int = 300
    """L-BFGS iterations of the probe fit."""
    weight_decay: float = 1e-3
    """L2 penalty of the probe."""
    out: str = ""
    """Where to write probe.json (empty: print only)."""
    threads: int = 1
    """torch threads."""
    features: str = "projector"
    """Where the probe reads: ``projector`` (what the language model receives) or ``tower`` (the vision tower's
    last-layer patch features, before the projector)."""

    def validate(self) -> None:
        check_choice(self, "features", ("projector", "tower"))
        if not self.models:
            fail("models", "give at least one model directory")
        if not self.world_dir:
            fail("world_dir", "set the world directory")
        check_range(self, "per_cell", 1, 10_000_000)
        check_range(self, "steps", 1, 100_000)
