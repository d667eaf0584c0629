"""The base-model stage end to end on a tiny world: it trains, saves, reloads, caches, and learned to look.

Thresholds are ones a broken pipeline cannot pass: a model that ignores the image answers POPE at chance (0.5) and
cannot tell a blank image from a scene; a model that ignores the text cannot reach the attribute accuracy.
"""

import json

import numpy as np
import pytest
from PIL import Image

from unprior.io import read_jsonl
from unprior.models.families import load_model
from unprior.models.generate import Prompt, generate
from unprior.world.base import train_base
from unprior.world.config import BaseConfig
from unprior.world.metrics import split_metrics


def _answers(model, processor, world, rows, blank=False):
    prompts = []
    for r in rows:
        image = Image.open(world / r["image"]).convert("RGB")
        if blank:
            image = Image.fromarray(np.full_like(np.asarray(image), 160))
        prompts.append(Prompt(r["prompt"], image))
    return generate(model, processor, prompts, batch_size=64, max_new_tokens=24)


def test_saved_like_a_hub_model(tiny_base):
    names = {p.name for p in tiny_base.iterdir()}
    assert {"model.safetensors", "config.json", "manifest.json", "base_config.yaml", "train_log.jsonl"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    log = [json.loads(line) for line in (tiny_base / "train_log.jsonl").read_text().splitlines()]
    sft = [r["loss"] for r in log if r["phase"] == "sft"]
    assert np.mean(sft[-20:]) < 0.5 * np.mean(sft[:5])


def test_base_looks_at_the_image_and_holds_the_prior(tiny_base, tiny_world):
    model, processor = load_model(tiny_base)
    ident = list(read_jsonl(tiny_world / "test_id.jsonl"))
    pope = [r for r in ident if r["task"] == "exists" and r["meta"]["pope"] == "random"]
    seen = split_metrics(pope, _answers(model, processor, tiny_world, pope))["pope"]["random"]
    blind = split_metrics(pope, _answers(model, processor, tiny_world, pope, blank=True))["pope"]["random"]
    assert seen["accuracy"] >= 0.7, seen
    assert blind["accuracy"] <= seen["accuracy"] - 0.15, (seen, blind)
    attr_id = [r for r in ident if r["task"] == "attribute"]
    attr_cf = [r for r in read_jsonl(tiny_world / "test_cf.jsonl") if r["task"] == "attribute"]
    m_id = split_metrics(attr_id, _answers(model, processor, tiny_world, attr_id))["attribute"]
    m_cf = split_metrics(attr_cf, _answers(model, processor, tiny_world, attr_cf))["attribute"]
    assert m_id["accuracy"] >= 0.85 and m_id["unparsed"] == 0.0
    assert m_cf["accuracy"] <= m_id["accuracy"] - 0.3
    assert m_cf["prior_follow"] >= 0.3


def test_finished_model_is_reused_and_a_different_config_refused(tiny_base, tiny_world):
    stamp = (tiny_base / "manifest.json").stat().st_mtime_ns
    same = BaseConfig(world_dir=str(tiny_world), out=str(tiny_base), pretrain_steps=30, sft_steps=500,
                      batch_size=32, lr=2e-3)
    assert train_base(same, log=lambda *_: None) == tiny_base
    assert (tiny_base / "manifest.json").stat().st_mtime_ns == stamp
    other = BaseConfig(world_dir=str(tiny_world), out=str(tiny_base), sft_steps=1)
    with pytest.raises(FileExistsError, match="overwrite=true"):
        train_base(other, log=lambda *_: None)


def test_base_key_includes_the_effective_thread_count():
    import torch

    from unprior.world.base import base_key

    one, two, default = BaseConfig(threads=1), BaseConfig(threads=2), BaseConfig(threads=0)
    assert base_key(one, "w") != base_key(two, "w")  # different float summation order, different weights
    assert base_key(default, "w") == base_key(BaseConfig(threads=torch.get_num_threads()), "w")
    assert base_key(one, "w") != base_key(one, "other world")


def test_a_damaged_or_half_written_base_is_trained_again_never_loaded(tiny_world, tmp_path, one_thread):
    out = tmp_path / "base"
    cfg = BaseConfig(world_dir=str(tiny_world), out=str(out), pretrain_steps=1, sft_steps=2, batch_size=4, threads=1)
    lines: list[str] = []
    train_base(cfg, log=lines.append)
    whole = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    train_base(cfg, log=lines.append)
    assert any("damaged (model.safetensors" in line for line in lines)
    assert (out / "model.safetensors").read_bytes() == whole  # same seed, same numerics: the same weights
    (out / "manifest.json").unlink()  # killed before the manifest: not a finished model
    lines.clear()
    train_base(cfg, log=lines.append)
    assert not any("reusing" in line for line in lines) and (out / "manifest.json").is_file()
    lines.clear()
    train_base(cfg, log=lines.append)
    assert any("reusing" in line for line in lines)


def test_base_key_includes_the_kernel_paths(monkeypatch):
    from unprior.world.base import base_key

    cfg = BaseConfig(threads=1)
    portable = base_key(cfg, "w")
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    assert base_key(cfg, "w") != portable
