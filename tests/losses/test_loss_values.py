"""Hand-computed values of every pairwise loss on the three-row batch of ``loss_batches.three_rows``.

Shared arithmetic: β = 0.5 turns ψ = [2, 0, −2] into z = β·ψ = [1, 0, −1], and
−log σ(1) = log(1 + e^−1) = 0.3132617, −log σ(0) = log 2 = 0.6931472, −log σ(−1) = log(1 + e) = 1.3132617.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from unprior.losses import (
    anchor_loss,
    cdpo_loss,
    conditional_image_loss,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    lq_loss,
    napo_loss,
    nll_loss,
    robust_dpo_loss,
    simpo_loss,
)

from .loss_batches import seq, three_rows

LOG_SIG = {1: 0.3132616875182228, 0: math.log(2), -1: 1.3132616875182228}  # −log σ(z)


def expect(values):
    return torch.tensor(values, dtype=torch.float64)


def test_dpo_values_and_rewards():
    """−log σ(z) at z = [1, 0, −1]; rewards β·log-ratio = 0.5·[1, 0, −1] and 0.5·[−1, 0, 1]."""
    out = dpo_loss(*three_rows(), beta=0.5)
    assert_close(out.losses, expect([LOG_SIG[1], LOG_SIG[0], LOG_SIG[-1]]))
    assert_close(out.chosen_rewards, expect([0.5, 0.0, -0.5]))
    assert_close(out.rejected_rewards, expect([-0.5, 0.0, 0.5]))
    assert_close(out.margins, expect([1.0, 0.0, -1.0]))


def test_cdpo_values():
    """(1 − ε)·ℓ(z) + ε·ℓ(−z) with ℓ(−z) = ℓ(z) + z, so cDPO = ℓ(z) + ε·z; ε = 0.1:
    [0.3132617 + 0.1, 0.6931472, 1.3132617 − 0.1] = [0.4132617, 0.6931472, 1.2132617]."""
    out = cdpo_loss(*three_rows(), beta=0.5, label_smoothing=0.1)
    assert_close(out.losses, expect([LOG_SIG[1] + 0.1, LOG_SIG[0], LOG_SIG[-1] - 0.1]))


def test_robust_values():
    """[(1 − ε)·ℓ(z) − ε·ℓ(−z)]/(1 − 2ε) = ℓ(z) − ε·z/(1 − 2ε); ε = 0.1 gives ℓ(z) − z/8:
    [0.3132617 − 0.125, 0.6931472, 1.3132617 + 0.125] = [0.1882617, 0.6931472, 1.4382617]."""
    out = robust_dpo_loss(*three_rows(), beta=0.5, label_smoothing=0.1)
    assert_close(out.losses, expect([LOG_SIG[1] - 0.125, LOG_SIG[0], LOG_SIG[-1] + 0.125]))


def test_cdpo_and_robust_under_flipped_labels():
    """The label-noise model behind both: a pair is flipped (z -> −z) with probability ε. At z = 1, ε = 0.25:
    cDPO is the expected DPO loss under flips: 0.75·ℓ(1) + 0.25·ℓ(−1) = 0.75·0.3132617 + 0.25·1.3132617 = 0.5632617.
    rDPO(z) = [0.75·ℓ(z) − 0.25·ℓ(−z)]/0.5, so rDPO(1) = (0.2349463 − 0.3283154)/0.5 = −0.1867383 and
    rDPO(−1) = (0.9849463 − 0.0783154)/0.5 = 1.8132617; its expectation under flips is the clean loss:
    0.75·(−0.1867383) + 0.25·1.8132617 = 0.3132617 = ℓ(1): rDPO is unbiased for ε (Chowdhury et al. 2024)."""
    ref = (seq([-2.0]), seq([-2.0]))
    pos, neg = (seq([-1.0]), seq([-3.0]), *ref), (seq([-3.0]), seq([-1.0]), *ref)  # ψ = 2 and −2, z = ±1 at β = 0.5
    cdpo = cdpo_loss(*pos, beta=0.5, label_smoothing=0.25).losses
    assert_close(cdpo, expect([0.75 * LOG_SIG[1] + 0.25 * LOG_SIG[-1]]))
    assert cdpo.item() == pytest.approx(0.5632617, abs=1e-7)
    robust_pos = robust_dpo_loss(*pos, beta=0.5, label_smoothing=0.25).losses
    robust_neg = robust_dpo_loss(*neg, beta=0.5, label_smoothing=0.25).losses
    assert robust_pos.item() == pytest.approx(-0.1867383, abs=1e-7)
    assert robust_neg.item() == pytest.approx(1.8132617, abs=1e-7)
    assert_close(0.75 * robust_pos + 0.25 * robust_neg, expect([LOG_SIG[1]]))


def test_ipo_values_use_length_averaged_margins():
    """Averaged margins: [1 − (−0.5), 0 − 0, −0.25 − 1] = [1.5, 0, −1.25]; target 1/(2β) = 1;
    losses (1.5 − 1)², (0 − 1)², (−1.25 − 1)² = [0.25, 1, 5.0625]. Rewards stay summed: 0.5·[1, 0, −1]."""
    out = ipo_loss(*three_rows(), beta=0.5)
    assert_close(out.losses, expect([0.25, 1.0, 5.0625]))
    assert_close(out.chosen_rewards, expect([0.5, 0.0, -0.5]))


def test_hinge_values():
    """max(0, 1 − z) at z = [1, 0, −1] = [0, 1, 2]."""
    out = hinge_loss(*three_rows(), beta=0.5)
    assert_close(out.losses, expect([0.0, 1.0, 2.0]))


def test_simpo_values_are_reference_free():
    """Policy means: chosen [−1/1, −2/2, −3/4] = [−1, −1, −0.75], rejected [−3/2, −2/2, −1/1] = [−1.5, −1, −1].
    β = 2: β·Δ = [1, 0, 0.5]; minus γ = 0.5: [0.5, −0.5, 0];
    −log σ: [log(1 + e^−0.5), log(1 + e^0.5), log 2] = [0.4740770, 0.9740770, 0.6931472].
    Rewards are β·mean: chosen [−2, −2, −1.5]. The reference is ignored (here: not passed at all)."""
    policy_chosen, policy_rejected, _, _ = three_rows()
    out = simpo_loss(policy_chosen, policy_rejected, beta=2.0, target_margin=0.5)
    assert_close(out.losses, expect([0.4740769841801067, 0.9740769841801067, math.log(2)]))
    assert_close(out.chosen_rewards, expect([-2.0, -2.0, -1.5]))
    assert_close(out.rejected_rewards, expect([-3.0, -2.0, -2.0]))


@pytest.mark.parametrize(
    ("q", "values"),
    [
        # (1 − σ(z)^q)/q. σ(1) = 0.7310586, σ(0) = 0.5, σ(−1) = 0.2689414.
        # q = 0.5: 2·(1 − √σ): 2·(1 − 0.8550195), 2·(1 − 0.7071068), 2·(1 − 0.5185956).
        (0.5, [0.2899607271995126, 0.5857864376269049, 0.9628087517338086]),
        # q = 1: 1 − σ(z).
        (1.0, [0.2689414213699951, 0.5, 0.7310585786300049]),
        # q = 0: −log σ(z), exactly DPO.
        (0.0, [LOG_SIG[1], LOG_SIG[0], LOG_SIG[-1]]),
    ],
)
def test_napo_values(q, values):
    """NaPO (Eq. 9) at z = [1, 0, −1] for q in {0.5, 1, 0}; arithmetic in the parameter comments."""
    out = napo_loss(*three_rows(), beta=0.5, q=q)
    assert_close(out.losses, expect(values))
    assert_close(out.chosen_rewards, expect([0.5, 0.0, -0.5]))


def test_napo_accepts_per_example_q():
    """q = [0, 0.5, 1] row by row picks one entry from each row of the table above."""
    out = napo_loss(*three_rows(), beta=0.5, q=expect([0.0, 0.5, 1.0]))
    assert_close(out.losses, expect([LOG_SIG[1], 0.5857864376269049, 0.7310585786300049]))


def test_lq_loss_at_zero_logit():
    """At z = 0, σ = 1/2: (1 − 2^−q)/q; q = 0.5 gives 2·(1 − 0.7071068) = 0.5857864; q = 0 gives log 2."""
    z = torch.zeros(2, dtype=torch.float64)
    assert_close(lq_loss(z, expect([0.5, 0.0])), expect([0.5857864376269049, math.log(2)]))


def test_nll_is_length_normalised():
    """−sum/count of the chosen answers: [1/1, 2/2, 3/4] = [1, 1, 0.75]; a row with no tokens gives 0."""
    policy_chosen, _, _, _ = three_rows()
    assert_close(nll_loss(policy_chosen), expect([1.0, 1.0, 0.75]))
    assert_close(nll_loss(seq([0.0], [0])), expect([0.0]))


def test_mdpo_terms():
    """Conditional term: DPO with the corrupted-image score in the rejected slot, so the same numbers as DPO.
    Anchor: −log σ(β·chosen log-ratio − δ) with β = 0.5, δ = 0 at log-ratios [1, 0, −1]:
    [log(1 + e^−0.5), log 2, log(1 + e^0.5)] = [0.4740770, 0.6931472, 0.9740770]; with δ = 0.5 the first row is
    −log σ(0) = log 2."""
    policy_chosen, policy_corrupted, ref_chosen, ref_corrupted = three_rows()
    cond = conditional_image_loss(policy_chosen, policy_corrupted, ref_chosen, ref_corrupted, beta=0.5)
    assert_close(cond.losses, expect([LOG_SIG[1], LOG_SIG[0], LOG_SIG[-1]]))
    anchor = anchor_loss(policy_chosen, ref_chosen, beta=0.5)
    assert_close(anchor.losses, expect([0.4740769841801067, math.log(2), 0.9740769841801067]))
    shifted = anchor_loss(policy_chosen, ref_chosen, beta=0.5, delta=0.5)
    assert_close(shifted.losses[0], expect(math.log(2)))
    assert_close(shifted.rejected_rewards, expect([0.5, 0.5, 0.5]))
