"""One prompt, many responses: encode pairs rows with the model's own processor, truncate safely, and collate.

A row's prompt is the chat-templated user turn (image part + question) followed by the generation prompt, run through
the processor, which expands the image placeholder into the family's image tokens and produces the pixel tensors
(``pixel_values``, ``image_grid_thw``, ``pixel_attention_mask``, ...). Rows are processed a batch at a time, in one
processor call, so the processor pads and stacks each family's pixel tensors its own way. Every response (the chosen
answer and each negative) is tokenised on its own as ``text + eos`` and appended to the prompt, whatever perturbation
produced it: NaPO scores every response against the full original prompt with the original image (docs/papers.md,
NaPO part 2).

Truncation never cuts image tokens: a response longer than ``max_length − prompt length`` is cut from the end, and a
row whose prompt leaves no room for a single response token is dropped with a reason, before any model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unprior.formats.pairs import ImageProblem, PairRow, open_image
from unprior.models.generate import chat_text

PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Processor outputs with one value per prompt token (zero-extended over responses on the naive path)."""

DROP_REASONS = ("no_image", "unreadable_image", "image_too_large", "image_outside_root", "no_image_root",
                "unprocessable_image", "empty_chosen", "prompt_too_long")
"""Why a row is not scored or trained on (counted, never raised mid-run; docs/errors.md)."""


@dataclass
class Dropped:
    """A row that cannot be used, and why (one of :data:`DROP_REASONS`)."""

    index: int
    reason: str


