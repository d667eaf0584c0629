"""``unprior eval run``, ``eval compare``, ``world`` and the CLI's failure contract given bad input
(docs/errors.md)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from eval.helpers import ScriptedGenerator, pope_files
from pairs.helpers import huge_png_header, png_bytes
from rich.console import Console

from unprior.cli import main
from unprior.config import load_config
from unprior.eval.config import EvalConfig
from unprior.eval.runner import run_eval
from unprior.io import InputError

from .helpers import refused, rejected, snapshot


def pope_args(tmp: Path, *extra: str) -> list[str]:
    questions, images = tmp / "pope.jsonl", tmp / "val2014"
    return ["benchmark=pope", f"out={tmp / 'run'}", "model=m", f"options.questions={{random: {questions}}}",
            f"options.image_root={images}", "progress=false", *extra]


@pytest.fixture
def answered(tmp_path: Path) -> Path:
    """A finished POPE run of 6 questions (answers from a scripted generator); returns its samples.jsonl."""
    pope_files(tmp_path, n=6)
    run_eval(load_config(EvalConfig, None, pope_args(tmp_path)), ScriptedGenerator(),
             console=Console(file=io.StringIO()))
    return tmp_path / "run" / "samples.jsonl"


def _rows(samples: Path) -> list[dict]:
    return [json.loads(line) for line in samples.read_text().splitlines()]


def _rewrite(samples: Path, line: int, change) -> None:
    rows = _rows(samples)
    change(rows[line - 1])
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))


BAD_ANSWERS = {
    "answer_not_text": (lambda r: r.update(answer={"text": "Yes"}), "answer_not_text"),
    "no_answer_key": (lambda r: r.pop("answer"), "no_answer"),
    "id_not_text": (lambda r: r.update(id=3), "no_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_a_bad_answer_row_is_dropped_and_answered_again(case, answered, tmp_path):
    """Table row 10: the row is listed in the run's rejected.jsonl (samples.jsonl:line, reason), its item is
    answered again, the other answers are reused."""
    change, reason = BAD_ANSWERS[case]
    _rewrite(answered, 2, change)
    generator = ScriptedGenerator()
    results = run_eval(load_config(EvalConfig, None, pope_args(tmp_path)), generator,
                       console=Console(file=io.StringIO()))
    assert results["n_items"] == 6 and generator.seen == ["random/1"]
    (listed,) = rejected(tmp_path / "run" / "rejected.jsonl")
    assert (listed["where"], listed["reason"]) == ("samples.jsonl:2", reason)


def _duplicate(samples: Path) -> None:
    rows = _rows(samples)
    samples.write_text(samples.read_text() + json.dumps({**rows[0], "answer": "No"}) + "\n")


def _torn_middle(samples: Path) -> None:
    lines = samples.read_text().splitlines()
    lines[2] = lines[2][:10]
    samples.write_text("\n".join(lines) + "\n")


REFUSED_RUNS = {
    "duplicate_id": (_duplicate, [], ["samples.jsonl:7", "second answer", "'random/0'", "line 1"]),
    "malformed_line": (_torn_middle, [], ["samples.jsonl:3", "not a valid JSON object"]),
    "other_settings": (lambda s: None, ["model=m2"], ["run", "other settings", "model"]),
    "questions_row_missing_field": (
        lambda s: (s.parent.parent / "pope.jsonl").write_text('{"question_id": 1, "image": "a.jpg", "text": "Q?"}\n'),
        [], ["pope.jsonl:1", "'label'"]),
    "questions_file_missing": (lambda s: (s.parent.parent / "pope.jsonl").unlink(), [], ["pope.jsonl", "not found"]),
    "unknown_benchmark": (lambda s: None, ["benchmark=popee"], ["'benchmark'", "did you mean pope"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED_RUNS))
def test_eval_run_refuses_in_one_line_keeping_the_answers(case, answered, tmp_path, cli):
    """Table row 11 (duplicate ids refused, not last-wins) and the other run-level mistakes: exit 2, the line names
    the file and row, the answers on disk are untouched."""
    breaks, extra, needles = REFUSED_RUNS[case]
    breaks(answered)
    before = snapshot(answered.parent)
    refused(cli("eval", "run", *pope_args(tmp_path, *extra)), 2, *needles)
    assert snapshot(answered.parent) == before


def test_eval_run_stops_at_a_huge_benchmark_image_keeping_earlier_answers(tmp_path, family_model, cli):
    """Images are size-checked where eval opens them: the first batch is answered and kept, the item whose image
    claims 12000² pixels stops the run naming the image."""
    pope_files(tmp_path, n=4)
    (tmp_path / "val2014" / "a.jpg").write_bytes(png_bytes())
    (tmp_path / "val2014" / "b.jpg").write_bytes(huge_png_header(12_000, 12_000))
    args = [a.replace("model=m", f"model={family_model('llava')}") for a in pope_args(tmp_path, "batch_size=1")]
    refused(cli("eval", "run", *args), 2, "b.jpg", "12000x12000", only_line=False)
    assert [r["id"] for r in _rows(tmp_path / "run" / "samples.jsonl")] == ["random/0"]


# ---------------------------------------------------------------------------------------------------------- compare


def _results(run: Path, text: str) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(text)
    return run


REFUSED_COMPARE = {
    "no_results_json": (lambda tmp: [tmp / "r1"], ["r1", "no results.json"]),
    "results_not_json": (lambda tmp: [_results(tmp / "r1", "{bad")], ["results.json", "not valid JSON"]),
    "results_of_something_else": (lambda tmp: [_results(tmp / "r1", '{"rows": 3}')],
                                  ["results.json", "not an eval results file", "benchmark"]),
    "two_runs_one_label": (lambda tmp: [tmp / "run", tmp / "run"], ["two pope runs", "labelled 'm'"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED_COMPARE))
def test_eval_compare_refuses_what_is_not_a_finished_run(case, answered, tmp_path, cli):
    (tmp_path / "r1").mkdir(exist_ok=True)
    make, needles = REFUSED_COMPARE[case]
    refused(cli("eval", "compare", *map(str, make(tmp_path))), 2, *needles)


def test_eval_compare_without_runs_names_the_field(cli):
    refused(cli("eval", "compare"), 2, "'runs'")


# ---------------------------------------------------------------------------------------------------------- world


def test_world_refuses_bad_usage_in_one_line(tmp_path, cli):
    busy = tmp_path / "world"
    busy.mkdir()
    (busy / "train.jsonl").write_text("finished work\n")
    refused(cli("world", "build", f"out={busy}"), 2, str(busy), "overwrite=true")
    assert (busy / "train.jsonl").read_text() == "finished work\n"
    refused(cli("world", "build", "prior_strength=2"), 2, "'prior_strength'")
    refused(cli("world", "build", "colours=3"), 2, "'colours'")


def test_world_report_refuses_a_missing_model_folder(tmp_path, cli):
    refused(cli("world", "report", f"model={tmp_path / 'none'}", f"world_dir={_world(tmp_path)}"), 2, "none",
            "no such folder")


def _world(tmp: Path, manifest: str | None = '{"config": {}, "config_hash": "h"}',
           splits: tuple[str, ...] = ("train", "test_id", "test_cf")) -> Path:
    """A folder shaped like a built world (``manifest``: its manifest.json text, None: none; empty splits)."""
    root = tmp / "world"
    root.mkdir()
    (root / "notes.txt").write_text("not a world\n")
    if manifest is not None:
        (root / "manifest.json").write_text(manifest)
    for split in splits:
        (root / f"{split}.jsonl").write_text("")
    return root


# (case, the world_dir built from tmp_path, words of the one stderr line)
BAD_WORLDS = {
    "missing": (lambda tmp: tmp / "none", ["none", "no such folder", "unprior world build out="]),
    "not_a_world": (lambda tmp: _world(tmp, None), ["world", "not a world", "no manifest.json"]),
    "damaged_manifest": (lambda tmp: _world(tmp, '{"config": {'), ["manifest.json is damaged", "overwrite=true"]),
    "other_manifest": (lambda tmp: _world(tmp, '{"kind": "unprior-reference"}'), ["not a world's"]),
    "missing_split": (lambda tmp: _world(tmp, splits=("train", "test_id")), ["test_cf.jsonl missing"]),
}
WORLD_COMMANDS = {
    "base": lambda tmp: ["base", f"out={tmp / 'base'}"],
    "probe": lambda tmp: ["probe", f"models=[{tmp / 'm'}]"],
    "report": lambda tmp: ["report", f"model={tmp / 'm'}", f"out={tmp / 'report'}"],
}


@pytest.mark.parametrize("command", sorted(WORLD_COMMANDS))
@pytest.mark.parametrize("case", sorted(BAD_WORLDS))
def test_world_commands_refuse_a_world_dir_that_is_not_a_world(case, command, tmp_path, cli):
    """`world base`, `probe` and `report` name `world_dir`, the folder and the fix before any model loads or trains;
    nothing is written."""
    make, needles = BAD_WORLDS[case]
    world = make(tmp_path)
    refused(cli("world", *WORLD_COMMANDS[command](tmp_path), f"world_dir={world}"), 2, "world_dir=", *needles)
    assert not (tmp_path / "base").exists() and not (tmp_path / "report").exists()


@pytest.mark.parametrize(("args", "field"), [
    (["base", "sft_steps=-1"], "'sft_steps'"), (["base", "recipe=frozen"], "'recipe'"), (["base", "lr=.nan"], "'lr'"),
    (["base", "batch_size=0"], "'batch_size'"), (["probe", "world_dir=w"], "'models'"),
    (["probe", "models=[m]"], "'world_dir'"),
    (["probe", "models=[m]", "world_dir=w", "features=pixels"], "'features'"),
    (["probe", "models=[m]", "world_dir=w", "per_cell=0"], "'per_cell'"),
])
def test_world_base_and_probe_refuse_a_bad_config_value_naming_the_field(args, field, tmp_path, cli):
    refused(cli("world", *args, f"out={tmp_path / 'out'}"), 2, field)
    assert not (tmp_path / "out").exists()


def test_world_probe_checks_every_model_folder_before_the_first_loads(tmp_path, family_model, cli):
    """The second model is missing: refused naming it, before the first (a real one) is probed."""
    world = _world(tmp_path)
    refused(cli("world", "probe", f"models=[{family_model('llava')}, {tmp_path / 'gone'}]", f"world_dir={world}"), 2,
            "gone", "no such folder")


# ---------------------------------------------------------------------------------------------------------- the CLI


def test_debug_flag_and_env_show_the_traceback(tmp_path, monkeypatch, cli):
    """`--debug` or UNPRIOR_DEBUG=1: the exception propagates (its traceback) instead of the one line."""
    args = ["pairs", "noise", f"pairs={tmp_path / 'none.parquet'}", f"out={tmp_path / 'o.parquet'}"]
    refused(cli(*args), 2, "none.parquet")
    with pytest.raises(InputError, match=r"none\.parquet"):
        main([*args, "--debug"])
    monkeypatch.setenv("UNPRIOR_DEBUG", "1")
    with pytest.raises(InputError, match=r"none\.parquet"):
        main(args)


def test_failed_work_exits_1_in_one_line(tmp_path, monkeypatch, cli):
    """An error that is not bad usage (here a full disk) is failed work: exit 1, one line, the --debug hint."""
    import unprior.pairs.noise as noise

    def full_disk(cfg):
        raise OSError(28, "No space left on device", str(tmp_path / "o.parquet"))

    monkeypatch.setattr(noise, "run_noise", full_disk)
    refused(cli("pairs", "noise", "pairs=x.parquet", f"out={tmp_path / 'o.parquet'}"), 1,
            "failed: OSError: No space left on device", "o.parquet", "--debug")
