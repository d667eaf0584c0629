"""Fixtures for the score tests: one tiny model per family (built once per session) and small pairs files."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import make_rows, pairs_file


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Two shared cores: one thread each avoids 20x slower spin-waiting under load."""


@pytest.fixture(scope="session")
def small_pairs(tmp_path_factory) -> Path:
    """12 rows, each with an error_injection, a language_bias and a vision_bias negative (images embedded)."""
    return pairs_file(tmp_path_factory.mktemp("pairs") / "pairs.parquet", make_rows(12))