@dataclass
class EncodedRows:
    """Several usable rows ready for the model: their processed prompts and each response's (truncated) ids."""

    indices: list[int]
    """Positions of the rows in the pairs file."""
    prompt: dict[str, Tensor]
    """Processor outputs of the prompts; per-token keys are right-padded ``(B, P)``."""
    prompt_lens: Tensor
    """``(B,)`` int64 prompt lengths (image tokens included)."""
    responses: list[list[Tensor]]
    """Per row, ``(R_i,)`` int64 token ids per response: the chosen answer first, then each negative in file order."""
    truncated: list[list[bool]]
    """Per row and response: whether it was cut to fit ``max_length``."""
    texts: list[str]
    """The templated prompts (to re-run the processor for the naive forward)."""
    images: list[Image.Image]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class ResponseBatch:
    """Responses of several rows, each continuing its row's prompt.

    In a *shared* batch each prompt appears once and ``row_of`` maps responses to prompts; in a *repeated* batch
    (the naive path) prompt ``n`` belongs to response ``n`` and ``row_of`` is ``arange(N)``.
    """

    prompt: dict[str, Tensor]
    """Processor outputs of the prompts, per-token keys right-padded to the longest prompt ``(B, P)``."""
    prompt_lens: Tensor
    """``(B,)`` int64 prompt lengths."""
    response_ids: Tensor
    """``(N, R)`` int64, right-padded with the pad id."""
    response_mask: Tensor
    """``(N, R)`` bool, True on response tokens."""
    row_of: Tensor
    """``(N,)`` int64 prompt index of each response."""

    def to(self, device: torch.device | str) -> ResponseBatch:
        tensors = {f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "prompt"}
        return replace(self, **tensors, prompt={k: v.to(device) for k, v in self.prompt.items()})

    def inputs(self) -> dict[str, object]:
        """Keyword arguments of :meth:`unprior.forward.prefix.ResponseScorer.forward`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RowEncoder:
    """Turns :class:`PairRow` s into :class:`EncodedRows` and :class:`ResponseBatch` es with a model's processor.

    Args:
        processor: The model's processor (``apply_chat_template``, ``__call__(text=, images=)``, ``tokenizer``).
        max_length: Most tokens of prompt + response; image tokens count.
    """

    def __init__(self, processor, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self._templated: dict[str, str] = {}

    def template(self, text: str) -> str:
        """The chat-templated user turn (image part + ``text``) with the generation prompt; cached per text."""
        if text not in self._templated:
            self._templated[text] = chat_text(self.processor, text, True)
        return self._templated[text]

    def process(self, texts: Sequence[str], images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """One processor call: prompts right-padded, pixel tensors stacked the family's way."""
        out = self.processor(text=list(texts), images=[[image] for image in images], return_tensors="pt",
                             padding=True, padding_side="right")
        return dict(out)

    def responses(self, texts: Sequence[str]) -> list[Tensor]:
        """``(R_i,)`` token ids of each text followed by EOS, as the model would generate it."""
        eos = self.tokenizer.eos_token
        ids = self.tokenizer([text + eos for text in texts], add_special_tokens=False)["input_ids"]
        return [torch.tensor(i, dtype=torch.long) for i in ids]

    def encode(self, rows: Sequence[tuple[int, PairRow]]) -> tuple[EncodedRows | None, list[Dropped]]:
        """Encode ``(file position, row)`` pairs: the usable ones together, the others with their reason."""
        dropped: list[Dropped] = []
        kept: list[tuple[int, PairRow, Image.Image]] = []
        for index, row in rows:
            reason, image = self._check(row)
            if reason:
                dropped.append(Dropped(index, reason))
            else:
                kept.append((index, row, image))
        prompt = self._process_or_drop(kept, dropped)
        if prompt is not None:
            lens = prompt["attention_mask"].sum(1)
            too_long = {index for (index, _, _), n in zip(kept, lens.tolist(), strict=True) if n >= self.max_length}
            if too_long:
                dropped += [Dropped(index, "prompt_too_long") for index in sorted(too_long)]
                kept = [item for item in kept if item[0] not in too_long]
                prompt = self._process_or_drop(kept, dropped)
        dropped.sort(key=lambda d: d.index)
        if prompt is None:
            return None, dropped
        return self._with_responses(kept, prompt), dropped

    def _check(self, row: PairRow) -> tuple[str | None, Image.Image | None]:
        if row.image is None:
            return "no_image", None
        if not row.chosen.strip():
            return "empty_chosen", None
        try:
            return None, open_image(row.image)
        except ImageProblem as e:  # too many pixels, a path out of the image root
            return e.reason, None
        except (OSError, ValueError, Image.DecompressionBombError):
            return "unreadable_image", None

    def _process_or_drop(self, kept: list, dropped: list[Dropped]) -> dict[str, Tensor] | None:
        """Process the kept rows together; if the processor refuses the batch, find and drop the rows it refuses."""
        if not kept:
            return None
        try:
            return self.process([self.template(row.prompt) for _, row, _ in kept], [im for _, _, im in kept])
        except ValueError:  # e.g. an image the processor cannot resize (extreme aspect ratio)
            bad = {index for index, row, image in kept if not self._processable(row, image)}
            if not bad:
                raise
            dropped += [Dropped(index, "unprocessable_image") for index in sorted(bad)]
            kept[:] = [item for item in kept if item[0] not in bad]
            return self._process_or_drop(kept, dropped)

    def _processable(self, row: PairRow, image: Image.Image) -> bool:
        try:
            self.process([self.template(row.prompt)], [image])
        except ValueError:
            return False
        return True

    def _with_responses(self, kept: list, prompt: dict[str, Tensor]) -> EncodedRows:
        lens = prompt["attention_mask"].sum(1).long()
        texts = [[row.chosen, *(n.text for n in row.negatives)] for _, row, _ in kept]
        flat = self.responses([t for ts in texts for t in ts])
        responses, truncated, start = [], [], 0
        for ts, n in zip(texts, lens.tolist(), strict=True):
            budget = self.max_length - n
            ids = flat[start : start + len(ts)]
            start += len(ts)
            responses.append([r[:budget] for r in ids])
            truncated.append([len(r) > budget for r in ids])
        return EncodedRows(indices=[index for index, _, _ in kept], prompt=prompt, prompt_lens=lens,
                           responses=responses, truncated=truncated,
                           texts=[self.template(row.prompt) for _, row, _ in kept],
                           images=[image for _, _, image in kept])

    def with_corrupted(self, rows: EncodedRows, corrupt, *, keep_originals: bool) -> EncodedRows:
        """The rows' prompts with corrupted images (mDPO's conditional term), each holding only the chosen answer.

        Args:
            rows: Encoded rows.
            corrupt: ``corrupt(file position, image) -> image`` (:func:`unprior.score.corrupt.make_corrupter`).
            keep_originals: Return the original rows first and the corrupted ones after them (``2·B`` rows, one
                processor call), as training needs; else only the corrupted rows (reference scoring).

        Raises:
            ValueError: when a corrupted prompt has a different length than the original (the corruption must keep
                the image's token count).
        """
        images = [corrupt(index, image) for index, image in zip(rows.indices, rows.images, strict=True)]
        chosen = [[responses[0]] for responses in rows.responses]
        cut = [[truncated[0]] for truncated in rows.truncated]
        if keep_originals:
            merged = EncodedRows([*rows.indices, *rows.indices], {}, rows.prompt_lens, [*rows.responses, *chosen],
                                 [*rows.truncated, *cut], [*rows.texts, *rows.texts], [*rows.images, *images])
        else:
            merged = EncodedRows(list(rows.indices), {}, rows.prompt_lens, chosen, cut, list(rows.texts), images)
        merged.prompt = self.process(merged.texts, merged.images)
        merged.prompt_lens = merged.prompt["attention_mask"].sum(1).long()
        expected = rows.prompt_lens.repeat(2) if keep_originals else rows.prompt_lens
        if not torch.equal(merged.prompt_lens, expected):
            raise ValueError(f"the corrupted images change the prompt lengths ({merged.prompt_lens.tolist()} vs "
                             f"{expected.tolist()}); a corruption must keep the image's size")
        return merged

    def collate(self, rows: EncodedRows, picks: Sequence[Sequence[int]], *, repeat_prompts: bool) -> ResponseBatch:
        """Batch the responses ``picks[i]`` (indices into ``rows.responses[i]``) of each row.

        Args:
            rows: Encoded rows.
            picks: Per row, which responses to include, in order; responses are laid out row by row.
            repeat_prompts: Give every response its own copy of its prompt and image (the naive concatenated
                forward; the processor is run again on the repeated rows) instead of one prompt per row (the
                shared-prefix forward).
        """
        responses = [rows.responses[i][j] for i, pick in enumerate(picks) for j in pick]
        row_of = torch.tensor([i for i, pick in enumerate(picks) for _ in pick], dtype=torch.long)
        width = max(len(r) for r in responses)
        pad = self.tokenizer.pad_token_id
        ids = torch.stack([F.pad(r, (0, width - len(r)), value=pad) for r in responses])
        mask = torch.stack([torch.arange(width) < len(r) for r in responses])
        if not repeat_prompts:
            return ResponseBatch(rows.prompt, rows.prompt_lens, ids, mask, row_of)
        order = row_of.tolist()
        prompt = self.process([rows.texts[i] for i in order], [rows.images[i] for i in order])
        return ResponseBatch(prompt, rows.prompt_lens[row_of], ids, mask, torch.arange(len(responses)))
