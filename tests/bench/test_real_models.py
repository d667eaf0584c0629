"""Real-size architectures (bench/real_models.py): SmolVLM-256M-Instruct and Qwen2-VL-2B-Instruct shapes, and how
the default generation budget batches them (docs/pairs.md, "Real sizes")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from unprior.models.backends import BackendConfig
from unprior.models.generate import Prompt, batch_cost, budget_batches, row_shapes, vision_merge

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smolvlm_tokenizer():
    from real_models import smolvlm_tokenizer

    return smolvlm_tokenizer()


def test_smolvlm_shape(smolvlm_tokenizer) -> None:
    from real_models import SMOLVLM_VOCAB, smolvlm_config, smolvlm_processor

    assert len(smolvlm_tokenizer) == SMOLVLM_VOCAB
    config = smolvlm_config(smolvlm_tokenizer)
    with torch.device("meta"):
        from transformers import Idefics3ForConditionalGeneration

        model = Idefics3ForConditionalGeneration(config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 256
    assert vision_merge(config) == 16
    photo = Image.new("RGB", (640, 480))
    for splitting, tokens in ((True, 13 * 64), (False, 64)):
        processor = smolvlm_processor(smolvlm_tokenizer, splitting)
        (shape,) = row_shapes(processor, [Prompt("What is in the image?", photo)], config.image_token_id)
        assert shape.image == tokens


def test_default_budget_batches_two_split_rows(smolvlm_tokenizer) -> None:
    """Splitting on: 2 rows of 13 tiles per generate call (about 0.6 GB of vision-tower activations each) instead
    of batch_size rows; splitting off: 24-29 rows (16 photos in one call, as before)."""
    from real_models import smolvlm_config, smolvlm_processor

    config = smolvlm_config(smolvlm_tokenizer)
    budget, size = BackendConfig().max_batch_tokens, BackendConfig().batch_size
    prompts = [Prompt("What is in the image?", Image.new("RGB", (640 + 32 * i, 480))) for i in range(size)]
    for splitting, rows in ((True, range(2, 3)), (False, range(16, size + 1))):
        shapes = row_shapes(smolvlm_processor(smolvlm_tokenizer, splitting), prompts, config.image_token_id)
        for beams in (1, 3):
            batches = budget_batches(shapes, batch_size=size, max_batch_tokens=budget, num_beams=beams,
                                     max_new_tokens=16, merge=16)
            assert len(batches[0]) in rows, (splitting, beams)
            assert batch_cost([shapes[i] for i in batches[0]], num_beams=beams, max_new_tokens=16,
                              merge=16) <= budget


def test_qwen2_vl_2b_shape() -> None:
    from real_models import qwen2_vl_config
    from transformers import Qwen2VLForConditionalGeneration

    from unprior.models.tiny import QWEN_TOKENS
    from unprior.models.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["a red cube"] * 10, 300, image_tokens=QWEN_TOKENS)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer))
    assert round(sum(p.numel() for p in model.parameters()) / 1e8) == 22  # 2.2B (tied embeddings)
