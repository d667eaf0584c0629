"""Fixtures for the eval tests."""

from __future__ import annotations

import io

import pytest
from rich.console import Console


@pytest.fixture
def quiet_console():
    """A console that swallows progress bars and summaries."""
    return Console(file=io.StringIO(), force_terminal=False)
