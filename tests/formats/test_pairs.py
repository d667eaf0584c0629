"""Pairs dataset storage: parquet and JSONL round trips, image roots, embedded bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pairs.helpers import png_bytes

from unprior.formats.pairs import (
    ImageProblem,
    Negative,
    PairRow,
    Sample,
    UnusableImage,
    iter_pairs,
    open_image,
    pairs_metadata,
    read_pairs,
    write_pairs,
)


def make_rows(root: Path) -> list[PairRow]:
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(png_bytes((1, 2, 3)))
    prov = {
        "strategy": "image_weakening",
        "perturbation": "diffusion_noise",
        "params": {"t": 900},
        "seed": 11,
        "generator": "tiny-llava",
        "revision": "abc123",
        "decoding": {"temperature": 0.2},
    }
    return [
        PairRow(
            "a",
            (root / "images" / "a.png").resolve(),
            "Colour?",
            "Red.",
            [Negative("Blue.", "image_weakening", prov), Negative("Green.", "original")],
            {"task": "colour"},
        ),
        PairRow("b", png_bytes((9, 9, 9)), "Colour?", "Grey.", [Negative("Pink.", "language_bias")]),
        PairRow("c", None, "Text only?", "Yes.", []),
    ]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / "src"
    rows = make_rows(src)
    out = tmp_path / "out" / f"pairs{suffix}"
    assert write_pairs(rows, out, image_root=src, batch_size=2) == 3
    back = read_pairs(out, image_root=src if suffix == ".jsonl" else None)
    assert back == rows  # paths resolve back to the same files, bytes and provenance survive


def test_parquet_records_root_and_relative_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    out = tmp_path / "pairs.parquet"
    write_pairs(make_rows(src), out, image_root=src)
    assert pairs_metadata(out) == {"schema_version": 1, "image_root": str(src.resolve())}
    table = pq.read_table(out)
    assert table.column("image_path").to_pylist() == ["images/a.png", None, None]
    assert json.loads(table.column("negatives").to_pylist()[0][0]["provenance"])["params"] == {"t": 900}
    # the dataset moved: pass the new root
    moved = tmp_path / "moved"
    src.rename(moved)
    assert next(iter_pairs(out, image_root=moved)).image == (moved / "images" / "a.png").resolve()


def test_embed_images_and_root_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rows = make_rows(src)
    out = tmp_path / "embedded.parquet"
    write_pairs(rows, out, embed_images=True)
    back = read_pairs(out)
    assert back[0].image == png_bytes((1, 2, 3)) and pairs_metadata(out)["image_root"] is None
    with pytest.raises(ValueError, match="pass image_root"):
        write_pairs(rows, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="outside image_root"):
        write_pairs(rows, tmp_path / "x.parquet", image_root=tmp_path / "elsewhere")
    assert not (tmp_path / "x.parquet").exists()  # failed writes leave nothing behind
    with pytest.raises(ValueError, match=r"\.parquet or \.jsonl"):
        write_pairs(rows, tmp_path / "x.csv", image_root=src)


def test_reading_refuses_paths_escaping_the_root(tmp_path: Path) -> None:
    """The row is read (one bad path does not stop the file), its image refuses to open, and it is written back
    unchanged."""
    line = {"id": "x", "image": "../../etc/passwd", "prompt": "Q", "chosen": "A", "negatives": [], "meta": {}}
    (tmp_path / "evil.jsonl").write_text(json.dumps(line) + "\n")
    (row,) = read_pairs(tmp_path / "evil.jsonl")
    assert isinstance(row.image, UnusableImage) and row.image.reason == "image_outside_root"
    with pytest.raises(ImageProblem, match="escapes"):
        open_image(row.image)
    write_pairs([row], tmp_path / "copy.jsonl")
    assert json.loads((tmp_path / "copy.jsonl").read_text())["image"] == "../../etc/passwd"


def test_empty_dataset_and_kinds(tmp_path: Path) -> None:
    assert write_pairs([], tmp_path / "empty.parquet") == 0
    assert read_pairs(tmp_path / "empty.parquet") == []
    with pytest.raises(ValueError, match="negative kind"):
        Negative("x", "made_up")
    with pytest.raises(ValueError, match="no image"):
        Sample("s", None, "Q", "A").open_image()
