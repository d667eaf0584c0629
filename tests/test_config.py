"""Config loading, overrides, validation messages, hashing, and the CLI's help."""

import pytest

from unprior.cli import main
from unprior.config import ConfigError, config_hash, describe, load_config, parse_overrides
from unprior.world.config import BaseConfig, WorldConfig


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("seed: 3\nimage:\n  noise: 5\n")
    cfg = load_config(WorldConfig, path, ["n_train=10", "image.cell=16"])
    assert (cfg.seed, cfg.n_train, cfg.image.noise, cfg.image.cell) == (3, 10, 5.0, 16)
    assert cfg.image.size == WorldConfig().image.size


def test_nested_overrides_reach_inner_stage_configs():
    cfg = load_config(BaseConfig, None, ["world.prior_strength=0.5", "model.text_layers=3"])
    assert cfg.world.prior_strength == 0.5 and cfg.model.text_layers == 3


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("prior_strength=1.5", "prior_strength"),
        ("image.cell=5", "image.size"),
        ("n_train=abc", "n_train"),
        ("nope=1", "nope"),
        ("image.noise=-1", "image.noise"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        load_config(WorldConfig, None, [override])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["justakey"])


def test_hash_is_stable_and_content_sensitive():
    assert config_hash(WorldConfig()) == config_hash(WorldConfig())
    assert config_hash(WorldConfig()) != config_hash(WorldConfig(seed=1))


def test_every_field_is_documented():
    for cls in (WorldConfig, BaseConfig):
        undocumented = [name for name, _, doc in describe(cls) if not doc]
        assert not undocumented, f"{cls.__name__}: {undocumented}"


def test_cli_help_lists_fields(capsys):
    assert main(["world", "build", "--help"]) == 0
    out = capsys.readouterr().out
    assert "prior_strength" in out and "image.noise" in out


def test_cli_reports_bad_config(capsys):
    assert main(["world", "build", "prior_strength=2"]) == 2
    assert "prior_strength" in capsys.readouterr().err


def test_cli_usage_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "world build" in capsys.readouterr().out


def test_flags_are_overrides():
    from unprior.cli import flag_overrides

    assert flag_overrides(["--resume", "--save-every=3", "a=1"]) == ["resume=true", "save_every=3", "a=1"]


@pytest.mark.parametrize("override, field", [("lr=.nan", "lr"), ("lr=nan", "lr"),
                                             ("max_grad_norm=.inf", "max_grad_norm"),
                                             ("objective.beta=-.inf", "objective.beta")])
def test_non_finite_floats_are_refused_naming_the_field(override, field):
    from unprior.train.config import TrainConfig

    with pytest.raises(ConfigError, match=rf"'{field}': must be a finite number"):
        load_config(TrainConfig, None, ["model=m", "pairs=p", "out=o", override])


def test_config_changes_name_fields_and_values():
    from unprior.config import config_changes, describe_changes

    old = {"lr": 0.001, "lora": {"r": 8, "alpha": 16}, "gone": 1}
    new = {"lr": 0.002, "lora": {"r": 16, "alpha": 16}, "added": "x"}
    assert config_changes(old, new) == ['added: <absent> -> "x"', "gone: 1 -> <absent>", "lora.r: 8 -> 16",
                                        "lr: 0.001 -> 0.002"]
    assert describe_changes(old, old) == "no field differs"
