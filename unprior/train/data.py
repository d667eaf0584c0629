"""Training data: one chosen answer plus one negative per objective kind per row, with cached reference log-probs.

Rows come from a pairs file; which rows are usable, and the reference log-probs of every response, come from the
``unprior score`` cache entry for the same model, file and ``max_length`` (so rows the scorer dropped, e.g. a prompt
that cannot fit, are skipped here too, and counted). Each row contributes its chosen answer and the first negative of
each kind the objective names; a kind a row lacks is masked (:class:`unprior.losses.Responses`), as Eq. 14 allows.

The order of rows is a pure function of the seed and the step (one permutation per epoch), so resuming needs only the
step, and a run on P processes sees exactly the global batches of a run on one.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from unprior.losses import Responses, SeqLogps
from unprior.pairs.schema import PairRow
from unprior.score.batch import ResponseBatch, RowEncoder
from unprior.score.reference import Reference


@dataclass
class TrainBatch:
    """A collated batch and where each row's chosen answer and negatives sit among its responses."""

    responses: ResponseBatch
    chosen_index: Tensor
    """``(B,)`` response index of each row's chosen answer."""
    kind_index: dict[str, Tensor]
    """Per kind ``(B,)`` response index of the row's negative of that kind (0 where absent)."""
    kind_mask: dict[str, Tensor]
    """Per kind ``(B,)`` bool: the row has a negative of that kind."""
    reference: dict[str, SeqLogps]
    """``chosen`` and per kind: ``(B,)`` reference summed log-probs and token counts (0 where absent)."""

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(
            self.responses.to(device),
            self.chosen_index.to(device),
            {k: v.to(device) for k, v in self.kind_index.items()},
            {k: v.to(device) for k, v in self.kind_mask.items()},
            {k: SeqLogps(v.sum.to(device), v.count.to(device)) for k, v in self.reference.items()},
        )

    def split(self, sums: Tensor, counts: Tensor) -> tuple[Responses, dict[str, Responses]]:
        """Policy ``(sum, count)`` of every response -> the objective's inputs (chosen, {kind: negatives}).

        Raises:
            ValueError: when the policy scored a different number of tokens than the reference did (the cache
                does not belong to this data or ``max_length``).
        """
        chosen = Responses(SeqLogps(sums[self.chosen_index], counts[self.chosen_index]), self.reference["chosen"])
        self._check_counts(chosen.policy.count, chosen.reference.count, None, "chosen")
        negatives = {}
        for kind, index in self.kind_index.items():
            mask = self.kind_mask[kind]
            policy = SeqLogps(torch.where(mask, sums[index], 0), torch.where(mask, counts[index], 0))
            self._check_counts(policy.count, self.reference[kind].count, mask, kind)
            negatives[kind] = Responses(policy, self.reference[kind], mask)
        return chosen, negatives

    @staticmethod
    def _check_counts(policy: Tensor, reference: Tensor, mask: Tensor | None, kind: str) -> None:
        differ = policy.to(reference.dtype) != reference
        if mask is not None:
            differ &= mask
        if bool(differ.any()):
            raise ValueError(f"{kind}: the policy scored {policy.tolist()} tokens but the reference cache has "
                             f"{reference.tolist()}; the cache does not match this pairs file or max_length")


