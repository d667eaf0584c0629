"""Negative strategies: each turns a batch of samples into rejected answers with full provenance.

``STRATEGIES`` maps a name to a :class:`Strategy`. A strategy gets the samples of one output part, their opened
images, its own config section and a :class:`StrategyContext` (backends, dataset statistics, seeds), and returns
one list of :class:`~unprior.formats.pairs.Negative` per sample (possibly empty).

=================  =====================  ============  ===============================================================
name               negative kind          needs         what it does
=================  =====================  ============  ===============================================================
image_weakening    image_weakening        generator     BPO: answer from a weakened image (docs/papers.md, BPO step 2)
error_injection    error_injection        injector      BPO: a text LLM rewrites the answer (§1.2 step 3, §1.3)
rules              error_injection        —             one common-but-wrong edit from dataset stats (no LLM)
language_bias      language_bias          generator     NaPO Eq. 7: the question without the image (§2.2, N6)
vision_bias        vision_bias            generator     NaPO Eq. 8: the image with an empty question (§2.2, N7)
original           original (+ NaPO's)    —             keep the source's own rejected answer
=================  =====================  ============  ===============================================================

**Image weakening direction (docs/papers.md, B1).** BPO's paper and README say the negative is what the model says
about a *distorted* image. The released sampler instead mixes ``(1 + a) * logit(clean) - a * logit(noisy)``, VCD's
de-hallucination contrast, which favours the clean image: the opposite of the stated aim. We implement the paper's
intent: the negative is sampled from the noised image alone, ``y- ~ p(. | x, I_t)`` with ``t = 900`` and temperature
0.2, and the clean image is not consulted. The optional reversed contrast the spec mentions is not implemented.

Seeds. Every per-sample random choice (the noise of an image, the order of rule edits) is seeded by
``stable_seed(run seed, strategy, sample id)``, so it does not depend on sharding, batching or resumption. Sampled
decoding is seeded per output part (``sampling_seed``), which is fixed for a given run configuration, so a resumed
run regenerates a lost part exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from unprior.formats.pairs import Negative, Sample
from unprior.models.backends import Backend, Decoding
from unprior.models.generate import Prompt
from unprior.numerics import stable_seed
from unprior.pairs.config import (
    BiasConfig,
    ErrorInjectionConfig,
    ImageWeakeningConfig,
    OriginalConfig,
    RulesConfig,
)
from unprior.pairs.rules import DatasetStats, image_key, rule_negatives
from unprior.perturb import drop_image, drop_question, perturb_image

Negatives = list[list[Negative]]


@dataclass
class StrategyContext:
    """What a strategy may use besides the samples."""

    generator: Backend | None = None
    """The VLM that answers (image_weakening, language_bias, vision_bias)."""
    injector: Backend | None = None
    """The text LLM that rewrites answers (error_injection)."""
    stats: DatasetStats | None = None
    """Dataset statistics (rules)."""
    seed: int = 0
    """The run's seed (per-sample choices)."""
    sampling_seed: int = 0
    """The seed of sampled decoding for this part."""
    on_batch: Callable[[int], None] | None = None
    """Progress callback: called with the number of samples just finished."""

    def done(self, n: int) -> None:
        if self.on_batch is not None:
            self.on_batch(n)


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: str
    """The kind of the negatives it produces (original may also emit NaPO's bias kinds)."""
    needs: str | None
    """generator, injector or None."""
    run: Callable[[Sequence[Sample], Sequence[Image.Image | None], Any, StrategyContext], Negatives]


def _require(backend: Backend | None, role: str, strategy: str) -> Backend:
    if backend is None:
        raise ValueError(f"strategy {strategy} needs a {role} backend")
    return backend


def _generated(
    strategy: str, kind: str, texts: Sequence[str], backend: Backend, decoding: Decoding, extra: Sequence[dict]
) -> Negatives:
    base = {**backend.info(), "decoding": decoding.as_dict()}
    return [[Negative(t, kind, {"strategy": strategy, **e, **base})] for t, e in zip(texts, extra, strict=True)]


def weakening_space(cfg: ImageWeakeningConfig, backend: Backend) -> str:
    """tensor or image: where the perturbation is applied for this backend."""
    if cfg.space == "tensor" and not backend.pixel_noise:
        raise ValueError(f"the {backend.name} backend cannot noise pixel tensors; set image_weakening.space=image")
    if cfg.space == "auto":
        return "tensor" if backend.pixel_noise and cfg.perturbation == "diffusion_noise" else "image"
    return cfg.space


