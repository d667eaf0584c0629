"""One prompt, many responses: encode a pairs row with the model's own processor, truncate safely, and collate.

A row's prompt is the chat-templated user turn (image part + question) followed by the generation prompt, run through
the processor, which expands the image placeholder into the family's image tokens and produces the pixel tensors
(``pixel_values``, ``image_grid_thw``, ``pixel_attention_mask``, ...). Every response (the chosen answer and each
negative) is tokenised on its own as ``text + eos`` and appended to that prompt, whatever perturbation produced it:
NaPO scores every response against the full original prompt with the original image (papers.md §2.2).

Truncation never cuts image tokens (peers.md §4 item 9): a response longer than ``max_length − prompt length`` is cut
from the end, and a row whose prompt leaves no room for a single response token is dropped with a reason, before any
model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unprior.pairs.schema import PairRow, open_image

PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Processor outputs with one value per prompt token: right-padded on collation, zero-extended over responses.
Every other processor output is per image and concatenated along its first dimension."""

DROP_REASONS = ("no_image", "unreadable_image", "empty_chosen", "prompt_too_long")
"""Why a row is not scored or trained on (counted, never raised mid-run)."""


@dataclass
class EncodedRow:
    """A pairs row ready for the model: the processed prompt and each response's (truncated) token ids."""

    index: int
    """Position of the row in the pairs file."""
    prompt: dict[str, Tensor]
    """Processor outputs for this row alone (per-token keys are ``(1, P)``)."""
    responses: list[Tensor]
    """``(R_i,)`` int64 token ids per response: the chosen answer first, then each negative, in file order."""
    truncated: list[bool]
    """Per response: whether it was cut to fit ``max_length``."""

    @property
    def prompt_len(self) -> int:
        return int(self.prompt["input_ids"].shape[1])


@dataclass
class Dropped:
    """A row that cannot be used, and why (one of :data:`DROP_REASONS`)."""

    index: int
    reason: str


class RowEncoder:
    """Turns :class:`PairRow` s into :class:`EncodedRow` s with a model's processor and a token budget.

    Args:
        processor: The model's processor (``apply_chat_template``, ``__call__(text=, images=)``, ``tokenizer``).
        max_length: Most tokens of prompt + response; image tokens count.
    """

    def __init__(self, processor, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length

    def prompt(self, image: Image.Image, text: str) -> dict[str, Tensor]:
        """Processor outputs for one user turn holding ``image`` and ``text``, ending in the generation prompt."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        templated = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return dict(self.processor(text=[templated], images=[[image]], return_tensors="pt"))

    def response(self, text: str) -> Tensor:
        """``(R,)`` token ids of ``text`` followed by EOS, as the model would generate it."""
        ids = self.tokenizer(text + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def encode(self, row: PairRow, index: int) -> EncodedRow | Dropped:
        """Encode ``row``'s prompt and every response (chosen, then negatives), or say why it cannot be used."""
        if row.image is None:
            return Dropped(index, "no_image")
        if not row.chosen.strip():
            return Dropped(index, "empty_chosen")
        try:
            image = open_image(row.image)
        except (OSError, ValueError, Image.DecompressionBombError):
            return Dropped(index, "unreadable_image")
        prompt = self.prompt(image, row.prompt)
        budget = self.max_length - int(prompt["input_ids"].shape[1])
        if budget < 1:
            return Dropped(index, "prompt_too_long")
        full = [self.response(text) for text in [row.chosen, *(n.text for n in row.negatives)]]
        return EncodedRow(index, prompt, [ids[:budget] for ids in full], [len(ids) > budget for ids in full])


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
        """Keyword arguments of :meth:`unprior.score.prefix.ResponseScorer.forward`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _pad_right(rows: Sequence[Tensor], value: int) -> Tensor:
    width = max(int(r.shape[-1]) for r in rows)
    return torch.cat([F.pad(r, (0, width - int(r.shape[-1])), value=value) for r in rows])


def collate_prompts(prompts: Sequence[dict[str, Tensor]], pad_id: int) -> dict[str, Tensor]:
    """Stack single-row processor outputs: per-token keys right-padded, per-image keys concatenated."""
    out: dict[str, Tensor] = {}
    for key in prompts[0]:
        values = [p[key] for p in prompts]
        if key in PER_TOKEN_KEYS:
            out[key] = _pad_right(values, pad_id if key == "input_ids" else 0)
        else:
            out[key] = torch.cat(values)
    return out


def collate(
    rows: Sequence[EncodedRow], picks: Sequence[Sequence[int]], pad_id: int, *, repeat_prompts: bool
) -> ResponseBatch:
    """Batch the responses ``picks[i]`` (indices into ``rows[i].responses``) of each row.

    Args:
        rows: Encoded rows.
        picks: Per row, which responses to include, in order; responses are laid out row by row.
        pad_id: The tokenizer's pad id.
        repeat_prompts: Give every response its own copy of its prompt (the naive concatenated forward) instead of
            one prompt per row (the shared-prefix forward).
    """
    responses = [row.responses[j] for row, pick in zip(rows, picks, strict=True) for j in pick]
    row_of = torch.tensor([i for i, pick in enumerate(picks) for _ in pick], dtype=torch.long)
    prompt_rows = [rows[i] for i in row_of.tolist()] if repeat_prompts else list(rows)
    ids = _pad_right([r.unsqueeze(0) for r in responses], pad_id)
    mask = _pad_right([torch.ones(1, len(r), dtype=torch.bool) for r in responses], 0)
    return ResponseBatch(
        prompt=collate_prompts([r.prompt for r in prompt_rows], pad_id),
        prompt_lens=torch.tensor([r.prompt_len for r in prompt_rows], dtype=torch.long),
        response_ids=ids,
        response_mask=mask,
        row_of=torch.arange(len(responses)) if repeat_prompts else row_of,
    )
