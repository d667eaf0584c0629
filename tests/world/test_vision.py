"""Recipe ``pretrained_vision``: a tower pretrained on pictures alone, then frozen through the base's phases."""

import torch
from safetensors.torch import load_file

from unprior.io import cache_root, read_json, read_jsonl
from unprior.world.base import train_base
from unprior.world.config import BaseConfig, VisionPretrainConfig
from unprior.world.vision import NO_PRIOR, cell_features, cell_labels, corpus_config


def _cfg(world, out, **kw):
    vision = VisionPretrainConfig(images=64, steps=6, batch_size=16)
    return BaseConfig(world_dir=str(world), out=str(out), recipe="pretrained_vision", vision=vision,
                      pretrain_steps=2, align_steps=2, sft_steps=2, batch_size=8, threads=1, **kw)


def test_corpus_has_no_colour_prior_and_other_layouts():
    from unprior.world.config import WorldConfig

    world = WorldConfig(seed=3, prior_strength=0.95)
    corpus = corpus_config(world, images=100)
    assert corpus.prior_strength == NO_PRIOR and corpus.seed != world.seed and corpus.n_train == 100
    assert world.prior_strength == 0.95  # the world's own config is untouched


def test_cell_labels_follow_the_objects():
    rows = [{"task": "describe", "image": "a.png", "meta": {"objects": [
        {"category": "banana", "colour": "red", "cell": 2}]}}, {"task": "attribute", "image": "a.png"}]
    paths, cat, col = cell_labels(rows, cells=4)
    assert paths == ["a.png"]
    assert cat.tolist() == [[8, 8, 1, 8]]  # banana is category 1; 8 = empty
    assert col.tolist() == [[-100, -100, 0, -100]]  # red is colour 0; empty cells are ignored


def test_cell_features_average_the_patches_of_each_cell():
    class Tower(torch.nn.Module):
        def forward(self, pixel_values):
            n = pixel_values.shape[0]
            hidden = torch.arange(17, dtype=torch.float).view(1, 17, 1).expand(n, 17, 1)  # CLS + 4x4 patches
            return type("Out", (), {"last_hidden_state": hidden})

    feats = cell_features(Tower(), torch.zeros(2, 3, 8, 8), cells_per_row=2)
    # patches 1..16 row-major on a 4x4 grid; cell 0 = patches (1, 2, 5, 6)
    assert feats.shape == (2, 4, 1) and feats[0, :, 0].tolist() == [3.5, 5.5, 11.5, 13.5]


def test_the_tower_is_pretrained_apart_and_frozen_in_the_base(tiny_world, tmp_path, one_thread):
    lines = []
    out = train_base(_cfg(tiny_world, tmp_path / "base"), log=lines.append)
    towers = list(cache_root().glob("vision/*"))
    assert len(towers) == 1, towers
    tower = load_file(towers[0] / "model.safetensors")
    base = load_file(out / "model.safetensors")
    inside = {k.split("vision_tower.", 1)[1]: v for k, v in base.items() if "vision_tower." in k}
    assert inside and set(inside) == set(tower)
    assert all(torch.equal(inside[k], tower[k]) for k in tower)  # frozen through pretrain, align and sft
    phases = [r["phase"] for r in read_jsonl(out / "train_log.jsonl")]
    assert phases == ["pretrain"] * 2 + ["align"] * 2 + ["sft"] * 2
    assert read_json(towers[0] / "manifest.json")["kind"] == "unprior-vision-tower"
    again = []
    train_base(_cfg(tiny_world, tmp_path / "control", overwrite=True), log=again.append)
    assert any("vision tower: reusing" in line for line in again)  # one tower for the base and the control
