"""Test-wide settings: offline, deterministic, quiet, and a throwaway cache dir."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets a private unprior cache unless it sets one itself."""
    monkeypatch.setenv("UNPRIOR_CACHE", str(tmp_path_factory.getbasetemp() / "unprior-cache"))
