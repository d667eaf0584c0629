"""Encoding rows: responses are cut from the end, image tokens never; rows that cannot be used say why."""

from __future__ import annotations

import io

import torch
from PIL import Image
from score.helpers import png

from unprior.formats.pairs import Negative, PairRow
from unprior.forward.batch import Dropped, RowEncoder
from unprior.models.families import load_model


def row(**kw) -> PairRow:
    base = dict(id="x", image=png(0), prompt="Describe the image.", chosen="A red apple.",
                negatives=[Negative("A green apple and a blue whale and a yellow banana.", "error_injection")])
    return PairRow(**{**base, **kw})


def test_long_response_is_cut_from_the_end_and_image_tokens_stay(family_model):
    _, processor = load_model(family_model("llava"))
    full, _ = RowEncoder(processor, max_length=512).encode([(0, row())])
    prompt_len = int(full.prompt_lens[0])
    tight, dropped = RowEncoder(processor, max_length=prompt_len + 4).encode([(0, row())])
    assert not dropped
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert (tight.prompt["input_ids"] == image_id).sum() == (full.prompt["input_ids"] == image_id).sum() == 16
    assert [len(r) for r in tight.responses[0]] == [4, 4]
    assert tight.truncated == [[True, True]]
    assert torch.equal(tight.responses[0][1], full.responses[0][1][:4])  # the start is kept
    assert full.truncated == [[False, False]]


def test_unusable_rows_are_dropped_with_a_reason(family_model):
    _, processor = load_model(family_model("qwen2_vl"))
    encoder = RowEncoder(processor, max_length=24)
    rows = [row(image=None), row(image=b"not an image"), row(chosen="  "), row(prompt="Describe " * 30), row()]
    encoded, dropped = encoder.encode(list(enumerate(rows)))
    assert dropped == [Dropped(0, "no_image"), Dropped(1, "unreadable_image"), Dropped(2, "empty_chosen"),
                       Dropped(3, "prompt_too_long")]
    assert encoded.indices == [4]
    assert encoded.prompt["image_grid_thw"].shape[0] == 1  # the dropped rows' images were processed away


def test_an_image_the_processor_refuses_is_dropped(family_model, monkeypatch):
    _, processor = load_model(family_model("llava"))
    encoder = RowEncoder(processor, max_length=64)
    real = encoder.process

    def picky(texts, images):
        if any(image.size == (5, 500) for image in images):
            raise ValueError("aspect ratio")
        return real(texts, images)

    monkeypatch.setattr(encoder, "process", picky)
    buf = io.BytesIO()
    Image.new("RGB", (5, 500)).save(buf, "PNG")
    encoded, dropped = encoder.encode([(0, row()), (1, row(image=buf.getvalue())), (2, row())])
    assert dropped == [Dropped(1, "unprocessable_image")] and encoded.indices == [0, 2]


def test_collate_shared_and_repeated(family_model):
    _, processor = load_model(family_model("qwen2_vl"))
    encoder = RowEncoder(processor, max_length=128)
    rows, _ = encoder.encode([(0, row()), (1, row(prompt="What color is the apple here?"))])
    shared = encoder.collate(rows, [[0, 1], [1]], repeat_prompts=False)
    assert shared.row_of.tolist() == [0, 0, 1]
    assert shared.prompt["input_ids"].shape[0] == 2 and shared.prompt["image_grid_thw"].shape[0] == 2
    assert shared.prompt["attention_mask"][0, -1] == 0  # right padding: the first prompt is the shorter one
    lens = [len(rows.responses[0][0]), len(rows.responses[0][1]), len(rows.responses[1][1])]
    assert shared.response_mask.sum(1).tolist() == lens
    repeated = encoder.collate(rows, [[0, 1], [1]], repeat_prompts=True)
    assert repeated.row_of.tolist() == [0, 1, 2]
    assert repeated.prompt_lens.tolist() == [rows.prompt_lens[0], rows.prompt_lens[0], rows.prompt_lens[1]]
    assert repeated.prompt["pixel_values"].shape[0] == 3 * rows.prompt["pixel_values"].shape[0] // 2
