"""Configs of ``unprior eval run`` (``EvalConfig``: one benchmark, one model), ``eval frontier``, ``eval compare``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from unprior.config import Renamed, check_range, fail


@dataclass
class EvalConfig:
    RENAMED: ClassVar[dict[str, Renamed]] = {"out_dir": Renamed("out")}  # old keys, read until unprior 0.2

    benchmark: str = "pope"
    """Registered benchmark name: pope, chair, object_halbench, amber, vlind, mmhal, world."""
    options: dict[str, Any] = field(default_factory=dict)
    """The benchmark's own options (data paths, protocol variants); see docs/eval.md for each benchmark's fields."""
    out: str = "runs/eval"
    """Run directory: samples.jsonl (answers), scores.jsonl, results.json; a rerun resumes here."""
    label: str = ""
    """Name of this model in `unprior eval compare` tables (default: the adapter's or model's folder name; for a
    generic one such as `runs/napo/model`, the run directory's: `napo`)."""
    model: str = ""
    """Base model or full fine-tuned checkpoint (local path or cached hub name)."""
    adapter: str = ""
    """Optional LoRA adapter directory applied on top of `model`."""
    backend: Literal["hf", "vllm"] = "hf"
    """Generation backend (the same as `unprior pairs`)."""
    batch_size: int = 8
    """Requests per generate call; also the most answers a kill can lose."""
    max_batch_tokens: int = 32_768
    """hf backend: memory budget of one generate call in positions, as `unprior pairs generator.max_batch_tokens`
    (docs/pairs.md, "Real sizes"): a batch whose rows would put more through the language model and the vision tower
    is split. 0: ``batch_size`` rows whatever their size."""
    max_new_tokens: int | None = None
    """Answer length limit; null uses the benchmark's reference value."""
    limit: int | None = None
    """Run only the first N items (whole instances for grouped benchmarks; per split for POPE), for smoke tests.

    Only the images of the items that run are checked."""
    temperature: float = 0.0
    """0 means greedy (deterministic) decoding; > 0 samples."""
    top_p: float = 1.0
    """Nucleus sampling mass when sampling."""
    num_beams: int = 1
    """Beam search width (NaPO's and RLAIF-V's scripts use 3)."""
    seed: int = 0
    """Sampling seed."""
    overwrite: bool = False
    """Discard this ``out``'s answers and results instead of resuming (the judge cache is kept)."""
    progress: bool = True
    """Show the generation progress bar (the summary is printed either way), as `unprior pairs progress=`."""

    def validate(self) -> None:
        from unprior.eval.registry import DataError, make_benchmark  # not at `unprior eval run --help`

        if not self.out:
            fail("out", "set an output directory")
        check_range(self, "batch_size", 1)
        check_range(self, "max_batch_tokens", 0)
        if self.max_new_tokens is not None:
            check_range(self, "max_new_tokens", 1)
        if self.limit is not None:
            check_range(self, "limit", 1)
        check_range(self, "temperature", 0.0)
        check_range(self, "num_beams", 1)
        if not 0.0 < self.top_p <= 1.0:
            fail("top_p", f"must be in (0, 1], got {self.top_p}")
        try:
            make_benchmark(self.benchmark, self.options)
        except KeyError as e:
            fail("benchmark", str(e.args[0]))
        except DataError as e:
            fail("options", str(e))

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def decoding(self, benchmark_default: int) -> dict[str, Any]:
        """The decoding settings a backend must apply (recorded in results.json)."""
        return {"do_sample": self.do_sample, "temperature": self.temperature, "top_p": self.top_p,
                "num_beams": self.num_beams, "seed": self.seed,
                "max_new_tokens": self.max_new_tokens or benchmark_default}


@dataclass
class FrontierConfig:
    RENAMED: ClassVar[dict[str, Renamed]] = {"out_dir": Renamed("out")}  # old keys, read until unprior 0.2

    model: str = ""
    """Base model or full checkpoint (local path or cached hub name); empty with `adapter` set: the adapter's base."""
    adapter: str = ""
    """Optional LoRA adapter directory, merged into `model`."""
    world_dir: str = ""
    """World dataset directory; empty: the default world (built or reused from the cache)."""
    out: str = "runs/eval/frontier"
    """Where frontier.json, frontier.png, slot_logprobs.jsonl and a compare-ready results.json go."""
    label: str = ""
    """Name of this model in `unprior eval compare` tables (default: the adapter's or model's folder name)."""
    batch_size: int = 32
    """Attribute rows per forward pass."""
    bias_min: float = -15.0
    """Lowest bias added to the canonical colour's log-prob."""
    bias_max: float = 15.0
    """Highest bias."""
    bias_step: float = 0.25
    """Bias grid step (0 is always on the grid)."""
    id_thresholds: list[float] = field(default_factory=lambda: [0.90, 0.95])
    """ID accuracies at which the best CF accuracy is reported."""
    limit: int | None = None
    """Use only the first N images of each split, for smoke tests."""

    def validate(self) -> None:
        if not self.out:
            fail("out", "set an output directory")
        check_range(self, "batch_size", 1)
        check_range(self, "bias_step", 1e-6)
        check_range(self, "bias_max", self.bias_min)
        if not self.id_thresholds or not all(0.0 <= t <= 1.0 for t in self.id_thresholds):
            fail("id_thresholds", f"give accuracies in [0, 1], got {self.id_thresholds}")
        if self.limit is not None:
            check_range(self, "limit", 1)


@dataclass
class CompareConfig:
    runs: list[str] = field(default_factory=list)
    """Eval output directories (or results.json files) to compare."""
    png: str = ""
    """Where to save the bar chart ("" for none)."""
    metrics: list[str] = field(default_factory=list)
    """Columns: empty for each benchmark's headline metrics, [all] for every metric, or benchmark/metric names."""

    def validate(self) -> None:
        if not self.runs:
            fail("runs", "give at least one run directory")
