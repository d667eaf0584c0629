"""The benchmark registry: one small class per benchmark, looked up by name.

The pattern is lm-evaluation-harness's, made much smaller. A benchmark turns its local data files into
:class:`Item` s (one prompt + one image each, with a prompt built by ``build_prompt``), parses each answer with a
pure, versioned parser, scores each item and aggregates the per-item scores into named :class:`Metric` values that
know whether higher is better. Answer parsing is part of the metric, so every parser and scorer carries a version
string that lands in ``results.json``.

Adding a benchmark: write a module in ``unprior/eval/benchmarks/`` with a :class:`Benchmark` subclass decorated with
:func:`register`. Every module in that package is imported on the first registry lookup, so nothing else changes.

Generation is not part of a benchmark: the runner hands each item to a :data:`GenerateFn` as a :class:`Request`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from unprior.config import from_dict
from unprior.io import InputError


@dataclass(frozen=True)
class Metric:
    """One reported number of a benchmark."""

    name: str
    """Key in ``results.json["metrics"]``, e.g. ``"f1"`` or ``"random/f1"``."""
    higher_is_better: bool | None
    """Direction, used by ``compare`` to mark the best run; None where neither is better (e.g. POPE's yes-ratio)."""
    description: str = ""
    """One line for tables and docs, with the unit (e.g. "percent")."""
    digits: int = 1
    """Decimals shown in tables."""


@dataclass(frozen=True)
class Item:
    """One generation unit: a prompt, an optional image, and what scoring needs to know about it."""

    id: str
    """Unique within the benchmark run, stable across runs (used to resume)."""
    prompt: str
    """The exact user text given to the model."""
    image: Path | None
    """Absolute path of the image, or None for a text-only query."""
    target: dict[str, Any] = field(default_factory=dict)
    """Ground truth and grouping fields used by ``score`` and ``aggregate`` (JSON-safe)."""
    where: str = ""
    """The data file and row it came from (``file:line``), for errors found after loading (a missing image)."""


@dataclass(frozen=True)
class Request:
    """What a generation backend receives for one item."""

    id: str
    image: Path | None
    """Absolute path of the image, or None."""
    prompt: str
    """User text; the backend applies the model's chat template around it."""
    max_new_tokens: int


GenerateFn = Callable[[list[Request]], list[str]]
"""A batch of requests in, one answer string per request out, in order. Decoding settings are bound by the maker."""


@dataclass
class NoOptions:
    """For benchmarks without options."""



class Benchmark(ABC):
    """Base class: ``load`` -> ``build_prompt`` -> (generation) -> ``parse`` -> ``score`` -> ``aggregate``.

    Subclasses set the class attributes and implement the abstract methods; ``options`` is an instance of their
    ``Options`` dataclass (attribute docstrings document each field; ``validate()`` raises via
    ``unprior.config.fail``).
    """

    name: ClassVar[str]
    """Registry key."""
    version: ClassVar[str]
    """Version of the data format and prompts; bump when either changes."""
    parser_version: ClassVar[str]
    scorer_version: ClassVar[str]
    max_new_tokens: ClassVar[int]
    """Default generation length (the reference protocol's)."""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def load(self) -> list[Item]:
        """Read the user's local data files; raise ``DataError`` naming the file and row on any problem."""

    @abstractmethod
    def metrics(self) -> list[Metric]:
        """The metrics ``aggregate`` returns, in display order."""

    @abstractmethod
    def parse(self, item: Item, answer: str) -> Any:
        """Pure function of the raw answer (and the item's type where the protocol depends on it)."""

    @abstractmethod
    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        """Per-item JSON-safe record, written beside the answer in ``samples.jsonl``."""

    @abstractmethod
    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float | None]:
        """Metric name -> value over all items (``items[i]`` goes with ``scores[i]``); None where the run had no
        items to compute it from (written as null, shown as n/a)."""

    def score_all(self, items: Sequence[Item], answers: Sequence[str], workdir: Path) -> list[dict[str, Any]]:
        """Score every item. Benchmarks that call a judge override this to batch, cache and resume in ``workdir``."""
        del workdir
        scores = []
        for item, answer in zip(items, answers, strict=True):
            parsed = self.parse(item, answer)
            scores.append({"parsed": parsed, **self.score(item, parsed)})
        return scores

    def headline(self) -> list[str]:
        """Metrics shown by default in run summaries and ``compare`` (the ones papers report)."""
        return [m.name for m in self.metrics()][:2]

    def head(self, items: list[Item], limit: int) -> list[Item]:
        """The first ``limit`` units of work for a quick run (items by default; whole instances where items group)."""
        return items[:limit]

    def provenance(self) -> dict[str, Any]:
        """Protocol labels recorded next to the metrics (variants, approximations, resource versions)."""
        return {}


class DataError(InputError):
    """A missing or malformed benchmark data file; the message names the file (and row where there is one)."""


REGISTRY: dict[str, type[Benchmark]] = {}
_LOADED = False


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: add ``cls`` to :data:`REGISTRY` under ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"benchmark name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("unprior.eval.benchmarks")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"unprior.eval.benchmarks.{info.name}")
    _LOADED = True


def benchmark_names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def get_benchmark(name: str) -> type[Benchmark]:
    """Look up a benchmark class; an unknown name raises KeyError with "did you mean" suggestions."""
    _load_all()
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown benchmark {name!r}{hint} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def make_benchmark(name: str, options: dict[str, Any] | None = None) -> Benchmark:
    """Instantiate a benchmark with its options validated (errors name the field as ``options.<field>``)."""
    cls = get_benchmark(name)
    return cls(from_dict(cls.Options, dict(options or {}), prefix="options."))
