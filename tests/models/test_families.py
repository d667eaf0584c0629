"""Every tiny family builds, saves, reloads offline and generates with an image (batched == one at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from unprior.models.families import load_model, load_processor
from unprior.models.generate import Prompt, generate
from unprior.models.tiny import FAMILIES, build_tiny, family_tokenizer, save_model

CORPUS = ["a red cube on the table", "What colour is the ball?", "There is a blue dog and a green cat."] * 20
STANDARD = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
"""The stock processor class each no-video Qwen-VL processor saves as."""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_build_save_reload_generate(family: str, tmp_path: Path) -> None:
    tokenizer = family_tokenizer(family, CORPUS)
    model, processor = build_tiny(family, tokenizer, seed=1)
    save_model(model, processor, tmp_path)
    reloaded, proc = load_model(tmp_path)
    # where torchvision is installed, a Qwen-VL folder reloads as the stock processor (it is saved under that name)
    assert type(proc).__name__ in (type(processor).__name__, STANDARD.get(family))
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    prompts = [
        Prompt("What colour?", Image.new("RGB", (40, 40), (250, 10, 10))),
        Prompt("What is on the table, and what colour is it?", Image.new("RGB", (56, 56), (10, 10, 250))),
        Prompt("", Image.new("RGB", (32, 32), (10, 250, 10))),
        Prompt("Text only question?"),
    ]
    batched = generate(reloaded, proc, prompts, batch_size=4, max_new_tokens=6)
    single = [generate(reloaded, proc, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert any(batched)


def test_tokenizer_must_hold_family_tokens() -> None:
    tokenizer = family_tokenizer("llava", CORPUS)
    with pytest.raises(ValueError, match="image tokens"):
        build_tiny("qwen2_vl", tokenizer)
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny("nope", CORPUS)


def test_load_processor_plain_llava(tmp_path: Path) -> None:
    model, processor = build_tiny("llava", CORPUS)
    save_model(model, processor, tmp_path)
    assert type(load_processor(tmp_path)).__name__ == "LlavaProcessor"



def assert_standard_processor_files(folder: Path, family: str) -> None:
    """What unprior saves for a Qwen-VL names the stock processor and carries a video processor entry, so that
    plain ``AutoProcessor.from_pretrained`` builds the real processor where torchvision is installed."""
    import json

    saved = json.loads((folder / "processor_config.json").read_text())
    assert saved["processor_class"] == STANDARD[family]
    assert saved["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert saved["video_processor"]["patch_size"] == saved["image_processor"]["patch_size"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["processor_class"] == STANDARD[family]
    assert "NoVideo" not in "".join(p.read_text() for p in folder.glob("*.json"))


@pytest.mark.parametrize("family", sorted(STANDARD))
def test_saved_qwen_processor_loads_with_the_standard_classes(family: str, tmp_path: Path) -> None:
    from transformers import AutoProcessor, ProcessorMixin
    from transformers.models.auto.processing_auto import processor_class_from_name
    from transformers.utils import is_torchvision_available

    model, processor = build_tiny(family, CORPUS)
    save_model(model, processor, tmp_path)
    assert_standard_processor_files(tmp_path, family)
    assert processor_class_from_name(STANDARD[family]).__name__ == STANDARD[family]
    if is_torchvision_available():  # tools/compat.sh's newest venv: the stock processor, video processor included
        stock = AutoProcessor.from_pretrained(tmp_path)
        assert type(stock).__name__ == STANDARD[family] and stock.video_processor is not None
    else:  # never a bare tokenizer in silence: AutoProcessor says what it lacks
        with pytest.raises(ImportError, match=r"[Tt]orchvision"):
            AutoProcessor.from_pretrained(tmp_path)
    # unprior loads the same folder without torchvision, with identical ids; saving it again stays standard.
    loaded = load_processor(tmp_path)
    assert isinstance(loaded, ProcessorMixin) and loaded.image_processor is not None
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}
    text = loaded.apply_chat_template([message], add_generation_prompt=True)
    assert torch.equal(loaded(text=[text], images=[image], return_tensors="pt")["input_ids"],
                       processor(text=[text], images=[image], return_tensors="pt")["input_ids"])
    loaded.save_pretrained(tmp_path / "again")
    assert_standard_processor_files(tmp_path / "again", family)
