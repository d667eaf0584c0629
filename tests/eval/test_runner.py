"""The resumable runner: a kill loses at most the batch in flight, no item is generated twice, settings are checked."""

from __future__ import annotations

import io
import json

import pytest

from unprior.config import ConfigError, from_dict, load_config
from unprior.eval.config import EvalConfig
from unprior.eval.runner import RunMismatchError, run_eval

from .helpers import ScriptedGenerator, pope_config, pope_files


def test_resume_after_kill_generates_each_item_once(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run")
    first = ScriptedGenerator(default="No", fail_after=6)  # 2 batches of 3, then "killed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, first, console=quiet_console)
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"random/{i}" for i in range(6)]
    assert not (tmp_path / "run" / "results.json").exists()

    second = ScriptedGenerator(default="No")
    res = run_eval(cfg, second, console=quiet_console)
    assert second.seen == [f"random/{i}" for i in range(6, 10)]
    assert sorted(first.seen + second.seen) == sorted(f"random/{i}" for i in range(10))
    assert res["n_items"] == 10 and res["n_generated"] == 4
    assert res["metrics"]["random/yes_ratio"] == 0.0

    third = ScriptedGenerator()
    run_eval(cfg, third, console=quiet_console)
    assert third.seen == []  # everything is on disk: nothing regenerated


def test_torn_last_line_is_dropped_and_redone(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, ScriptedGenerator(fail_after=3), console=quiet_console)
    samples = tmp_path / "run" / "samples.jsonl"
    samples.write_text(samples.read_text() + '{"id": "random/3", "prompt": "Is th')  # killed mid-write
    gen = ScriptedGenerator()
    run_eval(cfg, gen, console=quiet_console)
    assert gen.seen[0] == "random/3"
    lines = samples.read_text().splitlines()
    assert len(lines) == 10 and all(json.loads(line) for line in lines)


def test_corrupt_line_in_the_middle_is_an_error(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, ScriptedGenerator(fail_after=3), console=quiet_console)
    samples = tmp_path / "run" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"samples.jsonl:2: not a valid JSON object"):
        run_eval(cfg, ScriptedGenerator(), console=quiet_console)


