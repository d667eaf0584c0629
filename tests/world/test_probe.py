"""``unprior world probe``: the balanced fit set, the probe itself, and a run on the tiny world."""

from __future__ import annotations

import json

import pytest
import torch

from unprior.config import ConfigError, from_dict
from unprior.world.config import ProbeConfig
from unprior.world.probe import _objects, fit_probe, run_probe


def _row(image, objects):
    return {"task": "describe", "image": image, "meta": {"objects": objects}}


def test_fit_set_is_capped_per_category_and_colour():
    red = {"category": "apple", "colour": "red", "cell": 0}
    blue = {"category": "apple", "colour": "blue", "cell": 1}
    rows = [_row(f"i{k}.png", [red, blue] if k == 3 else [red]) for k in range(6)]
    images, objects = _objects(rows, per_cell=2)
    assert images == ["i0.png", "i1.png", "i3.png"]  # i3 still brings its blue apple; i2, i4, i5 bring nothing
    assert objects[-1] == [blue]
    assert sum(len(o) for o in _objects(rows, per_cell=None)[1]) == 7


def test_probe_separates_linearly_separable_colours():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    x = torch.nn.functional.one_hot(y, 4).float() * 3 + 0.3 * torch.randn(400, 4, generator=g)
    probe = fit_probe(x, y, classes=4, steps=100, weight_decay=1e-3)
    assert (probe(x).argmax(-1) == y).float().mean() > 0.98
    noise = torch.randn(400, 4, generator=g)  # no signal: about chance
    assert (fit_probe(noise, y, 4, 100, 1e-3)(noise).argmax(-1) == y).float().mean() < 0.5


def test_probe_on_the_tiny_world(tiny_world, tiny_base, tmp_path, capsys):
    assert run_probe(ProbeConfig(models=[str(tiny_base)], world_dir=str(tiny_world), per_cell=5, steps=50,
                                 out=str(tmp_path))) == 0
    acc = json.loads((tmp_path / "probe.json").read_text())["accuracy"][str(tiny_base)]
    assert set(acc) == {"train", "test_id", "test_cf"} and all(0.0 <= v <= 1.0 for v in acc.values())
    assert acc["train"] > 1 / 8  # the tiny base's patch features carry some colour
    assert "colour probe accuracy" in capsys.readouterr().out


def test_probe_config_errors():
    with pytest.raises(ConfigError, match="models"):
        from_dict(ProbeConfig, {"world_dir": "w"})
