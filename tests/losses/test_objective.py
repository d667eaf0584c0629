"""The objective (Eq. 14) on small hand-computed batches: fixed and dynamic q and γ, masks, metrics, extra terms."""

import math

import pytest
import torch
from torch.testing import assert_close

from unprior.losses import (
    KindConfig,
    ObjectiveConfig,
    Responses,
    dpo_loss,
    napo_loss,
    objective_loss,
    objective_preset,
)

from .loss_batches import seq


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def batch(*, requires_grad: bool = False, lb_mask=None) -> tuple[Responses, dict[str, Responses]]:
    """Two rows, β = 0.5 below.

    chosen:        policy [−1, −2] counts [1, 2]; reference [−2, −2]  → log-ratio [1, 0], averaged [1, 0]
    error_injection: policy [−3, −2] counts [1, 1]; reference [−2, −2]  → log-ratio [−1, 0]
                     ψ = [2, 0], z = β·ψ = [1, 0]; DPO = [0.3132617, 0.6931472]
    language_bias:   policy [−2, −1] counts [1, 1]; reference [−2, −2]  → log-ratio [0, 1], averaged [0, 1]
                     ψ = [1, −1], z = [0.5, −0.5]; ψ_μ (no β) = [1 − 0, 0 − 1] = [1, −1]
    """
    chosen = Responses(seq([-1.0, -2.0], [1, 2], requires_grad=requires_grad), seq([-2.0, -2.0], [1, 2]))
    rejected = Responses(seq([-3.0, -2.0], requires_grad=requires_grad), seq([-2.0, -2.0]))
    language_bias = Responses(
        seq([-2.0, -1.0], requires_grad=requires_grad),
        seq([-2.0, -2.0]),
        None if lb_mask is None else torch.tensor(lb_mask),
    )
    return chosen, {"error_injection": rejected, "language_bias": language_bias}


def config(**overrides) -> ObjectiveConfig:
    kinds = {
        "error_injection": KindConfig(loss="dpo", weight=0.5),
        "language_bias": KindConfig(loss="napo", weight=2.0, q_mode="dynamic", margin="avg", alpha=math.log(3)),
    }
    cfg = ObjectiveConfig(kinds=kinds, beta=0.5, **overrides)
    cfg.validate()
    return cfg


def test_fixed_gamma_dynamic_q_hand_computed():
    """ψ̄_μ = mean([1, −1]) = 0 → q = clamp(2·(1 − σ(0)), ...) = 1, so NaPO is MAE 1 − σ(z):
    language_bias = [1 − σ(0.5), 1 − σ(−0.5)] = [0.3775407, 0.6224593].
    total = 0.5·DPO + 2·NaPO = [0.5·0.3132617 + 2·0.3775407, 0.5·0.6931472 + 2·0.6224593] = [0.9117122, 1.5914923]."""
    chosen, negatives = batch()
    out = objective_loss(chosen, negatives, config())
    assert_close(out.losses, torch.tensor([0.9117121813554022, 1.5914922526836819], dtype=torch.float64))
    m = out.metrics
    assert m["q/language_bias"].item() == pytest.approx(1.0)
    assert m["q_margin/language_bias"].item() == pytest.approx(0.0)
    assert m["gamma/error_injection"].item() == 0.5 and m["gamma/language_bias"].item() == 2.0
    assert m["accuracy/error_injection"].item() == 0.5  # margins [1, 0]: a tie is not a win
    assert m["rewards/margins/error_injection"].item() == pytest.approx(0.5)  # mean(β·ψ) = mean([1, 0])
    assert m["loss/error_injection"].item() == pytest.approx((0.3132616875182228 + math.log(2)) / 2)
    assert m["loss"].item() == pytest.approx((0.9117121813554022 + 1.5914922526836819) / 2)


