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


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small world (800 train / 60 test images per split), built once per session.

    Colours are easier to read than in the default world (saturation 0.5-0.9), so that a base trained for a few
    seconds already looks at the image, while the colour prior (0.95) still dominates counterfactual answers.
    """
    from unprior.world.build import build_world
    from unprior.world.config import ImageConfig, WorldConfig

    image = ImageConfig(saturation_lo=0.5, saturation_hi=0.9, hue_jitter=4.0)
    out = tmp_path_factory.mktemp("world") / "world"
    return build_world(WorldConfig(out=str(out), n_train=800, n_test=60, image=image))


@pytest.fixture(scope="session")
def tiny_base(tiny_world, tmp_path_factory):
    """The biased tiny base VLM trained on ``tiny_world`` (about 20 s on one CPU thread), once per session."""
    import torch

    from unprior.world.base import train_base
    from unprior.world.config import BaseConfig

    torch.set_num_threads(1)
    cfg = BaseConfig(world_dir=str(tiny_world), out=str(tmp_path_factory.mktemp("base") / "base"),
                     pretrain_steps=30, sft_steps=500, batch_size=32, lr=2e-3, threads=1)
    return train_base(cfg, log=lambda *_: None)


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
