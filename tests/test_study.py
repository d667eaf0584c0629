"""``unprior study`` on the session's tiny world and base: units, resumption, the summary's arithmetic."""

from __future__ import annotations

import json

import pytest

from unprior.config import ConfigError, from_dict, load_config
from unprior.demo import DemoConfig, DemoPairsConfig, DemoTrainConfig, PoolConfig
from unprior.study import (
    ArmConfig,
    StudyConfig,
    derive,
    mean_std,
    objective_for_arm,
    run_study,
    write_summary,
)


def test_objective_for_arm_applies_set_and_drop():
    arm = ArmConfig(objective="napo", set={"gamma": "fixed", "kinds.language_bias.loss": "dpo"},
                    drop=["vision_bias"])
    obj = objective_for_arm(arm, beta=0.2, sft_weight=1.0)
    assert sorted(obj.kinds) == ["error_injection", "language_bias"]
    assert obj.gamma == "fixed" and obj.kinds["language_bias"].loss == "dpo" and obj.beta == 0.2
    assert obj.sft_weight == 1.0
    sft = objective_for_arm(ArmConfig(objective="sft"), beta=0.1, sft_weight=1.0)
    assert sft.kinds["error_injection"].weight == 0.0


def test_bad_arm_is_refused_with_its_field():
    with pytest.raises(ConfigError, match=r"kinds\.language_bias\.loss"):
        objective_for_arm(ArmConfig(set={"kinds.language_bias.loss": "nope"}), 0.1, 1.0)
    with pytest.raises(ConfigError, match=r"no kind 'original'"):
        objective_for_arm(ArmConfig(drop=["original"]), 0.1, 1.0)
    with pytest.raises(ConfigError, match=r"arms\.a\.pool"):
        from_dict(StudyConfig, {"arms": {"a": {"pool": "elsewhere"}}})
    with pytest.raises(ConfigError, match="compare"):
        from_dict(StudyConfig, {"arms": {"a": {}}, "compare": [["a", "b"]]})


def test_arm_train_overrides_are_validated_and_applied():
    from unprior.study.grid import train_config_for

    cfg = StudyConfig(arms={"v": ArmConfig(train={"train_vision": True, "steps": 7})})
    train = train_config_for(cfg, cfg.arms["v"], seed=2, model="m", pairs="p.parquet")
    assert train["train_vision"] is True and train["steps"] == 7 and train["seed"] == 2 and train["out"] == ""
    assert train_config_for(cfg, ArmConfig(), 0, "m", "p.parquet")["train_vision"] is False
    with pytest.raises(ConfigError, match="cannot be overridden"):
        from_dict(StudyConfig, {"arms": {"a": {"train": {"objective": {}}}}})
    with pytest.raises(ConfigError, match="steps"):
        train_config_for(cfg, ArmConfig(train={"steps": -1}), 0, "m", "p.parquet")


def test_an_arm_trains_with_the_demos_train_config():
    """Every field of ``demo.train`` reaches a study arm as it reaches the demo's method (``train_vision`` once did
    not); only the seed (the study's) and ``out`` (set per unit) differ."""
    from pathlib import Path

    from rich.console import Console

    from unprior.config import to_dict
    from unprior.pipeline.steps import Demo, demo_train_config
    from unprior.study.grid import train_config_for

    demo = load_config(DemoConfig, None, ["train.train_vision=true", "train.steps=7", "train.lr=1e-4", "threads=1",
                                          "train.max_length=96", "train.beta=0.2", "train.sft_weight=0.5"])
    d = Demo(demo, Console(), Path("unused"), models={"base": Path("m")}, pairs_dir=Path("p"))
    cfg = StudyConfig(demo=demo, threads=1, arms={m: ArmConfig(objective=o) for m, o in
                                                  (("sft", "sft"), ("dpo", "bpo"), ("napo", "napo"))})
    for method, arm in cfg.arms.items():
        study = train_config_for(cfg, arm, seed=demo.train.seed, model="m", pairs=str(d.pairs_file))
        assert study == {**to_dict(demo_train_config(d, method, Path())), "out": ""}
        assert study["train_vision"] is True and study["steps"] == 7


def test_mean_std_is_the_sample_std():
    m, s = mean_std([0.4, 0.5, 0.6])
    assert m == pytest.approx(0.5) and s == pytest.approx(0.1)
    assert mean_std([0.3]) == (0.3, 0.0)


def _result(arm, seed, **metrics):
    base = {"id": 0.9, "cf": 0.3, "frontier": 0.4, "prior_follow": 0.5, "pope_adv_fp": 0.3}
    return {"arm": arm, "seed": seed, "metrics": {**base, **metrics}}


