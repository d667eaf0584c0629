"""Corrupted images for mDPO's conditional term: deterministic per row, size-preserving, cached beside their entry
(a changed corruption rescores only the chosen answers), and the cached numbers are the frozen model's."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from unprior.cli import main
from unprior.formats.pairs import open_image, read_pairs
from unprior.models.families import load_model
from unprior.score.config import CorruptionConfig, ScoreConfig
from unprior.score.corrupt import corrupt_image, random_resized_crop
from unprior.score.reference import corrupted_dir, ensure_reference, load_reference

from .helpers import png


def image(seed: int = 0, size: int = 32) -> Image.Image:
    return Image.open(io.BytesIO(png(seed, size))).convert("RGB")


@pytest.mark.parametrize("kind", ["crop", "noise", "mask"])
def test_corruption_is_a_function_of_config_and_row(kind):
    cfg = CorruptionConfig(kind=kind)
    original = image()
    first = corrupt_image(original, 3, cfg)
    assert first.size == original.size and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(corrupt_image(original, 3, cfg)))  # same row: same image
    assert not np.array_equal(np.asarray(first), np.asarray(original))
    assert not np.array_equal(np.asarray(first), np.asarray(corrupt_image(original, 4, cfg)))  # other row
    other_seed = CorruptionConfig(kind=kind, seed=1)
    assert not np.array_equal(np.asarray(first), np.asarray(corrupt_image(original, 3, other_seed)))


def test_crop_keeps_the_configured_share_of_the_area():
    """Red = x and green = y of a 256 × 256 image: the value ranges of the resized crop give its source window."""
    y, x = np.mgrid[:256, :256]
    coords = Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8))
    for row in range(20):
        out = np.asarray(random_resized_crop(coords, (0.01, 0.2), np.random.default_rng([0, row]))).astype(int)
        assert out.shape == (256, 256, 3)
        width = out[..., 0].max() - out[..., 0].min() + 1
        height = out[..., 1].max() - out[..., 1].min() + 1
        assert 0.01 * 0.9 <= width * height / 256**2 <= 0.2 * 1.1
        assert 3 / 4 * 0.9 <= width / height <= 4 / 3 * 1.1
    full = random_resized_crop(coords, (1.0, 1.0), np.random.default_rng(0), ratio=(1.0, 1.0))
    assert np.array_equal(np.asarray(full), np.asarray(coords))  # the whole image: the identity


def test_corrupted_entry_hit_miss_and_values(family_model, small_pairs, tmp_path, scoring_calls):
    calls = scoring_calls
    model_dir = family_model("llava")
    cfg = ScoreConfig(model=str(model_dir), pairs=str(small_pairs), max_length=64, reference_dir=str(tmp_path / "c"),
                      corrupted=True)
    entry = ensure_reference(cfg, log=lambda _: None)
    assert calls == {"pairs": 1, "corrupted": 1}
    sub = corrupted_dir(entry, cfg.corruption)
    assert {p.name for p in sub.iterdir()} == {"corrupted.parquet", "dropped.jsonl", "corruption.png",
                                               "manifest.json"}
    assert ensure_reference(cfg, log=lambda _: None) == entry and calls == {"pairs": 1, "corrupted": 1}  # hit
    same = ScoreConfig(**{**cfg.__dict__, "batch_size": 5, "method": "naive"})
    assert ensure_reference(same, log=lambda _: None) == entry and calls == {"pairs": 1, "corrupted": 1}
    reseeded = ScoreConfig(**{**cfg.__dict__, "corruption": CorruptionConfig(seed=1)})
    assert ensure_reference(reseeded, log=lambda _: None) == entry and calls == {"pairs": 1, "corrupted": 2}
    noised = ScoreConfig(**{**cfg.__dict__, "corruption": CorruptionConfig(kind="noise", noise_step=700)})
    ensure_reference(noised, log=lambda _: None)
    assert calls == {"pairs": 1, "corrupted": 3}
    plain = ScoreConfig(**{**cfg.__dict__, "corrupted": False})
    assert ensure_reference(plain, log=lambda _: None) == entry and calls == {"pairs": 1, "corrupted": 3}
    assert len(list((entry / "corrupted").iterdir())) == 3
    with pytest.raises(FileNotFoundError, match="corrupted=true"):
        load_reference(entry, CorruptionConfig(kind="mask"))

    ref = load_reference(entry, cfg.corruption)
    assert sorted(ref.corrupted) == ref.rows == list(range(12))
    assert load_reference(entry).corrupted == {}
    table = pq.read_table(sub / "corrupted.parquet").to_pydict()
    assert table["n_tokens"] == [int(ref.counts[r][0]) for r in table["row"]]  # the chosen answers' tokens
    # Row 5's cached value is the frozen model's log-prob of its chosen answer with its corrupted image, computed
    # here by hand: full forward over prompt + answer, log-softmax at the answer's positions.
    model, processor = load_model(model_dir)
    row = read_pairs(small_pairs)[5]
    corrupted = corrupt_image(open_image(row.image), 5, cfg.corruption)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row.prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[[corrupted]], return_tensors="pt")
    answer = processor.tokenizer(row.chosen + processor.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.cat([enc["input_ids"], torch.tensor([answer])], 1)
    with torch.no_grad():
        logits = model.eval()(input_ids=ids, pixel_values=enc["pixel_values"]).logits[0]
    start = enc["input_ids"].shape[1]
    expected = torch.log_softmax(logits[start - 1 : -1].double(), -1).gather(1, torch.tensor(answer)[:, None]).sum()
    assert ref.corrupted[5][0] == pytest.approx(float(expected), abs=1e-4)
    assert ref.corrupted[5][0] != pytest.approx(ref.sums[5][0], abs=1e-3)  # the image matters to the model


def test_cli_score_with_corrupted_images(family_model, small_pairs, tmp_path, capsys):
    code = main(["score", f"model={family_model('qwen2_vl')}", f"pairs={small_pairs}", "max_length=64",
                 f"reference_dir={tmp_path / 'cache'}", "corrupted=true", "corruption.kind=mask"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "original minus corrupted image (mask)" in printed and "over 12 rows" in printed
    (entry,) = (tmp_path / "cache").iterdir()
    assert (corrupted_dir(entry, CorruptionConfig(kind="mask")) / "corruption.png").is_file()
