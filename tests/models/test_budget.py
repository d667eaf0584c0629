"""Generation batches that adapt to a memory budget (``max_batch_tokens``, docs/pairs.md "Real sizes")."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from unprior.models.generate import (
    Prompt,
    RowShape,
    _encode,
    batch_cost,
    budget_batches,
    generate,
    row_shapes,
    vision_merge,
)
from unprior.models.tiny import build_tiny, family_tokenizer

CORPUS = ["a red cube on the table", "What colour is the ball?", "There is a blue dog and a green cat."] * 20


def test_cost_counts_beams_padding_and_vision() -> None:
    rows = [RowShape(10, 4), RowShape(20, 4)]
    # 2 rows x 3 beams x (longest 20 + 5 new) + 16 x 8 image tokens
    assert batch_cost(rows, num_beams=3, max_new_tokens=5, merge=16) == 2 * 3 * 25 + 16 * 8
    assert batch_cost([], num_beams=3, max_new_tokens=5, merge=16) == 0


def test_budget_splits_consecutively_and_keeps_batch_size() -> None:
    rows = [RowShape(100, 0)] * 5
    kw = dict(num_beams=1, max_new_tokens=0, merge=1)
    assert budget_batches(rows, batch_size=2, max_batch_tokens=0, **kw) == [[0, 1], [2, 3], [4]]
    assert budget_batches(rows, batch_size=8, max_batch_tokens=250, **kw) == [[0, 1], [2, 3], [4]]
    assert budget_batches(rows, batch_size=8, max_batch_tokens=50, **kw) == [[0], [1], [2], [3], [4]]  # alone
    assert budget_batches(rows, batch_size=8, max_batch_tokens=10_000, **kw) == [[0, 1, 2, 3, 4]]


def test_budget_counts_the_longest_prompt() -> None:
    rows = [RowShape(10), RowShape(10), RowShape(100), RowShape(10)]
    got = budget_batches(rows, batch_size=8, max_batch_tokens=199, num_beams=1, max_new_tokens=0, merge=1)
    assert got == [[0, 1], [2], [3]]  # [0, 1, 2] pads to 3 x 100, [2, 3] to 2 x 100


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl", "llava"])
def test_row_shapes_match_the_encoding(family: str) -> None:
    model, processor = build_tiny(family, family_tokenizer(family, CORPUS))
    image_id = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
    prompts = [Prompt("What colour?", Image.new("RGB", (56, 56))), Prompt("", Image.new("RGB", (40, 30))),
               Prompt("Text only?")]
    for p, shape in zip(prompts, row_shapes(processor, prompts, image_id), strict=True):
        enc = _encode(processor, [p])
        assert shape == RowShape(enc["input_ids"].shape[1], int((enc["input_ids"] == image_id).sum()))
    assert vision_merge(model.config) == {"idefics3": 4, "qwen2_vl": 4, "llava": 1}[family]


def test_budgeted_generation_equals_unbudgeted() -> None:
    model, processor = build_tiny("idefics3", family_tokenizer("idefics3", CORPUS), seed=2)
    prompts = [Prompt(f"What colour is thing {i}?", Image.new("RGB", (32, 32), (40 * i, 10, 200))) for i in range(5)]
    calls: list[int] = []
    hook = model.model.vision_model.register_forward_hook(lambda m, i, o: calls.append(o.last_hidden_state.shape[0]))
    with torch.no_grad():
        one_call = generate(model, processor, prompts, batch_size=8, max_new_tokens=4, num_beams=3)
        assert calls == [5]  # beams share their row's vision pass (HF encodes images before expanding beams)
        budget = batch_cost(row_shapes(processor, prompts[:2], model.config.image_token_id), num_beams=3,
                            max_new_tokens=4, merge=vision_merge(model.config))
        split = generate(model, processor, prompts, batch_size=8, max_batch_tokens=budget, max_new_tokens=4,
                         num_beams=3)
    hook.remove()
    assert calls[1:] == [2, 2, 1]
    assert split == one_call
