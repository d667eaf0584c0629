"""The world generator: determinism, split properties, priors at the configured strength, atomic output."""

import json
from collections import Counter

import numpy as np
import pytest

from unprior.io import OutputExistsError, read_jsonl
from unprior.world import build as world_build
from unprior.world.build import build_world, pope_negatives, sample_scene
from unprior.world.config import WorldConfig
from unprior.world.spec import CATEGORY_NAMES, PAIRS, canonical, partner


def small(tmp_path, name="w", **kw):
    return WorldConfig(out=str(tmp_path / name), n_train=120, n_test=40, **kw)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a = build_world(small(tmp_path, "a"))
    b = build_world(small(tmp_path, "b"))
    fa, fb = _files(a), _files(b)
    fa.pop(next(k for k in fa if k.name == "manifest.json"))
    fb.pop(next(k for k in fb if k.name == "manifest.json"))
    assert {k: v for k, v in fa.items() if k.name != "config.yaml"} == {
        k: v for k, v in fb.items() if k.name != "config.yaml"
    }
    c = build_world(small(tmp_path, "c", seed=1))
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()


def test_layout_and_manifest(tmp_path):
    root = build_world(small(tmp_path))
    man = json.loads((root / "manifest.json").read_text())
    assert man["kind"] == "unprior-world" and len(man["config_hash"]) == 12
    for split in ("train", "test_id", "test_cf"):
        rows = list(read_jsonl(root / f"{split}.jsonl"))
        assert rows and man["splits"][split]["rows"] == len(rows)
        for r in rows[:50]:
            assert not r["image"].startswith("/") and (root / r["image"]).is_file()
            assert r["prompt"] and r["answer"] and r["task"] in {"describe", "attribute", "exists"}
            assert r["meta"]["objects"]


def test_counterfactual_split_has_no_canonical_colour_and_no_partner(tmp_path):
    root = build_world(small(tmp_path))
    for r in read_jsonl(root / "test_cf.jsonl"):
        cats = {o["category"] for o in r["meta"]["objects"]}
        for o in r["meta"]["objects"]:
            assert o["colour"] != canonical(o["category"])
            assert partner(o["category"]) not in cats


def test_priors_hold_at_the_configured_strength():
    cfg = WorldConfig(prior_strength=0.8, pair_strength=0.7)
    rng = np.random.default_rng(0)
    objs = canon = pair_groups = full_pairs = 0
    for _ in range(4000):
        scene = sample_scene(cfg, rng)
        cats = {o.category for o in scene}
        objs += len(scene)
        canon += sum(o.colour == canonical(o.category) for o in scene)
        for a, b in PAIRS:
            if a in cats or b in cats:
                pair_groups += 1
                full_pairs += a in cats and b in cats
    assert canon / objs == pytest.approx(0.8, abs=0.02)
    assert full_pairs / pair_groups == pytest.approx(0.7, abs=0.02)


def test_no_prior_world_spreads_colours_evenly():
    cfg = WorldConfig(prior_strength=1 / 8)
    rng = np.random.default_rng(1)
    colours = Counter(o.colour for _ in range(3000) for o in sample_scene(cfg, rng) if o.category == "apple")
    shares = np.array(list(colours.values())) / sum(colours.values())
    assert len(colours) == 8 and shares.max() < 0.2


def test_pope_negatives_are_absent_and_adversarial_prefers_partners():
    rng = np.random.default_rng(0)
    present = {"apple", "frog"}
    for setting in ("random", "popular", "adversarial"):
        negs = pope_negatives(present, setting, 3, rng)
        assert len(negs) == 3 and not set(negs) & present
    assert set(pope_negatives(present, "adversarial", 2, rng)) == {"banana", "grape"}
    assert pope_negatives(present, "popular", 1, rng) == ["banana"]


def test_test_rows_carry_pope_settings_balanced(tmp_path):
    root = build_world(small(tmp_path))
    rows = [r for r in read_jsonl(root / "test_id.jsonl") if r["task"] == "exists"]
    by = Counter((r["meta"]["pope"], r["meta"]["label"]) for r in rows)
    for s in ("random", "popular", "adversarial"):
        assert by[(s, "yes")] == by[(s, "no")] > 0
    for r in rows:
        cats = {o["category"] for o in r["meta"]["objects"]}
        assert (r["meta"]["target"] in cats) == (r["meta"]["label"] == "yes")
        assert r["meta"]["target"] in CATEGORY_NAMES


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    cfg = small(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        build_world(cfg)
    cfg.overwrite = True
    assert (build_world(cfg) / "manifest.json").is_file()
    assert not (tmp_path / "w" / "keep.txt").exists()


def test_rebuild_into_out_reuses_the_same_world_and_refuses_another(tmp_path):
    cfg = small(tmp_path)
    out = build_world(cfg)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert build_world(cfg) == out and (out / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    cfg.seed += 1
    with pytest.raises(OutputExistsError, match="not empty"):
        build_world(cfg)


def test_killed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = world_build.generate_split

    def dies_on_second_split(cfg, split, root):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(cfg, split, root)

    monkeypatch.setattr(world_build, "generate_split", dies_on_second_split)
    with pytest.raises(KeyboardInterrupt):
        build_world(small(tmp_path))
    assert not (tmp_path / "w").exists()
    assert not list(tmp_path.glob(".w.partial-*"))


def test_cached_build_is_reused(tmp_path):
    cfg = WorldConfig(n_train=30, n_test=10)
    first = build_world(cfg)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert build_world(cfg) == first and (first / "manifest.json").stat().st_mtime_ns == stamp
