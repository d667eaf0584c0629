"""Dynamic q (Eq. 12) and γ (Eq. 13) on hand-computed batches, including zero and negative margins."""

import math

import pytest
import torch
from torch.testing import assert_close

from unprior.losses import dynamic_gamma, global_mean, global_means, noise_q, q_margin

from .loss_batches import three_rows


def scalar(x):
    return torch.tensor(x, dtype=torch.float64)


def test_q_margin_avg_and_sum_have_no_beta():
    """Summed: ψ/1 = [2, 0, −2]. Averaged: chosen [1, 0, −0.25] − rejected [−0.5, 0, 1] = [1.5, 0, −1.25]."""
    logps = three_rows(requires_grad=True)
    assert_close(q_margin(*logps, "sum"), scalar([2.0, 0.0, -2.0]))
    avg = q_margin(*logps, "avg")
    assert_close(avg, scalar([1.5, 0.0, -1.25]))
    assert not avg.requires_grad
    # The batch mean the q is computed from: (1.5 + 0 − 1.25)/3 = 1/12.
    assert_close(global_mean(avg), scalar(1 / 12))


@pytest.mark.parametrize(
    ("alpha_margin", "code", "paper"),
    [
        # α·ψ̄ = 0: σ(0) = 1/2 → code 2·(1 − 1/2) = 1 (MAE); paper 1/2.
        (0.0, 1.0, 0.5),
        # α·ψ̄ = log 3: σ = 3/4 → code 2·(1/4) = 0.5; paper 0.25.
        (math.log(3), 0.5, 0.25),
        # Negative margin, α·ψ̄ = −2: σ(−2) = 0.1192 → code 2·0.8808 = 1.76, clipped to 1; paper 0.8808.
        (-2.0, 1.0, 1 - 1 / (1 + math.exp(2.0))),
        # Large margin, α·ψ̄ = 10: 1 − σ(10) = 4.54e-5 → code 9.1e-5 clipped to 0.001; paper clipped to 0.01.
        (10.0, 0.001, 0.01),
    ],
)
def test_noise_q_code_and_paper_formulas(alpha_margin, code, paper):
    """α = 2 throughout, so ψ̄ = α·ψ̄ / 2."""
    mean_margin = scalar(alpha_margin / 2)
    assert noise_q(mean_margin, alpha=2.0).item() == pytest.approx(code)
    assert noise_q(mean_margin, alpha=2.0, formula="code").item() == pytest.approx(code)
    assert noise_q(mean_margin, alpha=2.0, formula="paper").item() == pytest.approx(paper)


def test_noise_q_is_detached():
    margin = scalar(0.3).requires_grad_()
    assert not noise_q(margin, alpha=0.5).requires_grad


def test_gamma_all_zero_margins_are_uniform():
    """Step 0 (policy = reference): w = 0 + ε each, so γ = 1/3 instead of Eq. 13's 0/0."""
    gammas = dynamic_gamma({"a": scalar(0.0), "b": scalar(0.0), "c": scalar(0.0)}, eps=0.01)
    for value in gammas.values():
        assert value.item() == pytest.approx(1 / 3)


def test_gamma_negative_margin_gets_the_floor():
    """Margins [−1, 1, 3], ε = 0.01: w = [0.01, 1.01, 3.01], Σ = 4.03;
    γ = [0.00248 → clipped to 0.01, 1.01/4.03 = 0.250620, 3.01/4.03 = 0.746898]."""
    gammas = dynamic_gamma({"a": scalar(-1.0), "b": scalar(1.0), "c": scalar(3.0)}, eps=0.01)
    assert gammas["a"].item() == pytest.approx(0.01)
    assert gammas["b"].item() == pytest.approx(1.01 / 4.03)
    assert gammas["c"].item() == pytest.approx(3.01 / 4.03)


def test_gamma_dominant_margin_and_no_gradient():
    """Margins [100, 0, 0], ε = 0.01: γ = [100.01/100.03 = 0.9998, 1e-4 → 0.01, 1e-4 → 0.01]; no gradient."""
    margin = scalar(100.0).requires_grad_()
    gammas = dynamic_gamma({"a": margin, "b": scalar(0.0), "c": scalar(0.0)}, eps=0.01)
    assert gammas["a"].item() == pytest.approx(100.01 / 100.03)
    assert gammas["b"].item() == pytest.approx(0.01)
    assert not any(g.requires_grad for g in gammas.values())


def test_global_means_without_distributed_are_local_masked_means():
    """Absent rows are ignored even when not finite; a column with no present row has mean 0."""
    values = scalar([1.0, float("nan"), 3.0])
    means = global_means(
        {
            "all": (scalar([1.0, 2.0, 3.0]), None),
            "masked": (values, torch.tensor([True, False, True])),
            "empty": (values, torch.zeros(3, dtype=torch.bool)),
        }
    )
    assert means["all"].item() == pytest.approx(2.0)
    assert means["masked"].item() == pytest.approx(2.0)
    assert means["empty"].item() == 0.0
    assert global_means({}) == {}


def test_global_mean_keeps_low_precision_inputs_in_float32():
    values = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert global_mean(values).dtype == torch.float32
