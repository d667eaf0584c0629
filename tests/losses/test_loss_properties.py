"""Properties every pairwise loss (and NaPO in particular) must have, beyond the hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from unprior.losses import LOSSES, SeqLogps, dpo_loss, lq_loss, napo_loss

from .loss_batches import seq, three_rows

OPTIONS = {"label_smoothing": 0.1, "target_margin": 0.5}


def call(name: str, logps, **extra):
    spec = LOSSES[name]
    kwargs = {option: OPTIONS[option] for option in spec.options} | extra
    if spec.uses_q and "q" not in kwargs:
        kwargs["q"] = 0.5
    return spec.fn(*logps, beta=0.5, **kwargs)


def test_table_lists_the_issue_losses():
    assert set(LOSSES) == {"dpo", "cdpo", "robust", "ipo", "hinge", "simpo", "napo"}
    assert [name for name, spec in LOSSES.items() if not spec.needs_reference] == ["simpo"]
    assert [name for name, spec in LOSSES.items() if spec.uses_q] == ["napo"]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_rewards_carry_no_gradient_and_losses_do(name):
    out = call(name, three_rows(requires_grad=True))
    assert out.losses.shape == (3,)
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad
    assert not out.rejected_rewards.requires_grad
    assert not out.margins.requires_grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fully_masked_rows_are_finite(name):
    """A row with no tokens (sum 0, count 0) gives a finite loss and finite gradients, for sum and mean losses."""
    empty = [seq([0.0, -2.0], [0, 3], requires_grad=True) for _ in range(2)] + [seq([0.0, -1.0], [0, 3])] * 2
    out = call(name, empty)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all()
    assert torch.isfinite(empty[0].sum.grad).all() and torch.isfinite(empty[1].sum.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float64_gradcheck(name):
    """Analytic gradients match finite differences w.r.t. the policy's chosen and rejected log-probs."""
    _, _, ref_chosen, ref_rejected = three_rows()

    def losses(chosen, rejected):
        logps = (SeqLogps(chosen, ref_chosen.count), SeqLogps(rejected, ref_rejected.count), ref_chosen, ref_rejected)
        return call(name, logps).losses

    # z = β·ψ = [0.9, −0.25, −0.85]: away from the hinge's kink at z = 1, where finite differences straddle it.
    chosen = torch.tensor([-1.3, -2.2, -2.9], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([-3.1, -1.7, -1.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(losses, (chosen, rejected))


def test_chosen_far_ahead_gives_lower_loss():
    for name in LOSSES:
        good = call(name, (seq([-1.0]), seq([-9.0]), seq([-5.0]), seq([-5.0]))).losses
        bad = call(name, (seq([-9.0]), seq([-1.0]), seq([-5.0]), seq([-5.0]))).losses
        assert good < bad, name


def test_q_to_zero_is_dpo_exactly():
    """q = 0 takes the −log σ branch bit for bit; tiny q converges to it (Eq. 10)."""
    logps = three_rows()
    dpo = dpo_loss(*logps, beta=0.5).losses
    assert torch.equal(napo_loss(*logps, beta=0.5, q=0.0).losses, dpo)
    assert_close(napo_loss(*logps, beta=0.5, q=1e-9).losses, dpo, rtol=1e-8, atol=1e-8)
    assert_close(napo_loss(*logps, beta=0.5, q=1e-300).losses, dpo)


def test_q_one_is_mae():
    z = torch.linspace(-20, 20, 41, dtype=torch.float64)
    assert_close(lq_loss(z, 1.0), 1 - torch.sigmoid(z))


def test_eq11_mae_below_napo_below_bce():
    """1 − σ(z) ≤ (1 − σ(z)^q)/q ≤ −log σ(z) for every q in (0, 1] (Eq. 11)."""
    z = torch.linspace(-30, 30, 121, dtype=torch.float64)[:, None]
    q = torch.linspace(0.01, 1.0, 12, dtype=torch.float64)[None, :]
    loss = lq_loss(z, q)
    mae, bce = 1 - torch.sigmoid(z), -F.logsigmoid(z)
    tol = 1e-12
    assert (mae <= loss + tol).all()
    assert (loss <= bce + tol).all()


def test_napo_gradient_is_dpo_gradient_times_sigma_z_to_the_q():
    """dL_NaPO/dz = −σ(z)^q·(1 − σ(z)) = σ(z)^q · dL_DPO/dz, per example."""
    q = 0.3
    z = torch.linspace(-8, 8, 17, dtype=torch.float64, requires_grad=True)
    (grad_napo,) = torch.autograd.grad(lq_loss(z, q).sum(), z)
    (grad_dpo,) = torch.autograd.grad(lq_loss(z, 0.0).sum(), z)
    assert_close(grad_napo, grad_dpo * torch.sigmoid(z.detach()) ** q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_napo_is_finite_at_extreme_logits_and_q(dtype):
    """|z| up to 1e4 and q from 0 up to 1: losses and gradients are finite, the limits are right."""
    z = torch.tensor([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4], dtype=dtype, requires_grad=True)
    for q in (0.0, 1e-30, 1e-8, 1e-3, 0.5, 1.0):
        loss = lq_loss(z, q)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), q
        assert loss[-1].item() == pytest.approx(0.0, abs=1e-6)
        # At z = −1e4, log σ(z) = −1e4 exactly in floating point, so the loss is −expm1(−1e4·q)/q:
        # 1e4 (DPO) for q → 0, the bound 1/q for q ≥ 0.01.
        expected = 1e4 if q == 0 else -math.expm1(-1e4 * q) / q
        assert loss[0].item() == pytest.approx(expected, rel=1e-5)
