"""One name per user-facing field across commands: renamed keys still load (YAML, overrides, nested sections) under
their new names with a warning naming both, and no command's config uses an old name (unprior/config.py)."""

import dataclasses
import importlib
import typing

import pytest
import yaml

from unprior.cli import COMMANDS, main
from unprior.config import (
    ConfigDeprecationWarning,
    ConfigError,
    from_dict,
    load_config,
    renamed_keys,
    to_dict,
)
from unprior.eval.config import EvalConfig, FrontierConfig
from unprior.eval.judge import JudgeConfig
from unprior.pairs.config import PairsConfig
from unprior.score.config import ScoreConfig
from unprior.train.config import TrainConfig

TRAIN = ["model=m", "pairs=p.jsonl", "out=o"]
SCORE = ["model=m", "pairs=p.jsonl"]


def config_classes() -> set[type]:
    """Every config class a command reads: the commands', their nested sections, benchmark options, the plan."""
    from unprior.eval.registry import REGISTRY, benchmark_names
    from unprior.plan import PlanConfig

    benchmark_names()  # registers every benchmark
    roots = [getattr(importlib.import_module(c.config.split(":")[0]), c.config.split(":")[1])
             for c in COMMANDS.values()]
    todo, seen = [*roots, *(b.Options for b in REGISTRY.values()), PlanConfig], set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for hint in typing.get_type_hints(cls).values():
            args = [hint, *typing.get_args(hint)]
            todo += [a for a in args if dataclasses.is_dataclass(a) and isinstance(a, type)]
    return seen


def test_no_two_names_for_one_thing():
    classes = config_classes()
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    table = {(cls.__name__, old): to.new for cls in classes for old, to in renamed_keys(cls).items()}
    assert {old for _, old in table} >= {"out_dir", "precision", "max_steps", "cache_dir"}  # issue 21's pairs
    used = sorted(f"{cls}.{old}" for cls, old in table if old in fields)
    assert not used, f"renamed keys still used as field names: {used}"
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        assert all(to.new in names for to in renamed_keys(cls).values()), cls.__name__


@pytest.mark.parametrize(("cls", "base", "old", "new", "value"), [
    (EvalConfig, ["benchmark=world"], "out_dir", "out", "runs/x"),
    (FrontierConfig, [], "out_dir", "out", "runs/x"),
    (TrainConfig, TRAIN, "max_steps", "steps", 7),
    (ScoreConfig, SCORE, "cache_dir", "reference_dir", "ref"),
    (PairsConfig, ["source=s.jsonl", "strategies=[rules]", "out=o"], "load.root", "load.image_root", "imgs"),
])
def test_old_key_loads_under_the_new_name_with_a_warning(tmp_path, cls, base, old, new, value):
    def get(cfg, dotted):
        for part in dotted.split("."):
            cfg = getattr(cfg, part)
        return cfg

    with pytest.warns(ConfigDeprecationWarning, match=f"'{old}' is now '{new}'"):
        assert get(load_config(cls, None, [*base, f"{old}={value}"]), new) == value
    section, _, leaf = old.rpartition(".")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {leaf: value}} if section else {leaf: value}))
    with pytest.warns(ConfigDeprecationWarning, match=f"'{old}' is now '{new}'"):
        assert get(load_config(cls, path, base), new) == value


def test_a_renamed_value_spelling_is_translated_too():
    with pytest.warns(ConfigDeprecationWarning, match=r"'precision' is now 'dtype' \(precision: bf16 reads as"):
        assert load_config(TrainConfig, None, [*TRAIN, "precision=bf16"]).dtype == "bfloat16"
    with pytest.warns(ConfigDeprecationWarning):
        assert load_config(TrainConfig, None, [*TRAIN, "precision=fp32"]).dtype == "float32"


def test_an_override_beats_the_file_under_either_name(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("steps: 5\n")
    with pytest.warns(ConfigDeprecationWarning):
        assert load_config(TrainConfig, path, [*TRAIN, "max_steps=9"]).steps == 9
    path.write_text("max_steps: 5\n")
    with pytest.warns(ConfigDeprecationWarning):
        assert load_config(TrainConfig, path, [*TRAIN, "steps=9"]).steps == 9


def test_both_names_in_one_place_are_refused():
    with pytest.raises(ConfigError, match=r"'max_steps'.*give only 'steps'"):
        from_dict(TrainConfig, {"model": "m", "pairs": "p", "out": "o", "steps": 1, "max_steps": 2})


def test_renamed_keys_in_benchmark_options():
    with pytest.warns(ConfigDeprecationWarning, match=r"'options.judge.max_tokens' is now 'options.judge.max_new"):
        judge = from_dict(JudgeConfig, {"max_tokens": 64}, prefix="options.judge.")
    assert judge.max_new_tokens == 64


def test_the_cli_prints_one_warning_line_per_old_key(capsys):
    assert main(["train", "max_steps=2", "precision=bf16", "model=", "pairs=p", "out=o"]) == 2  # model missing
    err = capsys.readouterr().err
    assert "unprior train: warning: config key 'max_steps' is now 'steps'" in err
    assert "unprior train: warning: config key 'precision' is now 'dtype'" in err
    assert "config field 'model': is required" in err
    assert main(["train", "--help"]) == 0
    assert "max_steps -> steps" in capsys.readouterr().out


def test_a_train_checkpoint_written_under_the_old_names_resumes(tmp_path):
    from unprior.io import InputError
    from unprior.train.trainer import _check_resumable, _resume_fields

    cfg = TrainConfig(model="m", pairs="p", out="o", steps=4)
    old = _resume_fields(cfg)
    old["max_steps"], old["precision"] = old.pop("steps"), "fp32"
    del old["dtype"]
    _check_resumable(cfg, tmp_path, {"resume_config": old})
    with pytest.raises(InputError, match="steps: 4 -> 5"):
        _check_resumable(TrainConfig(model="m", pairs="p", out="o", steps=5), tmp_path, {"resume_config": old})


def test_a_pairs_shard_started_under_the_old_names_resumes(tmp_path):
    from unprior.io import InputError, write_json
    from unprior.pairs.shards import check_plan

    cfg = PairsConfig(source="s.jsonl", strategies=["rules"])
    recorded = to_dict(cfg)
    recorded["load"]["root"] = recorded["load"].pop("image_root")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(recorded))
    plan = {"config_hash": "new", "samples": 3, "ids_hash": "x", "parts": 1}
    write_json(tmp_path / "plan.json", {**plan, "config_hash": "old"})
    check_plan(tmp_path, plan, cfg)
    with pytest.raises(InputError, match=r"rules\.max_negatives"):
        check_plan(tmp_path, plan, dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules, max_negatives=9)))