def test_masked_rows_drop_out_of_loss_and_q():
    """language_bias present only in row 0: ψ̄_μ = 1 → α·ψ̄ = log 3 → q = 2·(1 − 3/4) = 0.5;
    row 0: 0.5·0.3132617 + 2·(1 − √σ(0.5))/0.5 = 0.1566308 + 2·0.4220782; row 1: 0.5·log 2 only."""
    chosen, negatives = batch(lb_mask=[True, False])
    out = objective_loss(chosen, negatives, config())
    napo_row0 = 2 * (1 - math.sqrt(sigmoid(0.5)))
    expected = [0.5 * 0.3132616875182228 + 2 * napo_row0, 0.5 * math.log(2)]
    assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))
    assert out.metrics["q/language_bias"].item() == pytest.approx(0.5)
    assert out.metrics["present/language_bias"].item() == 0.5
    assert out.metrics["accuracy/language_bias"].item() == 1.0


def test_dynamic_gamma_hand_computed():
    """Mean reward margins: error_injection mean(β·[2, 0]) = 0.5; language_bias mean(β·[1, −1]) = 0.
    w = [0.51, 0.01] (ε = 0.01) → γ = [0.51/0.52, 0.01/0.52] = [0.980769, 0.019231]; the fixed weights are unused."""
    chosen, negatives = batch()
    out = objective_loss(chosen, negatives, config(gamma="dynamic"))
    assert out.metrics["gamma/error_injection"].item() == pytest.approx(0.51 / 0.52)
    assert out.metrics["gamma/language_bias"].item() == pytest.approx(0.01 / 0.52)
    mae = torch.tensor([1 - sigmoid(0.5), 1 - sigmoid(-0.5)], dtype=torch.float64)
    dpo = torch.tensor([0.3132616875182228, math.log(2)], dtype=torch.float64)
    assert_close(out.losses, 0.51 / 0.52 * dpo + 0.01 / 0.52 * mae)


def test_q_and_gamma_carry_no_gradient():
    """The objective's gradient is Σ γ_k·∇L_k with γ and q held constant (stop-gradient, N3/N4)."""
    chosen, negatives = batch(requires_grad=True)
    cfg = config(gamma="dynamic")
    out = objective_loss(chosen, negatives, cfg)
    assert all(not value.requires_grad for value in out.metrics.values())
    grads = torch.autograd.grad(out.losses.sum(), [chosen.policy.sum, negatives["language_bias"].policy.sum])

    g, q = out.metrics, out.metrics["q/language_bias"]
    rej, lb = negatives["error_injection"], negatives["language_bias"]
    dpo = dpo_loss(chosen.policy, rej.policy, chosen.reference, rej.reference, beta=0.5).losses
    napo = napo_loss(chosen.policy, lb.policy, chosen.reference, lb.reference, beta=0.5, q=q).losses
    manual = g["gamma/error_injection"] * dpo + g["gamma/language_bias"] * napo
    expected = torch.autograd.grad(manual.sum(), [chosen.policy.sum, lb.policy.sum])
    for got, want in zip(grads, expected, strict=True):
        assert_close(got, want)


def test_fixed_q_and_per_kind_beta():
    """language_bias as NaPO with fixed q = 0 and its own β = 1: z = [1, −1] → −log σ = [0.3132617, 1.3132617]."""
    chosen, negatives = batch()
    cfg = ObjectiveConfig(kinds={"language_bias": KindConfig(loss="napo", q_mode="fixed", q=0.0, beta=1.0)}, beta=0.5)
    out = objective_loss(chosen, {"language_bias": negatives["language_bias"]}, cfg)
    assert_close(out.losses, torch.tensor([0.3132616875182228, 1.3132616875182228], dtype=torch.float64))
    assert out.metrics["q/language_bias"].item() == 0.0
    assert "q_margin/language_bias" not in out.metrics


