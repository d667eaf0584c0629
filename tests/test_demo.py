"""``unprior demo`` at tiny sizes on the session's tiny world and base: the report's structure, the debiasing effect,
and a second run that reuses every cached output."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from world.organism import Threshold

from unprior.config import ConfigError, load_config, to_dict
from unprior.demo import COLUMNS, LABELS, DemoConfig, DemoPairsConfig, DemoTrainConfig, PoolConfig, run_demo

TRAINED = ("sft", "dpo", "napo")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def smoke_config(world, base, out) -> DemoConfig:
    return DemoConfig(world_dir=str(world), base_dir=str(base), control=False, out=str(out), threads=1,
                      pool=PoolConfig(images=150, noncanonical_share=0.5),
                      pairs=DemoPairsConfig(max_new_tokens=24, batch_size=64),
                      train=DemoTrainConfig(steps=80, batch_size=16, lr=3e-4), eval_batch_size=128)


@pytest.fixture(scope="module")
def demo_runs(tiny_world, tiny_base, tmp_path_factory):
    """The smoke demo run twice into the same report folder (the second run from the cache): (out, logs, seconds)."""
    root = tmp_path_factory.mktemp("demo")
    cfg = smoke_config(tiny_world, tiny_base, root / "report")
    logs, seconds = [], []
    with pytest.MonkeyPatch.context() as mp:  # a module fixture runs before the per-test cache isolation
        mp.setenv("UNPRIOR_CACHE", str(root / "cache"))
        for _ in range(2):
            buf = io.StringIO()
            t0 = time.perf_counter()
            assert run_demo(cfg, console=Console(file=buf, width=160)) == 0
            seconds.append(time.perf_counter() - t0)
            logs.append(buf.getvalue())
    return root / "report", logs, seconds


def test_report_folder_structure(demo_runs):
    out, logs, _ = demo_runs
    for name in ("report.md", "results.json", "timings.json", "metrics.png", "noise_sum.png", "noise_mean.png",
                 "napo_q_gamma.png", "noise_report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("demo", "pairs", "score", *(f"train_{m}" for m in TRAINED)):
        assert (out / "configs" / f"{name}.yaml").is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert list(results["table"]) == ["base", *TRAINED]
    for row in results["table"].values():
        assert set(row) == {title for _, title in COLUMNS}
        assert all(v is None or 0.0 <= v <= 1.0 for v in row.values())
    assert set(results["noise_report"]["kinds"]) == {"error_injection", "image_weakening", "language_bias",
                                                     "vision_bias"}
    report = (out / "report.md").read_text()
    for m in ("base", *TRAINED):
        assert f"| {LABELS[m]} |" in report, m
        assert LABELS[m] in logs[0]  # the printed table
    for title in ("Methods", "SFT anchor", "Pairs", "Noise report", "Reproduce", "napo_q_gamma.png"):
        assert title in report, title
    assert "[browse/index.html](browse/index.html)" in report and (out / "browse" / "index.html").is_file()
    browse = json.loads((out / "browse" / "manifest.json").read_text())  # the pair browser, with margins
    assert browse["rows"] == results["pairs"]["summary"]["rows"] and browse["score"]["entry"] == results["reference"]


def test_napo_metrics_hold_q_and_gamma(demo_runs):
    results = json.loads((demo_runs[0] / "results.json").read_text())
    lines = Path(results["methods"]["napo"]["train_dir"], "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines if '"loss"' in line]
    assert {"q/language_bias", "q/vision_bias", "gamma/error_injection"} <= set(metrics[-1])


DEMO_THRESHOLDS = (
    Threshold("demo_trained_cf_gain", ">=", 0.01, worst=0.029),
    Threshold("demo_id_cost", "<=", 0.1, worst=0.0),
    Threshold("demo_dpo_margin", ">=", 0.05, worst=0.201),
    Threshold("demo_napo_vision_margin", ">=", 1.0, worst=6.619),
)
"""What the smoke demo asserts, each below its worst case over base seeds 0-4 at 1 and 2 threads (bench/margins.py):
the best trained method gains CF accuracy over the base (SFT, DPO or NaPO; 102 CF questions, so 0.01 is one
answer), DPO and NaPO cost at most 0.1 ID accuracy, and the pairwise terms moved the policy the pairs' way: DPO's
late reward margin on both BPO kinds, NaPO's on its vision-biased kind (the one dynamic γ weights; its other kinds'
margins go to about zero on some seeds). "DPO or NaPO beats the base by 0.03", the earlier assertion, is not robust
at smoke size: it ranged from -0.020 (seed 2, 2 threads) to 0.118; the full-size study measures it."""


def _late_margins(train_dir: str, last: int = 4) -> dict[str, float]:
    """Mean of ``rewards/margins/<kind>`` over the last ``last`` logged steps of a trainer run."""
    rows = [json.loads(line) for line in Path(train_dir, "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    keys = [k for k in rows[-1] if k.startswith("rewards/margins/")]
    return {k.rsplit("/", 1)[1]: sum(r[k] for r in rows[-last:]) / len(rows[-last:]) for k in keys}


def demo_effect(results: dict) -> dict[str, float]:
    """The smoke demo's qualities from its ``results.json``."""
    table, methods = results["table"], results["methods"]
    base = table["base"]
    return {
        "demo_trained_cf_gain": max(table[m]["CF attr acc"] for m in TRAINED) - base["CF attr acc"],
        "demo_id_cost": base["ID attr acc"] - min(table[m]["ID attr acc"] for m in ("dpo", "napo")),
        "demo_dpo_margin": min(_late_margins(methods["dpo"]["train_dir"]).values()),
        "demo_napo_vision_margin": _late_margins(methods["napo"]["train_dir"])["vision_bias"],
    }