def image_weakening(
    samples: Sequence[Sample], images: Sequence[Image.Image | None], cfg: ImageWeakeningConfig, ctx: StrategyContext
) -> Negatives:
    """BPO negative type A: sample an answer from the weakened image (see the module docstring on B1)."""
    backend = _require(ctx.generator, "generator", "image_weakening")
    space = weakening_space(cfg, backend)
    decoding = cfg.decoding
    prompts, extra = [], []
    params = cfg.kwargs()
    for s, im in zip(samples, images, strict=True):
        seed = stable_seed(ctx.seed, "image_weakening", s.id)
        if im is None:
            raise ValueError(f"sample {s.id!r} has no image to weaken")
        if space == "tensor":
            prompts.append(Prompt(s.prompt, im, noise_step=int(params["t"]), noise_seed=seed))
        else:
            prompts.append(Prompt(s.prompt, perturb_image(im, cfg.perturbation, params, seed=seed)))
        extra.append(
            {
                "perturbation": cfg.perturbation,
                "params": dict(params),
                "space": space,
                "prompt_view": "full",
                "seed": seed,
                "sampling_seed": ctx.sampling_seed,
            }
        )
    texts = backend.generate(prompts, decoding, seed=ctx.sampling_seed, on_batch=ctx.on_batch)
    return _generated("image_weakening", "image_weakening", texts, backend, decoding, extra)


def _bias(
    strategy: str,
    view_fn: Callable[[str], Any],
    samples: Sequence[Sample],
    images: Sequence[Image.Image | None],
    cfg: BiasConfig,
    ctx: StrategyContext,
) -> Negatives:
    backend = _require(ctx.generator, "generator", strategy)
    decoding = cfg.decoding
    # Deterministic decoding gives one answer per distinct (text, image): rows sharing an image (vision_bias) or a
    # question (language_bias) are generated once.
    unique: dict[tuple[str, str | None], int] = {}
    prompts, which = [], []
    for s, im in zip(samples, images, strict=True):
        view = view_fn(s.prompt)
        if view.has_image and im is None:
            raise ValueError(f"sample {s.id!r} has no image for {strategy}")
        key = (view.text, image_key(s) if view.has_image else None)
        if decoding.do_sample or key not in unique:
            unique[key] = len(prompts)
            prompts.append(Prompt(view.text, im if view.has_image else None))
        which.append(unique[key] if not decoding.do_sample else len(prompts) - 1)
    done = 0

    def progress(n: int) -> None:  # report in samples, not unique prompts
        nonlocal done
        new = round((done + n) * len(samples) / max(len(prompts), 1)) - round(done * len(samples) / len(prompts))
        done += n
        ctx.done(new)

    texts = backend.generate(prompts, decoding, seed=ctx.sampling_seed, on_batch=progress)
    texts = [texts[i] for i in which]
    prompt_view = "no_image" if strategy == "language_bias" else "no_question"
    extra = [{"prompt_view": prompt_view, "sampling_seed": ctx.sampling_seed}] * len(samples)
    return _generated(strategy, strategy, texts, backend, decoding, extra)


def language_bias(samples, images, cfg: BiasConfig, ctx: StrategyContext) -> Negatives:
    """NaPO ``y_lb = MLLM([MASK]; t)`` (Eq. 7): the question alone, with no image token at all (docs/papers.md N6)."""
    return _bias("language_bias", drop_image, samples, images, cfg, ctx)


def vision_bias(samples, images, cfg: BiasConfig, ctx: StrategyContext) -> Negatives:
    """NaPO ``y_vb = MLLM(v; [MASK])``: the image with an empty instruction (NaPO Eq. 8, docs/papers.md N7)."""
    return _bias("vision_bias", drop_question, samples, images, cfg, ctx)


DESCRIPTION_TEMPLATE = """\
Here is a description of a picture. Write a description of a slightly different picture by changing a few of \
its details: bring in one or two objects that are typical for a scene like this but are not mentioned, leave \
out an object, or give an object another colour, size, shape, number or position. The result must still read \
as an ordinary, believable description, in the same style and about the same length. Reply with the new \
description only.

Description: {answer}
New description:"""
"""BPO's description-mode rewrite instruction (docs/papers.md, BPO step 3), paraphrased."""

