"""Every shipped train YAML loads and validates; its objective is the named preset; bad values name their field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unprior.config import ConfigError, describe, load_config
from unprior.losses import objective_preset
from unprior.train.config import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "train"
YAMLS = sorted(CONFIG_DIR.glob("*.yaml"))
REQUIRED = ["model=m", "pairs=p.parquet", "out=runs/x"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads_and_validates(path):
    cfg = load_config(TrainConfig, path, REQUIRED)
    preset = objective_preset("napo" if path.stem == "world" else path.stem)
    preset.sft_weight = cfg.objective.sft_weight
    assert cfg.objective == preset


def test_the_default_objective_is_dpo_and_fields_are_documented():
    assert TrainConfig().objective == objective_preset("dpo")
    assert all(doc for _, _, doc in describe(TrainConfig)), [n for n, _, d in describe(TrainConfig) if not d]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("objective.kinds.rejected.loss=dpo", "objective.kinds.rejected"),
        ("corruption.crop_max=1.5", "corruption.crop_min"),
        ("corruption.kind=blur", "corruption.kind"),
        ("merge_lora=true", "merge_lora"),
        ("batch_size=0", "batch_size"),
        ("dtype=fp16", "dtype"),
        ("lora.r=0", "lora.r"),
    ],
)
def test_bad_values_name_their_field(override, field):
    overrides = [*REQUIRED, override] + (["lora.enabled=false"] if field == "merge_lora" else [])
    with pytest.raises(ConfigError, match=re.escape(f"'{field}")):
        load_config(TrainConfig, CONFIG_DIR / "dpo.yaml", overrides)


def test_required_fields():
    with pytest.raises(ConfigError, match="'model'"):
        load_config(TrainConfig, None, ["pairs=p", "out=o"])
