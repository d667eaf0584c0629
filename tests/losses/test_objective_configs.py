"""Every preset loads by name (``preset: NAME``) and validates; presets are the papers'; bad values name the field."""

import re

import pytest

from unprior.config import ConfigError, describe, from_dict, load_config
from unprior.formats.pairs import NEGATIVE_KINDS
from unprior.losses import PRESETS, KindConfig, ObjectiveConfig, objective_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_loads_by_name_and_validates(name):
    cfg = load_config(ObjectiveConfig, None, [f"preset={name}"])
    cfg.validate()
    assert cfg == objective_preset(name)


@pytest.mark.parametrize(("name", "original"), [("napo", "error_injection"), ("napo_original", "original")])
def test_napo_preset_is_the_paper_configuration(name, original):
    cfg = objective_preset(name)
    assert cfg.beta == 0.1 and cfg.gamma == "dynamic"
    assert set(cfg.kinds) == {original, "language_bias", "vision_bias"}
    assert cfg.kinds[original].loss == "dpo"
    lb, vb = cfg.kinds["language_bias"], cfg.kinds["vision_bias"]
    assert (lb.loss, lb.q_mode, lb.margin, lb.alpha, lb.q_formula) == ("napo", "dynamic", "avg", 0.5, "code")
    assert (vb.loss, vb.q_mode, vb.margin, vb.alpha, vb.q_formula) == ("napo", "dynamic", "sum", 0.01, "code")


@pytest.mark.parametrize(("name", "loss", "options"), [
    ("cdpo", "cdpo", {"label_smoothing": 0.1}),
    ("rdpo", "robust", {"label_smoothing": 0.1}),
    ("napo_fixed_q", "napo", {"q_mode": "fixed", "q": 0.5}),
])
def test_noise_baseline_presets_swap_only_the_biased_kinds_loss(name, loss, options):
    """cDPO / rDPO / fixed-q NaPO: NaPO's Eq. 14 (DPO on the original pair, dynamic γ, β 0.1) with the loss of the
    two biased kinds replaced, the objectives of the noise study (docs/experiments.md §4)."""
    cfg, napo = objective_preset(name), objective_preset("napo")
    original = "error_injection"
    assert (cfg.beta, cfg.gamma, cfg.kinds[original]) == (napo.beta, napo.gamma, napo.kinds[original])
    for kind in ("language_bias", "vision_bias"):
        assert cfg.kinds[kind] == KindConfig(loss=loss, **options)


def test_bpo_preset_is_dpo_on_its_two_negative_kinds():
    cfg = objective_preset("bpo")
    assert set(cfg.kinds) == {"image_weakening", "error_injection"}
    assert all(kind.loss == "dpo" and kind.weight == 1.0 for kind in cfg.kinds.values())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_kinds_are_negative_kinds_of_the_pairs_data(name):
    """Presets name the kinds the pairs stage emits, so they train on a pairs file without renaming."""
    assert set(objective_preset(name).kinds) <= set(NEGATIVE_KINDS)


def test_default_objective_is_the_dpo_preset():
    assert ObjectiveConfig() == objective_preset("dpo")


def test_presets_are_fresh_copies():
    objective_preset("napo").kinds["error_injection"].weight = 7.0
    assert objective_preset("napo").kinds["error_injection"].weight == 1.0
    with pytest.raises(KeyError, match="unknown objective preset"):
        objective_preset("nope")


def test_overrides_reach_a_kind():
    cfg = load_config(ObjectiveConfig, None, ["preset=napo", "kinds.vision_bias.alpha=0.05", "sft_weight=1"])
    assert cfg.kinds["vision_bias"].alpha == 0.05
    assert cfg.sft_weight == 1.0
    assert cfg.kinds["vision_bias"].margin == "sum" and set(cfg.kinds) == set(objective_preset("napo").kinds)
    with pytest.raises(ConfigError, match=r"config field 'preset'.*unknown objective preset 'nope'"):
        load_config(ObjectiveConfig, None, ["preset=nope"])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kinds": {"rejected": {"loss": "kto"}}}, "kinds.rejected.loss"),
        ({"kinds": {"rejected": {"q": 1.5}}}, "kinds.rejected.q"),
        ({"kinds": {"rejected": {"label_smoothing": 0.5}}}, "kinds.rejected.label_smoothing"),
        ({"kinds": {"rejected": {"beta": 0.0}}}, "kinds.rejected.beta"),
        ({"kinds": {"rejected": {"q_formula": "mine"}}}, "kinds.rejected.q_formula"),
        ({"kinds": {"rejected": {"margin": "max"}}}, "kinds.rejected.margin"),
        ({"kinds": {}}, "kinds"),
        ({"kinds": {"a/b": {}}}, "kinds.a/b"),
        ({"beta": -0.1}, "beta"),
        ({"gamma": "learned"}, "gamma"),
        ({"sft_weight": -1.0}, "sft_weight"),
        ({"gamma": "dynamic", "kinds": {"rejected": {"loss": "simpo"}}}, "gamma"),
    ],
)
def test_invalid_values_name_their_field(data, field):
    with pytest.raises(ConfigError, match=re.escape(f"config field '{field}'")):
        from_dict(ObjectiveConfig, data)


def test_python_built_config_validates_its_kinds():
    cfg = ObjectiveConfig(kinds={"lb": KindConfig(loss="napo", q=-1.0)})
    with pytest.raises(ConfigError, match=r"config field 'kinds\.lb\.q'"):
        cfg.validate()


def test_kind_fields_are_documented():
    docs = {name: doc for name, _, doc in describe(KindConfig)}
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