def test_changed_settings_or_prompts_refuse_to_mix(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run")
    run_eval(cfg, ScriptedGenerator(), console=quiet_console)
    hotter = pope_config(tmp_path, tmp_path / "run", temperature=0.7)
    with pytest.raises(RunMismatchError, match="decoding"):
        run_eval(hotter, ScriptedGenerator(), console=quiet_console)
    # the benchmark's prompt changed: the saved answers no longer belong to these items
    other_prompt = pope_config(tmp_path, tmp_path / "run")
    other_prompt.options["prompt_suffix"] = " Answer yes or no."
    with pytest.raises(RunMismatchError, match="another prompt or image"):
        run_eval(other_prompt, ScriptedGenerator(), console=quiet_console)
    # overwrite=true starts afresh
    fresh = ScriptedGenerator()
    run_eval(pope_config(tmp_path, tmp_path / "run", temperature=0.7, overwrite=True), fresh, console=quiet_console)
    assert len(fresh.seen) == 10


def test_rescore_without_a_backend_and_missing_answers(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run", limit=4)
    run_eval(cfg, ScriptedGenerator(), console=quiet_console)
    res = run_eval(cfg, None, console=quiet_console)  # all answers on disk: scoring only
    assert res["n_generated"] == 0 and res["n_items"] == 4
    with pytest.raises(RunMismatchError, match="6 of 10 items have no answer"):
        run_eval(pope_config(tmp_path, tmp_path / "run"), None, console=quiet_console)


def test_results_json_records_versions_model_decoding_and_hash(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run", model="/models/llava-1.5-7b", adapter="/ckpt/napo-lora",
                      num_beams=3)
    res = run_eval(cfg, ScriptedGenerator(), model_info={"revision": "abc123"}, console=quiet_console)
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk == res
    assert res["benchmark"] == "pope" and res["benchmark_version"] and res["scorer_version"]
    assert res["model"] == {"label": "napo-lora", "model": "/models/llava-1.5-7b", "adapter": "/ckpt/napo-lora",
                            "backend": "hf", "revision": "abc123"}
    assert res["decoding"] == {"do_sample": False, "temperature": 0.0, "top_p": 1.0, "num_beams": 3, "seed": 0,
                               "max_new_tokens": 16}
    assert len(res["config_hash"]) == 12 and res["config"]["benchmark"] == "pope"
    assert res["headline"] == ["random/f1", "mean_f1"]
    scores = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert scores[0] == {"id": "random/0", "answer": "Yes", "parsed": "yes", "label": "no", "correct": False}


def test_generate_fn_must_answer_every_request(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run")
    with pytest.raises(RuntimeError, match="returned 0 answers for 3 requests"):
        run_eval(cfg, lambda reqs: [], console=quiet_console)


def test_requests_carry_image_prompt_and_length(tmp_path, quiet_console):
    cfg = pope_config(tmp_path, tmp_path / "run", max_new_tokens=5, limit=1)
    seen = []
    run_eval(cfg, lambda reqs: seen.extend(reqs) or ["No"] * len(reqs), console=quiet_console)
    (req,) = seen
    assert req.id == "random/0" and req.max_new_tokens == 5 and req.image.is_absolute() and req.image.is_file()
    assert req.prompt.startswith("Is there a thing0 in the image?")


def test_eval_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="did you mean pope"):
        from_dict(EvalConfig, {"benchmark": "popе"})  # Cyrillic "е"
    with pytest.raises(ConfigError, match=r"config field 'options\.image_root'"):
        from_dict(EvalConfig, {"benchmark": "pope", "options": {"questions": {"random": "q.json"}}})
    with pytest.raises(ConfigError, match="batch_size"):
        from_dict(EvalConfig, {"benchmark": "pope", "batch_size": 0,
                               "options": {"questions": {"random": "q"}, "image_root": "i"}})
    yaml_file = tmp_path / "eval.yaml"
    yaml_file.write_text("benchmark: vlind\noptions:\n  data: d.json\n  image_root: imgs\n")
    cfg = load_config(EvalConfig, yaml_file, ["options.vote_threshold=3", "limit=5"])
    assert cfg.options == {"data": "d.json", "image_root": "imgs", "vote_threshold": 3} and cfg.limit == 5


def test_default_label_tells_trained_runs_apart(tmp_path, monkeypatch):
    """Issue 21 item 6: every trained model is saved as ``<run>/model``; the default label is the run's name."""
    from unprior.eval.runner import model_label

    assert model_label("", "/models/llava-1.5-7b", "runs/napo/model") == "napo"
    assert model_label("", "/models/llava-1.5-7b", "runs/dpo/model") == "dpo"
    assert model_label("", "runs/bpo/merged", "") == "bpo"
    assert model_label("", "/models/llava-1.5-7b", "") == "llava-1.5-7b"
    assert model_label("", "Qwen/Qwen2-VL-2B-Instruct", "") == "Qwen2-VL-2B-Instruct"
    assert model_label("mine", "/models/llava-1.5-7b", "runs/napo/model") == "mine"
    (tmp_path / "my-run" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "my-run")
    assert model_label("", "", "./model") == "my-run"


def test_eval_run_accepts_progress(tmp_path, capsys):
    """Issue 21 item 9: ``eval run progress=false`` hides the bar only; the summary line is still printed."""
    from rich.console import Console

    questions, images = pope_files(tmp_path)
    cfg = load_config(EvalConfig, None, ["benchmark=pope", f"out={tmp_path / 'run'}", "progress=false",
                                         f"options.questions.random={questions}", f"options.image_root={images}"])
    assert cfg.progress is False
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    run_eval(cfg, ScriptedGenerator(), console=console)
    screen = console.file.getvalue()
    assert "on pope (10 items)" in screen and "━" not in screen  # no bar
    assert "generating 10 of 10 answers, max_new_tokens 16" in screen  # the benchmark's cap, printed


def test_mostly_empty_answers_are_flagged_loudly(tmp_path):
    """The issue's NaN model answered nothing and read a perfect 0.000 on lower-is-better metrics, silently."""
    from rich.console import Console

    buffer = io.StringIO()
    cfg = pope_config(tmp_path, tmp_path / "run")
    res = run_eval(cfg, ScriptedGenerator(answers={"random/0": "Yes"}, default="  "),
                   console=Console(file=buffer, force_terminal=False, width=200))
    assert res["empty_answers"] >= 9
    assert len(res["warnings"]) == 1 and "answers are empty" in res["warnings"][0]
    assert "WARNING: " in buffer.getvalue() and "of 10 answers are empty" in buffer.getvalue()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["warnings"] == res["warnings"]
    fine = run_eval(pope_config(tmp_path, tmp_path / "fine"), ScriptedGenerator(default="No"),
                    console=Console(file=io.StringIO()))
    assert fine["empty_answers"] == 0 and fine["warnings"] == []
