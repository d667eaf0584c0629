"""Training data: one chosen answer plus one negative per objective kind per row, with cached reference log-probs.

Rows come from a pairs file; which rows are usable, and the reference log-probs of every response, come from the
``unprior score`` cache entry for the same model, file and ``max_length`` (so rows the scorer dropped, e.g. a prompt
that cannot fit, are skipped here too, and counted). Each row contributes its chosen answer and the first negative of
each kind the objective names; a kind a row lacks is masked (:class:`unprior.losses.Responses`), as Eq. 14 allows.
With mDPO's conditional term, each row also brings its chosen answer under a corrupted image: a second prompt (the
same text with the row's corrupted image, :mod:`unprior.score.corrupt`) holding only the chosen answer, scored in the
same forward as the rest of the batch.

The order of rows is a pure function of the seed and the step (one permutation per epoch), so resuming needs only the
step, and a run on P processes sees exactly the global batches of a run on one.
"""

from __future__ import annotations

import functools
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from unprior.formats.pairs import PairRow
from unprior.forward.batch import ResponseBatch, RowEncoder
from unprior.io import InputError
from unprior.losses import Responses, SeqLogps
from unprior.score.corrupt import Corrupter
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
    """``chosen``, per kind, and ``corrupted`` (with a corruption): ``(B,)`` reference summed log-probs and token
    counts (0 where absent)."""
    corrupted_index: Tensor | None = None
    """``(B,)`` response index of each row's chosen answer under its corrupted image; None without a corruption."""

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(self.responses.to(device), self.chosen_index.to(device),
                          {k: v.to(device) for k, v in self.kind_index.items()},
                          {k: v.to(device) for k, v in self.kind_mask.items()},
                          {k: SeqLogps(v.sum.to(device), v.count.to(device)) for k, v in self.reference.items()},
                          None if self.corrupted_index is None else self.corrupted_index.to(device))

    def split(self, sums: Tensor, counts: Tensor, *, check: bool = True) -> tuple[Responses, dict[str, Responses]]:
        """Policy ``(sum, count)`` of every response -> the objective's inputs (chosen, {kind: negatives}).

        Args:
            sums: ``(N,)`` summed log-probs of every response.
            counts: ``(N,)`` token counts.
            check: Compare the token counts with the reference's. :meth:`PreferenceData.batch` already did that from
                the response masks (the counts a forward returns), so the training step skips it (no device sync).

        Raises:
            ValueError: when the policy scored a different number of tokens than the reference did (the cache
                does not belong to this data or ``max_length``).
        """
        chosen = Responses(SeqLogps(sums[self.chosen_index], counts[self.chosen_index]), self.reference["chosen"])
        if check:
            self._check_counts(chosen.policy.count, chosen.reference.count, None, "chosen")
        negatives = {}
        for kind, index in self.kind_index.items():
            mask = self.kind_mask[kind]
            policy = SeqLogps(torch.where(mask, sums[index], 0), torch.where(mask, counts[index], 0))
            if check:
                self._check_counts(policy.count, self.reference[kind].count, mask, kind)
            negatives[kind] = Responses(policy, self.reference[kind], mask)
        return chosen, negatives

    def corrupted(self, sums: Tensor, counts: Tensor, *, check: bool = True) -> Responses | None:
        """Policy ``(sum, count)`` of every response -> the chosen answers under their corrupted images (mDPO's
        conditional term), with their cached reference values; None when the batch has no corrupted prompts."""
        if self.corrupted_index is None:
            return None
        index = self.corrupted_index
        responses = Responses(SeqLogps(sums[index], counts[index]), self.reference["corrupted"])
        if check:
            self._check_counts(responses.policy.count, responses.reference.count, None, "corrupted")
        return responses

    def check_counts(self) -> None:
        """Raise ValueError unless every response has as many tokens as the reference scored (from the masks)."""
        counts = self.responses.response_mask.sum(1).to(torch.float32)
        self.split(torch.zeros_like(counts), counts)
        self.corrupted(torch.zeros_like(counts), counts)

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
        repeat_prompts: Collate for the naive forward (see :meth:`unprior.forward.batch.RowEncoder.collate`).
        corrupt: With mDPO's conditional term, ``corrupt(row, image)`` (:func:`unprior.score.corrupt.make_corrupter`);
            ``reference`` must then hold the corrupted-image scores (rows without one are skipped and counted).
    """

    def __init__(self, rows: Sequence[PairRow], reference: Reference, encoder: RowEncoder, kinds: Sequence[str],
                 repeat_prompts: bool, corrupt: Corrupter | None = None) -> None:
        self.pairs = rows
        self.reference = reference
        self.encoder = encoder
        self.kinds = list(kinds)
        self.repeat_prompts = repeat_prompts
        self.corrupt = corrupt
        self.skipped: Counter[str] = Counter(reference.manifest["dropped"])
        self.rejected: list[dict[str, str]] = []
        """Rows scored by the reference but unusable for this objective: ``{id, where, reason}`` each (the rows the
        reference itself dropped are listed in its entry's ``rejected.jsonl``)."""
        self.picks: dict[int, dict[str, int]] = {}
        self.kind_counts: Counter[str] = Counter()
        for row in reference.rows:
            pick = self._pick(reference.kinds[row])
            reason = ("no_negative_of_objective_kinds" if not pick
                      else "no_corrupted_score" if corrupt is not None and row not in reference.corrupted else None)
            if reason:
                self.skipped[reason] += 1
                self.rejected.append({"id": rows[row].id, "where": f"row {row}", "reason": reason})
                continue
            self.picks[row] = pick
            self.kind_counts.update(pick.keys())
        self.rows = sorted(self.picks)
        if not reference.rows:  # the reference dropped every row (scored rows without the kinds: below)
            reasons = ", ".join(f"{r} {n}" for r, n in self.skipped.most_common()) or "the file has no rows"
            raise InputError(f"no usable training row in {len(rows)} pairs rows ({reasons}; ids and rows in the "
                             "reference entry's rejected.jsonl); check the pairs file and the objective's kinds")
        missing = [kind for kind in self.kinds if self.kind_counts[kind] == 0]
        if missing:
            found = sorted({k for ks in reference.kinds.values() for k in ks[1:]})
            raise InputError(f"the objective's kinds {missing} have no negatives in this pairs file "
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
        n = len(rows)
        corrupted_index = None
        if self.corrupt is not None:  # rows B..2B-1: the same prompts with corrupted images, chosen answer only
            encoded = self.encoder.with_corrupted(encoded, self.corrupt, keep_originals=True)
            corrupted_index = sum(len(p) for p in picks) + torch.arange(n)
            picks = [*picks, *([0] for _ in range(n))]
        responses = self.encoder.collate(encoded, picks, repeat_prompts=self.repeat_prompts)
        starts = np.cumsum([0, *(len(p) for p in picks[: n - 1])])
        kind_index = {k: torch.zeros(n, dtype=torch.long) for k in self.kinds}
        kind_mask = {k: torch.zeros(n, dtype=torch.bool) for k in self.kinds}
        ref = {name: (torch.zeros(n, dtype=torch.float64), torch.zeros(n)) for name in ["chosen", *self.kinds]}
        for b, (row, start) in enumerate(zip(rows, starts, strict=True)):
            sums, counts = self.reference.sums[row], self.reference.counts[row]
            ref["chosen"][0][b], ref["chosen"][1][b] = sums[0], counts[0]
            for offset, (kind, j) in enumerate(self.picks[row].items(), start=1):
                kind_index[kind][b], kind_mask[kind][b] = int(start) + offset, True
                ref[kind][0][b], ref[kind][1][b] = sums[j], counts[j]
        if corrupted_index is not None:
            scores = [self.reference.corrupted[row] for row in rows]
            ref["corrupted"] = (torch.tensor([s for s, _ in scores], dtype=torch.float64),
                                torch.tensor([float(c) for _, c in scores]))
        batch = TrainBatch(responses=responses, chosen_index=torch.as_tensor(starts, dtype=torch.long),
                           kind_index=kind_index, kind_mask=kind_mask,
                           reference={name: SeqLogps(s.float(), c) for name, (s, c) in ref.items()},
                           corrupted_index=corrupted_index)
        batch.check_counts()  # here, on the CPU and off the training thread, rather than after each forward
        return batch


@functools.lru_cache(maxsize=4)
def _permutation(n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of one epoch (cached: every micro-step of the epoch reads it)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_rows)
    order.flags.writeable = False
    return order


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
        return _permutation(self.n_rows, self.seed, epoch)

    def global_rows(self, step: int) -> list[int]:
        start = step * self.global_batch
        first, last = start // self.n_rows, (start + self.global_batch - 1) // self.n_rows
        stream = np.concatenate([self._epoch(e) for e in range(first, last + 1)])
        offset = start - first * self.n_rows
        return stream[offset : offset + self.global_batch].tolist()

    def micro_rows(self, step: int, micro: int, rank: int) -> list[int]:
        chunk = micro * self.processes + rank
        return self.global_rows(step)[chunk * self.batch_size : (chunk + 1) * self.batch_size]


class Prefetcher:
    """Yield ``(step, micro, batch)`` for each ``(step, micro, rows)`` of ``plan``, encoding batches in a background
    thread while the model computes (the processor's image and text work overlaps the training step).

    When the next batch is encoded matters under Python's GIL: the processor is mostly Python, and so is the
    forward of a transformers model, so encoding during the forward slows the forward down (on the tiny benchmark
    model its main-thread CPU time went from 4.6–5.4 to 5.7–7.1 ms per step in paired runs). The backward pass runs
    in C++ without the GIL. So the loop calls :meth:`advance` right before ``backward``, which starts encoding the
    next batch then; a batch that is not ready when it is needed is waited for. Without :meth:`advance` calls, each
    batch starts encoding as the previous one is taken. Encoding is deterministic, so this changes nothing but the
    wall time.

    Args:
        data: Encodes the rows.
        plan: ``(step, micro, rows)`` items.
        ahead: Most batches encoded or being encoded ahead of the one in use.
        threaded: False encodes in the calling thread (when the next batch is taken), e.g. for a profiler that
            sees one thread.
    """

    def __init__(self, data: PreferenceData, plan: Iterable[tuple[int, int, list[int]]], ahead: int = 1,
                 threaded: bool = True) -> None:
        self.data = data
        self.ahead = max(1, ahead)
        self._plan = iter(plan)
        self._queue: deque[tuple[int, int, Future[TrainBatch] | list[int]]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unprior-data") if threaded else None
        self._advanced = False
        self._submit()  # the first batch starts now

    def _submit(self) -> bool:
        item = next(self._plan, None)
        if item is None:
            return False
        step, micro, rows = item
        job = self._pool.submit(self.data.batch, rows) if self._pool is not None else rows
        self._queue.append((step, micro, job))
        return True

    def advance(self) -> None:
        """Start encoding the next batch now (if fewer than ``ahead`` are pending)."""
        self._advanced = True
        if len(self._queue) < self.ahead:
            self._submit()

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> tuple[int, int, TrainBatch]:
        if not self._queue and not self._submit():
            self.close()
            raise StopIteration
        step, micro, job = self._queue.popleft()
        batch = job.result() if isinstance(job, Future) else self.data.batch(job)
        if not self._queue and self._pool is not None and not self._advanced:
            self._submit()  # keeps one batch in flight for loops that never call advance()
        return step, micro, batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def prefetched(data: PreferenceData, plan: Iterable[tuple[int, int, list[int]]], ahead: int = 1,
               threaded: bool = True) -> Prefetcher:
    """A :class:`Prefetcher` over ``plan`` (call its ``advance()`` right before ``backward``)."""
    return Prefetcher(data, plan, ahead, threaded)
