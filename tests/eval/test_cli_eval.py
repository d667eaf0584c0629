"""``unprior eval run | compare | frontier`` through the CLI dispatch, on the tiny base and world."""

from __future__ import annotations

import json

from unprior.cli import main, positional_runs
from unprior.config import from_dict
from unprior.eval.config import EvalConfig
from unprior.eval.runner import run_eval

from .helpers import ScriptedGenerator


def test_bare_arguments_of_eval_compare_are_the_runs():
    assert positional_runs(["a", "b/c", "png=x.png"]) == ["png=x.png", 'runs=["a", "b/c"]']
    assert positional_runs(["runs=[a]"]) == ["runs=[a]"]


def _scripted_run(world, out, label, answer, quiet_console):
    cfg = from_dict(EvalConfig, {"benchmark": "world", "label": label, "out": str(out), "limit": 5,
                                 "options": {"world_dir": str(world)}})
    run_eval(cfg, ScriptedGenerator(default=answer), console=quiet_console)
    return out


def test_eval_compare_takes_run_directories_positionally(tiny_world, tmp_path, capsys, quiet_console):
    a = _scripted_run(tiny_world, tmp_path / "a", "always-yes", "Yes, the apple is red.", quiet_console)
    b = _scripted_run(tiny_world, tmp_path / "b", "always-no", "No, it is blue.", quiet_console)
    png = tmp_path / "cmp.png"
    assert main(["eval", "compare", str(a), str(b), f"png={png}"]) == 0
    out = capsys.readouterr().out
    assert "always-yes" in out and "always-no" in out and "cf_pope_adversarial_fp" in out
    assert png.stat().st_size > 1000
    assert main(["eval", "compare", str(a), "metrics=[world/cf_attribute_accuracy]"]) == 0
    assert "id_attribute_accuracy" not in capsys.readouterr().out


def test_eval_run_and_frontier_end_to_end(tiny_world, tiny_base, tmp_path, capsys):
    run, frontier = tmp_path / "run", tmp_path / "frontier"
    assert main(["eval", "run", "benchmark=world", f"model={tiny_base}", f"options.world_dir={tiny_world}",
                 "limit=4", "batch_size=16", f"out={run}"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["model"]["label"] == "base" and results["decoding"]["do_sample"] is False
    assert results["n_generated"] == results["n_items"] > 0

    assert main(["eval", "frontier", f"model={tiny_base}", f"world_dir={tiny_world}", f"out={frontier}",
                 "limit=20", "bias_step=0.5"]) == 0
    data = json.loads((frontier / "frontier.json").read_text())
    assert len(data["curve"]) == 61 and set(data["best_cf_at_id"]) == {"0.90", "0.95"}
    assert (frontier / "frontier.png").stat().st_size > 1000
    n_rows = sum(1 for _ in (frontier / "slot_logprobs.jsonl").open())
    assert n_rows == data["n"]["test_id"] + data["n"]["test_cf"]

    capsys.readouterr()
    assert main(["eval", "compare", str(run), str(frontier)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "cf_accuracy_b0" in table[0] and "cf_attribute_accuracy" in table[0]
    assert len(table) == 3  # header, rule, one row: both runs are the model "base"


def test_eval_help_lists_fields(capsys):
    for command in ("run", "compare", "frontier"):
        assert main(["eval", command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "adapter = " in out and "runs = " in out and "bias_step = " in out
