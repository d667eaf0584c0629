"""Fixtures for the score tests: one tiny model per family (built once per session) and small pairs files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from .helpers import make_rows, pairs_file, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Two shared cores: one thread each avoids 20x slower spin-waiting under load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def family_model(tmp_path_factory) -> Callable[[str], Path]:
    """``family_model("qwen2_vl")`` -> directory of a saved tiny random model of that family (cached)."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = tiny_model(family, tmp_path_factory.mktemp(f"model-{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def small_pairs(tmp_path_factory) -> Path:
    """12 rows, each with an error_injection, a language_bias and a vision_bias negative (images embedded)."""
    return pairs_file(tmp_path_factory.mktemp("pairs") / "pairs.parquet", make_rows(12))
