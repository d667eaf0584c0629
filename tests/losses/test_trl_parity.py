"""Parity with TRL 1.16's DPOTrainer on identical log-prob tensors: dpo (TRL "sigmoid"), ipo, hinge, robust.

TRL computes every loss type inline in the private ``DPOTrainer._compute_loss(model, inputs, return_outputs)``,
right after a model forward, and exposes no function that takes log-probs. So the test runs that real method,
unmodified, on a bare ``DPOTrainer`` instance (created with ``__new__``, skipping the ~460-line ``__init__`` that
needs a model, tokenizer and dataset) whose attributes are the ones ``__init__`` would set from a ``DPOConfig``:

- ``precompute_ref_log_probs=True``, so the reference log-probs come straight from ``inputs``;
- the "model" is a stub whose output carries per-token log-probs that sum to our sequence log-probs (TRL's fused LM
  head returns 0 at masked positions, and TRL sums over the sequence), plus the zero tensors TRL logs metrics from;
- ``completion_mask`` has exactly ``count`` ones per row, which TRL's IPO divides by.

One row at a time, so that TRL's batch mean is the per-example loss we compare with.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from unprior.losses import LOSSES, SeqLogps

trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")

# Our table name -> TRL loss_type.
TRL_NAMES = {"dpo": "sigmoid", "ipo": "ipo", "hinge": "hinge", "robust": "robust"}


def trl_trainer(loss_type: str, beta: float, label_smoothing: float):
    """A DPOTrainer with just the state ``_compute_loss`` reads (names as in DPOTrainer.__init__, TRL 1.16)."""
    trainer = trl_dpo.DPOTrainer.__new__(trl_dpo.DPOTrainer)
    identity = lambda tensor: tensor  # noqa: E731 - single process: gathers are the identity
    state = {
        "model": SimpleNamespace(training=False),
        "accelerator": SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity),
        "beta": beta,
        "label_smoothing": label_smoothing,
        "loss_types": [loss_type],
        "loss_weights": [1.0],
        "precompute_ref_logps": True,
        "ld_alpha": None,
        "f_divergence_type": "reverse_kl",
        "use_weighting": False,
        "aux_loss_enabled": False,
        "_metrics": {"train": defaultdict(list), "eval": defaultdict(list)},
        "_total_train_tokens": 0,
        "_tp_size": 1,
    }
    for name, value in state.items():
        object.__setattr__(trainer, name, value)
    return trainer


def trl_loss(trainer, chosen: SeqLogps, rejected: SeqLogps, ref_chosen: SeqLogps, ref_rejected: SeqLogps) -> float:
    """TRL's loss for a one-row batch, laid out as TRL's collator does: rows [chosen, rejected]."""
    sums = torch.cat([chosen.sum, rejected.sum])
    counts = torch.cat([chosen.count, rejected.count]).long()
    length = int(counts.max()) + 2  # one prompt token, the completion, one padding token
    completion_mask = torch.zeros(2, length, dtype=torch.long)
    for row, count in enumerate(counts.tolist()):
        completion_mask[row, 1 : 1 + count] = 1
    per_token = torch.zeros(2, length - 1, dtype=sums.dtype)
    per_token[:, 0] = sums  # only the sum over the sequence matters to TRL's losses
    zeros = torch.zeros(2, length - 1, dtype=sums.dtype)
    outputs = SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
    inputs = {
        "input_ids": torch.ones(2, length, dtype=torch.long),
        "attention_mask": torch.ones(2, length, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen.sum,
        "ref_rejected_logps": ref_rejected.sum,
    }
    return trainer._compute_loss(lambda **_: outputs, inputs, return_outputs=False)


def random_rows(n: int) -> list[tuple[SeqLogps, ...]]:
    generator = torch.Generator().manual_seed(3)
    rows = []
    for _ in range(n):
        counts = torch.randint(1, 12, (4,), generator=generator).to(torch.float64)
        sums = -counts * torch.rand(4, generator=generator, dtype=torch.float64) * 4
        counts[2:] = counts[:2]  # reference scores the same tokens as the policy
        rows.append(tuple(SeqLogps(sums[i : i + 1], counts[i : i + 1]) for i in range(4)))
    return rows


@pytest.mark.parametrize("name", sorted(TRL_NAMES))
@pytest.mark.parametrize(("beta", "label_smoothing"), [(0.1, 0.1), (0.5, 0.3)])
def test_matches_trl_dpo_trainer(name, beta, label_smoothing):
    trainer = trl_trainer(TRL_NAMES[name], beta, label_smoothing)
    spec = LOSSES[name]
    options = {"label_smoothing": label_smoothing} if "label_smoothing" in spec.options else {}
    for row in random_rows(6):
        ours = spec.fn(*row, beta=beta, **options).losses
        theirs = trl_loss(trainer, *row)
        assert_close(ours, theirs.reshape(1), rtol=1e-12, atol=1e-12)
    # TRL logged its own rewards from the same tensors; ours must agree with the last row's.
    out = spec.fn(*row, beta=beta, **options)
    assert trainer._metrics["eval"]["rewards/margins"][-1] == pytest.approx(out.margins.item(), rel=1e-12, abs=1e-12)
