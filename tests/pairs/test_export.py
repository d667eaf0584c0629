"""Exporters: TRL's vision preference parquet and LLaMA-Factory's sharegpt ranking JSON."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from PIL import Image

from unprior.formats.pairs import Negative, PairRow
from unprior.pairs.export import export_llamafactory, export_trl
from unprior.pairs.loaders import load_samples

from .helpers import png_bytes


def make_rows(tmp_path: Path) -> list[PairRow]:
    (tmp_path / "a.png").write_bytes(png_bytes((255, 0, 0)))
    return [
        PairRow(
            "a",
            (tmp_path / "a.png").resolve(),
            "What colour?",
            "Red.",
            [Negative("Blue.", "image_weakening", {"seed": 1}), Negative("A cat.", "language_bias")],
        ),
        PairRow("b", png_bytes((0, 0, 255)), "What colour?", "Blue.", [Negative("Red.", "error_injection")]),
        PairRow("c", png_bytes((0, 0, 255)), "Same image?", "Blue.", [Negative("Green.", "vision_bias")]),
    ]


def test_trl_export_loads_with_datasets(tmp_path: Path) -> None:
    out = tmp_path / "trl"
    assert export_trl(make_rows(tmp_path), out, batch_size=2) == 4
    ds = datasets.Dataset.from_parquet(str(out / "train.parquet"), cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["id", "negative_kind", "prompt", "chosen", "rejected", "images"]
    first = ds[0]
    assert first["prompt"] == [{"role": "user", "content": "What colour?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Red."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Blue."}]
    (image,) = first["images"]
    assert isinstance(image, Image.Image) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert ds["negative_kind"] == ["image_weakening", "language_bias", "error_injection", "vision_bias"]


def test_trl_export_rows_fit_trl_message_preparation(tmp_path: Path) -> None:
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    export_trl(make_rows(tmp_path), tmp_path / "trl", kinds=("error_injection",), embed_images=False)
    ds = datasets.Dataset.from_parquet(str(tmp_path / "trl" / "train.parquet"), cache_dir=str(tmp_path / "cache"))
    (row,) = ds
    assert is_conversational(row)
    prompt = prepare_multimodal_messages(row["prompt"], images=row["images"])
    assert prompt[0]["content"][0]["type"] == "image" and prompt[0]["content"][1]["text"] == "What colour?"


def test_trl_export_paths_and_empty(tmp_path: Path) -> None:
    rows = make_rows(tmp_path)
    export_trl(rows[:1], tmp_path / "paths", embed_images=False)
    ds = datasets.Dataset.from_parquet(str(tmp_path / "paths" / "train.parquet"), cache_dir=str(tmp_path / "c"))
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert ds[0]["images"][0] == {"bytes": None, "path": str((tmp_path / "a.png").resolve())}
    assert export_trl(rows, tmp_path / "none", kinds=("original",)) == 0


def test_llamafactory_export_round_trips_through_the_loader(tmp_path: Path) -> None:
    out = tmp_path / "lf"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    assert export_llamafactory(make_rows(tmp_path), out, name="mine") == 4
    records = json.loads((out / "mine.json").read_text())
    assert records[0] == {
        "conversations": [{"from": "human", "value": "<image>What colour?"}],
        "chosen": {"from": "gpt", "value": "Red."},
        "rejected": {"from": "gpt", "value": "Blue."},
        "images": [str((tmp_path / "a.png").resolve())],
    }
    # rows b and c share one image: written once, referenced relative to the dataset dir
    assert records[2]["images"] == records[3]["images"] and records[2]["images"][0].startswith("images/")
    assert len(list((out / "images").iterdir())) == 1
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"other", "mine"} and info["mine"]["ranking"] is True
    assert info["mine"]["formatting"] == "sharegpt" and info["mine"]["columns"]["messages"] == "conversations"

    # read back with the LLaMA-Factory reader: absolute paths outside the root are refused, like any escape
    samples, report = load_samples(out / "mine.json", image_root=str(out))
    assert report.format == "llava" and report.dropped == {"image_outside_root": 2}
    assert [(s.prompt, s.answer, s.rejected) for s in samples] == [
        ("What colour?", "Blue.", "Red."),
        ("Same image?", "Blue.", "Green."),
    ]