QA_TEMPLATE = """\
Picture a photo that looks much like the one this answer is about but differs in some details: it may hold \
extra objects, miss some, or show objects with other attributes or in other numbers. Answer the question as \
someone looking at that other photo would, keeping the form of the original answer. Reply with the new answer \
only.

Question: Which colour is the umbrella?
Answer: The umbrella is green.
New answer: The umbrella is red.

Question: How many cups are on the tray?
Answer: There are two cups on the tray.
New answer: There are three cups on the tray.

Question: Is there a bicycle next to the bench?
Answer: Yes, a bicycle leans against the bench.
New answer: No, only a dog is sitting next to the bench.

Question: What is the woman carrying?
Answer: She is carrying a basket of bread.
New answer: She is carrying a basket of apples.

Question: What does the sign say the ticket costs?
Answer: The sign says a ticket costs 4 euros.
New answer: The sign says a ticket costs 6 euros.

Question: {question}
Answer: {answer}
New answer:"""
"""BPO's QA-mode "a similar but different image" instruction with in-context examples (§1.3), paraphrased and
with our own examples."""

TEMPLATES = {"description": DESCRIPTION_TEMPLATE, "qa": QA_TEMPLATE}
_DESCRIBE = re.compile(r"\b(describe|description|caption|detail(ed)?)\b", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(new|modified|rewritten)\s+(answer|description|response)\s*:\s*", re.IGNORECASE)


def injection_template(sample: Sample, choice: str) -> str:
    """description or qa for this sample (docs/papers.md B6: descriptions get the rewrite prompt)."""
    if choice != "auto":
        return choice
    task = str(sample.meta.get("task", "")).lower()
    if task in ("describe", "description", "caption") or _DESCRIBE.search(sample.prompt):
        return "description"
    return "qa"


def clean_injection(text: str) -> str:
    """Strip an echoed label ("New answer:"), surrounding quotes, and anything after a following example."""
    text = _LABEL.sub("", text.strip())
    text = re.split(r"\n\s*\n|\n\s*(?:Question|Description|Answer)\s*:", text, maxsplit=1)[0]
    return text.strip().strip('"').strip()


def error_injection(samples, images, cfg: ErrorInjectionConfig, ctx: StrategyContext) -> Negatives:
    """BPO negative type B: a text LLM rewrites the reference answer with plausible errors."""
    del images
    backend = _require(ctx.injector, "injector", "error_injection")
    decoding = cfg.decoding
    names = [injection_template(s, cfg.template) for s in samples]
    prompts = [
        Prompt(TEMPLATES[n].format(question=s.prompt, answer=s.answer)) for s, n in zip(samples, names, strict=True)
    ]
    texts = backend.generate(prompts, decoding, seed=ctx.sampling_seed, on_batch=ctx.on_batch)
    texts = [clean_injection(t) for t in texts]
    extra = [{"template": n, "sampling_seed": ctx.sampling_seed} for n in names]
    return _generated("error_injection", "error_injection", texts, backend, decoding, extra)


def rules(samples, images, cfg: RulesConfig, ctx: StrategyContext) -> Negatives:
    """Single common-but-wrong edits from the dataset's statistics (see :mod:`unprior.pairs.rules`)."""
    del images
    if ctx.stats is None:
        raise ValueError("strategy rules needs dataset statistics")
    out = []
    for s in samples:
        edits = rule_negatives(s, ctx.stats, cfg.edits, cfg.max_negatives, ctx.seed)
        prov = {"strategy": "rules", "stats": ctx.stats.source, "seed": ctx.seed}
        out.append([Negative(e.text, "error_injection", {**prov, "edit": e.name, **e.detail}) for e in edits])
    ctx.done(len(samples))
    return out


BIAS_COLUMNS = {"question_only": "language_bias", "image_only": "vision_bias"}


def original(samples, images, cfg: OriginalConfig, ctx: StrategyContext) -> Negatives:
    """The source's own rejected answer, and NaPO's precomputed biased answers when asked."""
    del images
    out = []
    for s in samples:
        negs = [Negative(s.rejected, "original", {"strategy": "original"})] if s.rejected else []
        if cfg.bias_columns:
            for column, kind in BIAS_COLUMNS.items():
                text = s.meta.get(column)
                if isinstance(text, str) and text.strip():
                    negs.append(Negative(text, kind, {"strategy": "original", "source_column": column}))
        out.append(negs)
    ctx.done(len(samples))
    return out


STRATEGIES: dict[str, Strategy] = {
    "image_weakening": Strategy("image_weakening", "image_weakening", "generator", image_weakening),
    "error_injection": Strategy("error_injection", "error_injection", "injector", error_injection),
    "rules": Strategy("rules", "error_injection", None, rules),
    "language_bias": Strategy("language_bias", "language_bias", "generator", language_bias),
    "vision_bias": Strategy("vision_bias", "vision_bias", "generator", vision_bias),
    "original": Strategy("original", "original", None, original),
}
"""Every strategy, by the name ``PairsConfig.strategies`` uses."""
