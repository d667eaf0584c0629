"""Test-wide settings: offline, deterministic, quiet, and a throwaway cache dir."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def pytest_addoption(parser):
    parser.addoption("--reverse-order", action="store_true",
                     help="run the collected tests last to first (checks that no test depends on an earlier one)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse-order"):
        items.reverse()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts on one torch thread, whatever ran before it (a stage run leaves its own count behind):
    results do not depend on test order, and two shared cores do not spin-wait under load."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets a private unprior cache unless it sets one itself."""
    monkeypatch.setenv("UNPRIOR_CACHE", str(tmp_path_factory.getbasetemp() / "unprior-cache"))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small world (800 train / 60 test images per split), built once per session (tests/world/organism.py)."""
    from world.organism import tiny_world_config

    from unprior.world.build import build_world

    return build_world(tiny_world_config(tmp_path_factory.mktemp("world") / "world"))


@pytest.fixture(scope="session")
def tiny_base(tiny_world, tmp_path_factory):
    """The biased tiny base VLM trained on ``tiny_world`` on one torch thread (about 30 s), once per session.

    ``train_base`` itself trains on the config's thread count and restores the caller's; the kernel paths are
    pinned when unprior is imported (unprior.numerics), so the weights are the same on every machine of our kind.
    """
    from world.organism import tiny_base_config

    from unprior.world.base import train_base

    cfg = tiny_base_config(tiny_world, tmp_path_factory.mktemp("base") / "base", seed=0, threads=1)
    return train_base(cfg, log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_base_quality(tiny_base, tiny_world, tmp_path_factory):
    """Every quality of the session's base that a test asserts (tests/world/organism.py), measured once."""
    from world.organism import base_quality

    return base_quality(tiny_base, tiny_world, threads=1)


@pytest.fixture(scope="session")
def family_model(tmp_path_factory):
    """``family_model("qwen2_vl")`` -> directory of a saved tiny random model of that family (built once)."""
    from score.helpers import tiny_model

    built = {}

    def get(family):
        if family not in built:
            built[family] = tiny_model(family, tmp_path_factory.mktemp(f"model-{family}"))
        return built[family]

    return get


@pytest.fixture
def scoring_calls(monkeypatch):
    """How often ``unprior score`` really scored: calls of ``score_pairs`` / ``score_corrupted`` (a cache hit calls
    neither), as ``{"pairs": n, "corrupted": n}``."""
    from unprior.score import reference as reference_module

    calls = {"pairs": 0, "corrupted": 0}
    for name, key in (("score_pairs", "pairs"), ("score_corrupted", "corrupted")):
        real = getattr(reference_module, name)

        def counted(*args, _real=real, _key=key, **kwargs):
            calls[_key] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(reference_module, name, counted)
    return calls


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored after: on two shared cores, more threads spin-wait under load."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
