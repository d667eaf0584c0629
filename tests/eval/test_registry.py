"""Every benchmark registers with versions, documented options and metric directions; modules stay light."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from unprior.config import field_docs
from unprior.eval.registry import REGISTRY, Benchmark, Metric, benchmark_names, get_benchmark

BUILTIN = {"pope", "chair", "object_halbench", "amber", "vlind", "mmhal"}


def test_builtin_benchmarks_are_registered():
    assert set(benchmark_names()) >= BUILTIN


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_benchmark_contract(name):
    cls = get_benchmark(name)
    assert issubclass(cls, Benchmark) and REGISTRY[name] is cls
    for attr in ("version", "parser_version", "scorer_version"):
        assert isinstance(getattr(cls, attr), str) and getattr(cls, attr)
    assert cls.max_new_tokens > 0
    docs = field_docs(cls.Options)
    for f in dataclasses.fields(cls.Options):
        assert docs.get(f.name), f"{name}: option {f.name} has no attribute docstring"


def test_metrics_know_their_direction():
    bench = get_benchmark("vlind")(get_benchmark("vlind").Options(data="d", image_root="i"))
    assert all(isinstance(m, Metric) and m.higher_is_better in (True, False, None) for m in bench.metrics())
    assert set(bench.headline()) <= {m.name for m in bench.metrics()}


def test_unknown_benchmark_suggests():
    with pytest.raises(KeyError, match="did you mean amber"):
        get_benchmark("ambr")


def test_scorers_do_not_import_torch():
    code = ("import sys; import unprior.eval.runner, unprior.eval.compare, unprior.eval.registry as r; "
            "r.benchmark_names(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