class PreferenceData:
    """The usable rows of a pairs file for an objective, batched on demand.

    Args:
        rows: Every row of the pairs file, in file order.
        reference: The loaded cache entry for this file (its rows are the usable ones).
        encoder: Encodes prompts and responses (same processor and ``max_length`` as the reference).
        kinds: The objective's negative kinds.
        repeat_prompts: Collate for the naive forward (see :meth:`unprior.score.batch.RowEncoder.collate`).
    """

    def __init__(
        self,
        rows: Sequence[PairRow],
        reference: Reference,
        encoder: RowEncoder,
        kinds: Sequence[str],
        repeat_prompts: bool,
    ) -> None:
        self.pairs = rows
        self.reference = reference
        self.encoder = encoder
        self.kinds = list(kinds)
        self.repeat_prompts = repeat_prompts
        self.skipped: Counter[str] = Counter(reference.manifest["dropped"])
        self.picks: dict[int, dict[str, int]] = {}
        self.kind_counts: Counter[str] = Counter()
        for row in reference.rows:
            pick = self._pick(reference.kinds[row])
            if not pick:
                self.skipped["no_negative_of_objective_kinds"] += 1
                continue
            self.picks[row] = pick
            self.kind_counts.update(pick.keys())
        self.rows = sorted(self.picks)
        missing = [kind for kind in self.kinds if self.kind_counts[kind] == 0]
        if missing:
            found = sorted({k for ks in reference.kinds.values() for k in ks[1:]})
            raise ValueError(f"the objective's kinds {missing} have no negatives in this pairs file "
                             f"(it has {found}); pick an objective whose kinds match the data")

    def _pick(self, kinds: Sequence[str]) -> dict[str, int]:
        """Response index of the first negative of each objective kind (response 0 is the chosen answer)."""
        pick: dict[str, int] = {}
        for j, kind in enumerate(kinds[1:], start=1):
            if kind in self.kinds and kind not in pick:
                pick[kind] = j
        return pick

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, positions: Sequence[int]) -> TrainBatch:
        """The rows at ``positions`` (indices into :attr:`rows`), encoded and collated."""
        rows = [self.rows[pos] for pos in positions]
        encoded, dropped = self.encoder.encode([(row, self.pairs[row]) for row in rows])
        if dropped or encoded is None:
            raise ValueError(f"rows {[d.index for d in dropped]} were scored but cannot be encoded now "
                             f"({[d.reason for d in dropped]}); re-run unprior score")
        picks = [[0, *self.picks[row].values()] for row in rows]
        responses = self.encoder.collate(encoded, picks, repeat_prompts=self.repeat_prompts)
        starts = np.cumsum([0, *(len(p) for p in picks[:-1])])
        n = len(rows)
        kind_index = {k: torch.zeros(n, dtype=torch.long) for k in self.kinds}
        kind_mask = {k: torch.zeros(n, dtype=torch.bool) for k in self.kinds}
        ref = {name: (torch.zeros(n, dtype=torch.float64), torch.zeros(n)) for name in ["chosen", *self.kinds]}
        for b, (row, start) in enumerate(zip(rows, starts, strict=True)):
            sums, counts = self.reference.sums[row], self.reference.counts[row]
            ref["chosen"][0][b], ref["chosen"][1][b] = sums[0], counts[0]
            for offset, (kind, j) in enumerate(self.picks[row].items(), start=1):
                kind_index[kind][b], kind_mask[kind][b] = int(start) + offset, True
                ref[kind][0][b], ref[kind][1][b] = sums[j], counts[j]
        return TrainBatch(
            responses=responses,
            chosen_index=torch.as_tensor(starts, dtype=torch.long),
            kind_index=kind_index,
            kind_mask=kind_mask,
            reference={name: SeqLogps(s.float(), c) for name, (s, c) in ref.items()},
        )


@dataclass(frozen=True)
class Order:
    """Which rows each process takes at each optimizer step: a deterministic stream of per-epoch permutations.

    The global batch of step ``s`` is positions ``[s·G, (s+1)·G)`` of the stream, ``G = batch_size · processes ·
    grad_accum``; micro-step ``a`` of process ``r`` takes chunk ``a·processes + r`` of it.
    """

    n_rows: int
    batch_size: int
    processes: int
    grad_accum: int
    seed: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.processes * self.grad_accum

    def _epoch(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def global_rows(self, step: int) -> list[int]:
        positions = range(step * self.global_batch, (step + 1) * self.global_batch)
        epochs: dict[int, np.ndarray] = {}
        out = []
        for p in positions:
            epoch, i = divmod(p, self.n_rows)
            out.append(int(epochs.setdefault(epoch, self._epoch(epoch))[i]))
        return out

    def micro_rows(self, step: int, micro: int, rank: int) -> list[int]:
        chunk = micro * self.processes + rank
        return self.global_rows(step)[chunk * self.batch_size : (chunk + 1) * self.batch_size]


def prefetched(data: PreferenceData, plan: Iterable[tuple[int, int, list[int]]], ahead: int = 2,
               ) -> Iterator[tuple[int, int, TrainBatch]]:
    """Yield ``(step, micro, batch)`` for each ``(step, micro, rows)`` of ``plan``, encoding up to ``ahead`` batches
    in a background thread while the model computes (the processor's image work overlaps the forward/backward).

    Encoding is deterministic, so prefetching changes nothing but the wall time.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unprior-data") as pool:
        queue: deque[tuple[int, int, Future[TrainBatch]]] = deque()
        for step, micro, rows in plan:
            queue.append((step, micro, pool.submit(data.batch, rows)))
            if len(queue) > ahead:
                s, m, future = queue.popleft()
                yield s, m, future.result()
        while queue:
            s, m, future = queue.popleft()
            yield s, m, future.result()
