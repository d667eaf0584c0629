"""Model tests run on one torch thread (small tensors: threads only add contention on a shared machine)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The shared ``one_thread`` fixture (tests/conftest.py) for every model test."""
