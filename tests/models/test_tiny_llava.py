"""The world's tokenizer, chat template, tiny LLaVA save/load, and the SFT encoder's agreement with the processor."""

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from unprior.models.sft import collate, encode_rows
from unprior.models.tiny import build_tiny_llava, save_model
from unprior.models.tokenizer import train_tokenizer
from unprior.world.base import vocabulary_corpus
from unprior.world.spec import CATEGORY_NAMES, COLOUR_NAMES


def _tok():
    return train_tokenizer(vocabulary_corpus(), vocab_size=400)


def test_round_trip_and_single_token_words():
    tok = _tok()
    text = "A red apple, a yellow banana and an orange carrot."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    for word in (*CATEGORY_NAMES, *COLOUR_NAMES):
        assert len(tok.tokenize(" " + word)) == 1, word


def test_chat_template_handles_strings_and_parts():
    tok = _tok()
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    plain = [{"role": "user", "content": "Describe the image."}, {"role": "assistant", "content": "A red apple."}]
    assert (
        tok.apply_chat_template(parts, add_generation_prompt=True, tokenize=False)
        == "<|user|>\n<image>Describe the image.<|end|>\n<|assistant|>\n"
    )
    assert tok.apply_chat_template(plain, tokenize=False).endswith("<|assistant|>\nA red apple.<|end|>\n")


def test_save_and_reload_offline_with_auto_classes(tmp_path):
    model, processor = build_tiny_llava(_tok(), image_size=32, patch_size=16)
    save_model(model, processor, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    proc = AutoProcessor.from_pretrained(tmp_path)
    for (n, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    assert proc.tokenizer.chat_template == processor.tokenizer.chat_template
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    enc = proc(images=[image], text=["<|user|>\n<image>Hi<|end|>\n<|assistant|>\n"], return_tensors="pt")
    assert int((enc["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 4
    out = reloaded.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_encoder_matches_the_processor():
    """The SFT loop's fast path (templating + token expansion + rescale/normalise) equals the processor's output."""
    _, processor = build_tiny_llava(_tok(), image_size=32, patch_size=16)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    enc = encode_rows(processor, ["What color is the apple?", "Describe the image."],
                      ["The apple is red.", "A red apple."], [0, 1], images)
    batch = collate(enc, [0, 1], processor.tokenizer.pad_token_id)
    for i, prompt in enumerate(["What color is the apple?", "Describe the image."]):
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ref = processor(images=[Image.fromarray(images[i])], text=[text], return_tensors="pt")
        n = ref["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][i, :n], ref["input_ids"][0])
        assert (batch["labels"][i, :n] == -100).all() and (batch["labels"][i, n:] != -100).any()
        torch.testing.assert_close(batch["pixel_values"][i], ref["pixel_values"][0], atol=1e-5, rtol=0)