@pytest.mark.parametrize("threshold", DEMO_THRESHOLDS, ids=lambda t: t.metric)
def test_training_moves_the_model_the_pairs_way(demo_runs, threshold):
    results = json.loads((demo_runs[0] / "results.json").read_text())
    assert threshold.holds(demo_effect(results)), results["table"]


def test_second_run_reuses_every_cached_output(demo_runs):
    out, logs, seconds = demo_runs
    timings = json.loads((out / "timings.json").read_text())
    assert all(timings["cached"].values()), timings
    assert "reusing" in logs[1] and "cache hit" in logs[1]
    assert seconds[1] < seconds[0] / 2


def test_shipped_configs_load():
    default = load_config(DemoConfig, CONFIGS / "demo.yaml")
    assert to_dict(default) == to_dict(DemoConfig())  # configs/demo.yaml spells out the defaults
    smoke = load_config(DemoConfig, CONFIGS / "demo_smoke.yaml")
    assert smoke.pool.images < default.pool.images and smoke.train.steps < default.train.steps


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="methods"):
        load_config(DemoConfig, None, ["methods=[sft,ppo]"])
    with pytest.raises(ConfigError, match=r"pool\.noncanonical_share"):
        load_config(DemoConfig, None, ["pool.noncanonical_share=1.5"])


def test_the_control_has_no_prior_and_its_own_sft_budget():
    from unprior.pipeline.config import NO_PRIOR, control_config

    pv = load_config(DemoConfig, CONFIGS / "demo_pretrained_vision.yaml")
    ctrl = control_config(pv.base, pv.control_sft_steps)
    assert (ctrl.sft_steps, pv.base.sft_steps) == (1300, 400)
    assert ctrl.world.prior_strength == NO_PRIOR and ctrl.recipe == pv.base.recipe and ctrl.seed == pv.base.seed
    default = DemoConfig()
    assert control_config(default.base, default.control_sft_steps).sft_steps == 2 * default.base.sft_steps
    assert control_config(default.base, 0).sft_steps == default.base.sft_steps
