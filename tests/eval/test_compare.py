"""``compare``: rows per model, columns per benchmark metric, best marked, approximations flagged, a PNG drawn."""

from __future__ import annotations

import json

import pytest

from unprior.eval.compare import run_compare

from .helpers import pope_config


def _results(path, label, benchmark, metrics, info, headline, approximate=False):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({
        "benchmark": benchmark, "model": {"label": label}, "metrics": metrics, "headline": headline,
        "metric_info": {k: {"higher_is_better": v, "digits": 1} for k, v in info.items()},
        "provenance": {"approximate": approximate}}))
    return path


def _table_runs(tmp_path):
    return [
        _results(tmp_path / "base-vlind", "llava-1.5-7b", "vlind", {"s_cb": 0.0, "s_lp": 0.0, "s_ck": 50.0},
                 {"s_cb": True, "s_lp": True, "s_ck": True}, ["s_cb", "s_lp"]),
        _results(tmp_path / "base-objhal", "llava-1.5-7b", "object_halbench",
                 {"response_hall": 53.6, "mention_hall": 25.2}, {"response_hall": False, "mention_hall": False},
                 ["response_hall", "mention_hall"]),
        _results(tmp_path / "napo-vlind", "napo", "vlind", {"s_cb": 58.9, "s_lp": 44.0, "s_ck": 50.0},
                 {"s_cb": True, "s_lp": True, "s_ck": True}, ["s_cb", "s_lp"]),
        _results(tmp_path / "napo-objhal", "napo", "object_halbench", {"response_hall": 25.7, "mention_hall": 6.2},
                 {"response_hall": False, "mention_hall": False}, ["response_hall", "mention_hall"],
                 approximate=True),
    ]


def test_table_groups_runs_by_model_and_marks_best(tmp_path):
    text = run_compare(_table_runs(tmp_path))
    lines = text.splitlines()
    assert lines[0].split() == ["model", "vlind:", "s_cb", "↑", "vlind:", "s_lp", "↑", "object_halbench:",
                                "response_hall", "↓", "object_halbench:", "mention_hall", "↓"]
    assert lines[2].split() == ["llava-1.5-7b", "0.0", "0.0", "53.6", "25.2"]
    assert lines[3].split() == ["napo", "58.9*", "44.0*", "25.7*~", "6.2*~"]
    assert "approximate protocol" in lines[-1]


def test_metric_selection_and_chart(tmp_path):
    runs = _table_runs(tmp_path)
    text = run_compare(runs, tmp_path / "chart.png", metrics=["vlind/s_ck"])
    assert text.splitlines()[2].split() == ["llava-1.5-7b", "50.0*"]  # a tie: both rows are best
    png = (tmp_path / "chart.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert "s_ck" in run_compare(runs, metrics=["all"])
    with pytest.raises(ValueError, match="none of the metrics"):
        run_compare(runs, metrics=["pope/f1"])


def test_duplicate_label_and_missing_results(tmp_path):
    runs = _table_runs(tmp_path)
    dup = _results(tmp_path / "again", "napo", "vlind", {"s_cb": 1.0}, {"s_cb": True}, ["s_cb"])
    with pytest.raises(ValueError, match="two vlind runs are labelled 'napo'"):
        run_compare([*runs, dup])
    with pytest.raises(FileNotFoundError, match=r"no results\.json"):
        run_compare([tmp_path / "nowhere"])


def test_compare_real_runs(tmp_path, quiet_console):
    from unprior.eval.runner import run_eval

    from .helpers import ScriptedGenerator

    a = run_eval(pope_config(tmp_path, tmp_path / "a", label="always-yes"), ScriptedGenerator(default="Yes"),
                 console=quiet_console)
    b = run_eval(pope_config(tmp_path, tmp_path / "b", label="always-no"), ScriptedGenerator(default="No"),
                 console=quiet_console)
    assert a["metrics"]["random/f1"] > b["metrics"]["random/f1"]
    text = run_compare([tmp_path / "a", tmp_path / "b" / "results.json"], tmp_path / "pope.png")
    assert "always-yes" in text and "pope: random/f1 ↑" in text and (tmp_path / "pope.png").is_file()


def test_compare_config_entry(tmp_path, capsys):
    from unprior.config import ConfigError, load_config
    from unprior.eval.compare import run_compare_config
    from unprior.eval.config import CompareConfig

    runs = [str(p) for p in _table_runs(tmp_path)]
    cfg = load_config(CompareConfig, None, [f"runs=[{','.join(runs)}]", f"png={tmp_path / 'c.png'}"])
    assert run_compare_config(cfg) == 0
    assert "napo" in capsys.readouterr().out and (tmp_path / "c.png").is_file()
    with pytest.raises(ConfigError, match="runs"):
        load_config(CompareConfig, None, [])
