"""Fixtures for the eval tests."""

from __future__ import annotations

import io

import pytest
from rich.console import Console


@pytest.fixture
def quiet_console():
    """A console that swallows progress bars and summaries."""
    return Console(file=io.StringIO(), force_terminal=False)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small world (400 train / 60 test images per split), built once per session."""
    from unprior.world.build import build_world
    from unprior.world.config import WorldConfig

    return build_world(WorldConfig(out=str(tmp_path_factory.mktemp("world") / "world"), n_train=400, n_test=60))


@pytest.fixture(scope="session")
def tiny_base(tiny_world, tmp_path_factory):
    """The biased tiny base VLM trained on ``tiny_world`` (about 15 s on one CPU thread), once per session."""
    import torch

    from unprior.world.base import train_base
    from unprior.world.config import BaseConfig

    torch.set_num_threads(1)
    cfg = BaseConfig(world_dir=str(tiny_world), out=str(tmp_path_factory.mktemp("base") / "base"),
                     pretrain_steps=30, sft_steps=150, batch_size=32, threads=1)
    return train_base(cfg, log=lambda *_: None)