def test_gap_closed_and_id_cost_use_each_seeds_base(tmp_path):
    results = [_result("base", 0, frontier=0.4, id=0.95), _result("base", 1, frontier=0.5, id=0.97),
               _result("control", 0, frontier=0.8),
               _result("x", 0, frontier=0.6, id=0.94), _result("x", 1, frontier=0.5, id=0.97)]
    by = derive(results)
    # seed 0: (0.6 - 0.4) / (0.8 - 0.4) = 0.5; seed 1: (0.5 - 0.5) / (0.8 - 0.5) = 0
    assert by["x"][0]["gap_closed"] == pytest.approx(0.5) and by["x"][1]["gap_closed"] == pytest.approx(0.0)
    assert by["x"][0]["id_cost"] == pytest.approx(0.01) and by["x"][1]["id_cost"] == pytest.approx(0.0)
    cfg = StudyConfig(arms={"x": ArmConfig()}, compare=[], seeds=[0, 1], title="t")
    summary = write_summary(cfg, results, tmp_path)
    assert summary["arms"]["x"]["mean"]["gap_closed"] == pytest.approx(0.25)
    assert "| x | " in (tmp_path / "summary.md").read_text()


def test_noise_pivot_and_comparisons(tmp_path):
    results = [_result("a0", 0, cf=0.5), _result("a3", 0, cf=0.4), _result("b0", 0, cf=0.45),
               _result("b3", 0, cf=0.44)]
    arms = {"a0": ArmConfig(group="A"), "a3": ArmConfig(group="A", noise=0.3),
            "b0": ArmConfig(group="B"), "b3": ArmConfig(group="B", noise=0.3)}
    cfg = StudyConfig(arms=arms, seeds=[0], compare=[["b3", "a3"]])
    summary = write_summary(cfg, results, tmp_path)
    assert summary["noise_pivot"]["A"]["0.3"]["cf"] == [0.4]
    assert summary["comparisons"][0]["cf"] == [pytest.approx(0.04)]
    text = (tmp_path / "summary.md").read_text()
    assert "| A | 0.500 | 0.400 |" in text and "b3 − a3" in text
    assert (tmp_path / "noise.png").stat().st_size > 0 and "![" in text


def test_experiment_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.yaml")):
        cfg = load_config(StudyConfig, path)
        assert cfg.arms and cfg.out.startswith("experiments/results/"), path


def _planted_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "planted.py"
    spec = importlib.util.spec_from_file_location("planted", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_end_to_end_resumes(tiny_world, tiny_base, tmp_path):
    demo = DemoConfig(world_dir=str(tiny_world), base_dir=str(tiny_base), control=False, threads=1,
                      pool=PoolConfig(images=40), pairs=DemoPairsConfig(max_new_tokens=24, batch_size=64),
                      train=DemoTrainConfig(steps=4, batch_size=8), eval_batch_size=128, limit=10)
    arms = {"sft": ArmConfig(objective="sft"), "napo": ArmConfig(objective="napo"),
            "napo30": ArmConfig(objective="napo", noise=0.3, group="napo")}
    cfg = StudyConfig(demo=demo, seeds=[0], vary_base=False, pools={"balanced": 0.5}, arms=arms,
                      compare=[["napo", "sft"]], workers=1, out=str(tmp_path / "study"))
    assert run_study(cfg) == 0
    runs = sorted(p.stem for p in (tmp_path / "study" / "runs").glob("*.json"))
    assert runs == ["base-s0", "napo-s0", "napo30-s0", "sft-s0"]
    noisy = json.loads((tmp_path / "study" / "runs" / "napo30-s0.json").read_text())
    assert "noise-0.3" in noisy["pairs"] and noisy["train"]["late"]["q/language_bias"] is not None
    stamp = (tmp_path / "study" / "runs" / "sft-s0.json").stat().st_mtime_ns
    assert run_study(cfg) == 0  # everything done: nothing rerun
    assert (tmp_path / "study" / "runs" / "sft-s0.json").stat().st_mtime_ns == stamp
    assert "napo − sft" in (tmp_path / "study" / "summary.md").read_text()
    # experiments/planted.py on the noisy unit: planted and clean negatives are told apart and counted
    stats = _planted_script().unit_stats(noisy, str(tiny_base), beta=0.1)
    lb = stats["language_bias"]
    assert lb["planted"]["n"] > 0 and lb["clean"]["n"] > 0 and 0 < lb["planted"]["napo_weight"] < 1
