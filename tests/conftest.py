"""Test-wide settings: offline, deterministic, quiet, and a throwaway cache dir."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def pytest_addoption(parser):
    parser.addoption("--reverse-order", action="store_true",
                     help="run the collected tests last to first (checks that no test depends on an earlier one)")


NUMERICS = {
    # learned-quality thresholds: a tiny model trained from a seed, measured against a threshold
    "tests/world/test_base.py": "the session base's POPE, ID/CF and prior thresholds; same seed, same weights",
    "tests/eval/test_world_model.py": "the session base's thresholds through the eval stage",
    "tests/train/test_world.py": "held-out preference accuracy gained by a DPO run",
    "tests/test_demo.py": "the smoke demo's trained-method thresholds",
    # equivalence: two ways to compute the same run agree within fp32 tolerances
    "tests/train/test_distributed.py": "1 process vs 2 (torchrun, gloo)",
    "tests/train/test_fsdp.py": "1 process vs FSDP2 on 2",
    "tests/losses/test_distributed_mean.py": "two gloo ranks' global means vs one process",
    "tests/train/test_train.py": "kill and resume give the uninterrupted run; bf16 reference",
    "tests/train/test_mdpo.py": "mDPO terms: shared prefix vs naive forward",
    "tests/forward/test_prefix.py": "shared-prefix forward vs the naive forward, with gradients",
    "tests/forward/test_logps.py": "the tiled LM head vs log_softmax, with gradients",
    "tests/bench/test_geometry.py": "the plain head vs the tiled head and TRL's fused kernel",
    "tests/losses/test_trl_parity.py": "our DPO vs TRL's DPOTrainer, loss and gradients",
    "tests/models/test_generate.py": "batched generation vs one prompt at a time",
    "tests/models/test_budget.py": "budget-split generation batches vs one batch",
    "tests/pairs/test_kill_resume.py": "a killed pairs run resumes to the uninterrupted bytes",
    "tests/eval/test_runner.py": "a killed eval run resumes to the uninterrupted answers",
    "tests/eval/test_world.py": "a killed world eval resumes to the uninterrupted answers",
    "tests/test_study.py": "a study resumes end to end to the same results",
}
"""Modules marked ``numerics``: every learned-quality threshold and every equivalence test. ``make test-kernels``
(run by ``.ci/run`` after ``make test``) runs them again under torch's baseline CPU kernels, which sum floats in
another order, as another CPU would (docs/tests.md, "Two kernel paths")."""


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))
    missing = [m for m in NUMERICS if not (root / m).is_file()]
    if missing:  # a renamed module would silently leave the second kernel pass
        raise pytest.UsageError(f"tests/conftest.py NUMERICS names missing modules: {missing}")
    for item in items:
        if Path(str(item.path)).relative_to(root).as_posix() in NUMERICS:
            item.add_marker(pytest.mark.numerics)
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


@pytest.fixture(scope="session")
def small_pairs(tmp_path_factory) -> Path:
    """12 rows, each with an error_injection, a language_bias and a vision_bias negative (images embedded)."""
    from score.helpers import make_rows, pairs_file

    return pairs_file(tmp_path_factory.mktemp("pairs") / "pairs.parquet", make_rows(12))


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
