"""Fixtures for the train tests: tiny models and pairs files built once, one torch thread, a fresh accelerate
state per run."""

from __future__ import annotations

from pathlib import Path

import pytest
from score.helpers import make_rows, pairs_file

from .helpers import reset_accelerate


@pytest.fixture(autouse=True)
def _one_thread_fresh_accelerate(one_thread):
    yield
    reset_accelerate()


@pytest.fixture(scope="session")
def train_pairs(tmp_path_factory) -> Path:
    return pairs_file(tmp_path_factory.mktemp("pairs") / "train.parquet", make_rows(16))


@pytest.fixture(scope="session")
def eval_pairs(tmp_path_factory) -> Path:
    return pairs_file(tmp_path_factory.mktemp("pairs") / "eval.parquet", make_rows(6, seed=9))
