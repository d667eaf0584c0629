"""What NaPO's dynamic q (Eq. 12) does with the two kinds of realistic noise ``unprior pairs noise`` plants.

Each batch is four rows as the trainer forms them from a noised pairs file, scored by a policy that has learned the
truth: relative to the reference (every log-prob −5, one token each) it raised every true answer by 2 nats and
lowered every wrong one by 2. Three rows are clean; row 3 carries the noise of the language-biased kind:

- **clean**: chosen +2, negative −2: margin ψ_μ = 4 (β-free, N2; one token, so avg = sum);
- **flip** (``mode=flip``): a flipped pair is a row of its own, chosen = the wrong answer (−2), negative = the true
  one (+2), its other kinds masked: margin −4;
- **same_form** (``mode=same_form``): the negative is another phrasing of the true answer, raised like it (+2):
  margin 0;
- **rewrite** (``mode=rewrite``, the earlier noise): a correct answer in a form the model never produces, pushed
  down far more easily than a real negative (docs/experiments.md §4 measured about 40 nats against 15–30): −10,
  margin 12.

q = clamp(2·(1 − σ(α·ψ̄)), 0.001, 1) with α = 0.5 (the code's formula, NaPO's α for ψ_μ). Flipped pairs and
same-form negatives lower the mean margin, so q rises towards MAE, the direction the paper intends ("a small margin
means likely-noisy negatives"). A correct negative in another form raises it, so q falls towards DPO: Eq. 12 reads
it as clean data, the reaction the noise study saw.
"""

import math

import pytest
import torch

from unprior.losses import KindConfig, ObjectiveConfig, Responses, objective_loss

from .loss_batches import seq

BETA = 0.1
TRUE, WRONG = -3.0, -7.0
"""Policy log-probs of a true and a wrong answer; the reference gives −5 to both: log-ratios +2 and −2."""
NOISY_ROW = {  # (chosen, language_bias negative, error_injection present) of row 3
    "clean": (TRUE, WRONG, True),
    "flip": (WRONG, TRUE, False),
    "same_form": (TRUE, TRUE, True),
    "rewrite": (TRUE, -15.0, True),
}


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def config(lb_loss: str = "napo") -> ObjectiveConfig:
    kinds = {"error_injection": KindConfig(loss="dpo"),
             "language_bias": KindConfig(loss=lb_loss, q_mode="dynamic", margin="avg", alpha=0.5)}
    cfg = ObjectiveConfig(kinds=kinds, beta=BETA, gamma="fixed")
    cfg.validate()
    return cfg


def batch(noise: str, rows: int = 4, noisy: int = 1) -> tuple[Responses, dict[str, Responses]]:
    """``rows`` rows, the last ``noisy`` of them carrying ``noise`` (see the module docstring)."""
    chosen, lb, ei_present = NOISY_ROW[noise]
    clean = rows - noisy
    chosen_sums = [TRUE] * clean + [chosen] * noisy
    lb_sums = [WRONG] * clean + [lb] * noisy
    ei_mask = torch.tensor([True] * clean + [ei_present] * noisy)
    ei_sums = [WRONG if present else 0.0 for present in ei_mask.tolist()]
    ref = seq([-5.0] * rows)
    ei_ref = seq([-5.0 if present else 0.0 for present in ei_mask.tolist()],
                 [1.0 if present else 0.0 for present in ei_mask.tolist()])
    return (Responses(seq(chosen_sums), ref),
            {"error_injection": Responses(seq(ei_sums, [float(p) for p in ei_mask.tolist()]), ei_ref, ei_mask),
             "language_bias": Responses(seq(lb_sums, requires_grad=True), ref)})


