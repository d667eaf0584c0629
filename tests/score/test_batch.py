"""Encoding rows: responses are cut from the end, image tokens never; rows that cannot be used say why."""

from __future__ import annotations

import torch

from unprior.models.families import load_model
from unprior.pairs.schema import Negative, PairRow
from unprior.score.batch import Dropped, EncodedRow, RowEncoder, collate

from .helpers import png


def row(**kw) -> PairRow:
    base = dict(id="x", image=png(0), prompt="Describe the image.", chosen="A red apple.",
                negatives=[Negative("A green apple and a blue whale and a yellow banana.", "error_injection")])
    return PairRow(**{**base, **kw})


def test_long_response_is_cut_from_the_end_and_image_tokens_stay(family_model):
    _, processor = load_model(family_model("llava"))
    full = RowEncoder(processor, max_length=512).encode(row(), 0)
    prompt_len = full.prompt_len
    tight = RowEncoder(processor, max_length=prompt_len + 4).encode(row(), 0)
    assert isinstance(tight, EncodedRow)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert (tight.prompt["input_ids"] == image_id).sum() == (full.prompt["input_ids"] == image_id).sum() == 16
    assert [len(r) for r in tight.responses] == [4, 4]
    assert tight.truncated == [True, True]
    assert torch.equal(tight.responses[1], full.responses[1][:4])  # the start is kept
    assert full.truncated == [False, False]


def test_unusable_rows_are_dropped_with_a_reason(family_model):
    _, processor = load_model(family_model("qwen2_vl"))
    encoder = RowEncoder(processor, max_length=24)
    assert encoder.encode(row(image=None), 0) == Dropped(0, "no_image")
    assert encoder.encode(row(image=b"not an image"), 1) == Dropped(1, "unreadable_image")
    assert encoder.encode(row(chosen="  "), 2) == Dropped(2, "empty_chosen")
    assert encoder.encode(row(prompt="Describe " * 30), 3) == Dropped(3, "prompt_too_long")
    assert isinstance(encoder.encode(row(), 4), EncodedRow)


def test_collate_shared_and_repeated(family_model):
    _, processor = load_model(family_model("qwen2_vl"))
    encoder = RowEncoder(processor, max_length=128)
    rows = [encoder.encode(row(), 0), encoder.encode(row(prompt="What color is the apple here?"), 1)]
    pad = processor.tokenizer.pad_token_id
    shared = collate(rows, [[0, 1], [1]], pad, repeat_prompts=False)
    assert shared.row_of.tolist() == [0, 0, 1]
    assert shared.prompt["input_ids"].shape[0] == 2 and shared.prompt["image_grid_thw"].shape[0] == 2
    assert shared.prompt_lens.tolist() == [rows[0].prompt_len, rows[1].prompt_len]
    assert shared.response_mask.sum(1).tolist() == [len(rows[0].responses[0]), len(rows[0].responses[1]),
                                                    len(rows[1].responses[1])]
    repeated = collate(rows, [[0, 1], [1]], pad, repeat_prompts=True)
    assert repeated.row_of.tolist() == [0, 1, 2]
    assert repeated.prompt["input_ids"].shape[0] == 3
    assert repeated.prompt["pixel_values"].shape[0] == 3 * rows[0].prompt["pixel_values"].shape[0]
