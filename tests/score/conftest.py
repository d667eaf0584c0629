"""Fixtures for the score tests: one torch thread (the tiny models and ``small_pairs`` are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Two shared cores: one thread each avoids 20x slower spin-waiting under load."""