@pytest.mark.parametrize(("noise", "mean_margin", "q"), [
    ("clean", 4.0, 0.2384058),      # 2·σ(−2) = 2·0.1192029
    ("flip", 2.0, 0.5378828),       # (3·4 − 4)/4 = 2: 2·σ(−1) = 2·0.2689414
    ("same_form", 3.0, 0.3648510),  # (3·4 + 0)/4 = 3: 2·σ(−1.5) = 2·0.1824255
    ("rewrite", 6.0, 0.0948517),    # (3·4 + 12)/4 = 6: 2·σ(−3) = 2·0.0474259
])
def test_dynamic_q_on_one_noisy_row_in_four(noise, mean_margin, q):
    out = objective_loss(*batch(noise), config())
    assert out.metrics["q_margin/language_bias"].item() == pytest.approx(mean_margin)
    assert out.metrics["q/language_bias"].item() == pytest.approx(q, abs=1e-7)


def test_q_rises_with_the_share_of_flipped_pairs_and_same_form_negatives():
    """Noisy share ρ of 8 rows: flips give ψ̄ = 4·(1 − 2ρ), same-form negatives ψ̄ = 4·(1 − ρ). At ρ = 1/2 the flipped
    pairs cancel the clean ones, ψ̄ = 0 and q = 2·σ(0) = 1: MAE. Same-form negatives raise q more slowly (at ρ = 1/2,
    ψ̄ = 2: q = 0.5378828), and correct rewrites lower it (ψ̄ = 4 + 4ρ)."""
    def q(noise: str, noisy: int) -> float:
        return objective_loss(*batch(noise, rows=8, noisy=noisy), config()).metrics["q/language_bias"].item()

    flips, same, rewrites = ([q(n, k) for k in (0, 2, 4)] for n in ("flip", "same_form", "rewrite"))
    assert flips[0] == same[0] == rewrites[0] == pytest.approx(2 * sigmoid(-2))
    assert flips[0] < flips[1] < flips[2] == pytest.approx(1.0)
    assert same[0] < same[1] < same[2] < flips[2] and same[2] == pytest.approx(2 * sigmoid(-1))
    assert rewrites[0] > rewrites[1] > rewrites[2]


def _lb_weights(noise: str, lb_loss: str) -> tuple[float, float]:
    """|∂loss/∂ log π(negative)| of a clean row and of the noisy row 3: β·σ(−z)·σ(z)^q for NaPO (q = 0: DPO)."""
    chosen, negatives = batch(noise)
    objective_loss(chosen, negatives, config(lb_loss)).losses.sum().backward()
    grad = negatives["language_bias"].policy.sum.grad.abs()
    return grad[0].item(), grad[3].item()


def test_napo_gives_a_flipped_pair_less_extra_weight_than_dpo():
    """z = β·ψ: clean 0.4, flipped −0.4. DPO weights a pair by σ(−z), so the flipped pair gets σ(0.4)/σ(−0.4) =
    e^0.4 = 1.4918 times a clean pair's gradient. NaPO multiplies by σ(z)^q with the batch's q = 0.5378828: the ratio
    becomes e^(0.4·(1 − q)) = 1.2030 (weights 0.3663704 and 0.3045386, times β). At q = 1 (MAE) it would be 1: MAE
    stops favouring the pairs it gets wrong, it does not suppress them."""
    clean, flipped = _lb_weights("flip", "dpo")
    assert flipped / clean == pytest.approx(math.exp(0.4))
    clean, flipped = _lb_weights("flip", "napo")
    assert (clean / BETA, flipped / BETA) == pytest.approx((0.3045386, 0.3663704), abs=1e-7)
    assert flipped / clean == pytest.approx(math.exp(0.4 * (1 - 0.5378828)), abs=1e-6)


def test_napo_gives_a_same_form_negative_less_extra_weight_than_dpo():
    """The same-form pair has z = 0. DPO: σ(0)/σ(−0.4) = 0.5/0.4013123 = 1.2459 times a clean pair's weight. NaPO
    with q = 0.3648510: 0.5^(1 + q) / (σ(−0.4)·σ(0.4)^q) = 0.3882745/0.3328080 = 1.1667."""
    clean, same = _lb_weights("same_form", "dpo")
    assert same / clean == pytest.approx(0.5 / sigmoid(-0.4))
    clean, same = _lb_weights("same_form", "napo")
    assert (clean / BETA, same / BETA) == pytest.approx((0.3328080, 0.3882745), abs=1e-7)