def test_sft_and_mdpo_terms():
    """SFT: −sum/count of chosen = [1/1, 2/2] = [1, 1]. Anchor (β = 0.5, δ = 0): −log σ(0.5·[1, 0]) =
    [0.4740770, 0.6931472]. Conditional: corrupted-image chosen has log-ratio [−1, 0], so the pair margin is ψ = [2, 0]
    and the term equals the DPO numbers [0.3132617, 0.6931472]."""
    chosen, negatives = batch()
    corrupted = negatives["error_injection"]
    cfg = ObjectiveConfig(
        kinds={"error_injection": KindConfig(weight=0.0)},
        beta=0.5,
        sft_weight=1.0,
        conditional_weight=1.0,
        anchor_weight=1.0,
    )
    out = objective_loss(chosen, {"error_injection": negatives["error_injection"]}, cfg, corrupted=corrupted)
    expected = [1 + 0.4740769841801067 + 0.3132616875182228, 1 + math.log(2) + math.log(2)]
    assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))
    for key in ("loss/sft", "loss/conditional", "loss/anchor", "rewards/margins/conditional"):
        assert key in out.metrics


def test_metric_keys_are_stable_and_per_kind():
    chosen, negatives = batch()
    keys = set(objective_loss(chosen, negatives, config()).metrics)
    per_kind = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "accuracy", "logps/rejected"]
    per_kind += ["present", "gamma"]
    expected = {"loss", "logps/chosen", "q/language_bias", "q_margin/language_bias"}
    expected |= {f"{key}/{kind}" for key in per_kind for kind in ("error_injection", "language_bias")}
    assert keys == expected
    # Same keys when a kind is absent from every row of the batch.
    chosen, negatives = batch(lb_mask=[False, False])
    assert set(objective_loss(chosen, negatives, config()).metrics) == expected


def test_kind_absent_everywhere_adds_nothing():
    chosen, negatives = batch(lb_mask=[False, False])
    out = objective_loss(chosen, negatives, config())
    assert_close(out.losses, 0.5 * torch.tensor([0.3132616875182228, math.log(2)], dtype=torch.float64))
    assert out.metrics["q/language_bias"].item() == 1.0  # no margin seen: ψ̄ = 0
    assert torch.isfinite(torch.stack(list(out.metrics.values()))).all()


def test_reference_free_objective_needs_no_reference():
    chosen, negatives = batch()
    cfg = ObjectiveConfig(kinds={"error_injection": KindConfig(loss="simpo", beta=2.0)}, sft_weight=1.0)
    assert not cfg.needs_reference
    free = {"error_injection": Responses(negatives["error_injection"].policy)}
    out = objective_loss(Responses(chosen.policy), free, cfg)
    assert out.losses.shape == (2,)


def test_input_errors_are_explicit():
    chosen, negatives = batch()
    with pytest.raises(ValueError, match="do not match"):
        objective_loss(chosen, {"error_injection": negatives["error_injection"]}, config())
    with pytest.raises(ValueError, match="reference log-probs are needed for language_bias"):
        objective_loss(chosen, negatives | {"language_bias": Responses(negatives["error_injection"].policy)}, config())
    with pytest.raises(ValueError, match="corrupted"):
        objective_loss(chosen, {"error_injection": negatives["error_injection"]}, objective_preset("mdpo"))


def test_napo_preset_runs_on_three_kinds():
    """At policy = reference every margin is 0: q = 1 for both NaPO kinds and γ = 1/3 each (guarded Eq. 13),
    so each row's loss is (log 2 + 0.5 + 0.5)/3."""
    same = seq([-2.0, -3.0], [2, 3])
    chosen = Responses(same, same)
    negatives = {kind: Responses(seq([-1.0, -4.0]), seq([-1.0, -4.0])) for kind in objective_preset("napo").kinds}
    out = objective_loss(chosen, negatives, objective_preset("napo"))
    assert_close(out.losses, torch.full((2,), (math.log(2) + 1.0) / 3, dtype=torch.float64))
    assert out.metrics["q/vision_bias"].item() == 1.0
