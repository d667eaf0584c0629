"""Every loader on small fixtures, broken rows included: good rows go on, bad rows are reported by id and reason."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from unprior.config import ConfigError, from_dict
from unprior.formats.pairs import Negative, PairRow, read_pairs, write_pairs
from unprior.pairs.config import LoadConfig
from unprior.pairs.images import RowProblem, check_image
from unprior.pairs.loaders import (
    REASONS,
    LoadReport,
    iter_samples,
    load_hf_dataset,
    load_llava_json,
    load_rlaifv_parquet,
    load_samples,
    load_trl_preference,
    load_unprior_jsonl,
    sniff_format,
)

from .helpers import corrupt_png, huge_png_header, png_bytes, write_jsonl


def reasons_by_id(report: LoadReport) -> dict[str | None, str]:
    return {p.id: p.reason for p in report.problems if p.id is not None}


# ---------------------------------------------------------------------------------------------------------- unprior


def test_unprior_root_keeps_good_rows_and_reports_each_bad_one(world: Path) -> None:
    samples, report = load_unprior_jsonl(world)
    assert [s.id for s in samples] == ["good-0", "good-1", "good-2"]
    assert report.format == "unprior" and report.kept == 3 and report.root == str(world.resolve())
    assert reasons_by_id(report) == {
        "missing": "missing_image",
        "escape": "image_outside_root",
        "empty-answer": "empty_answer",
        "huge": "image_too_large",
        "bomb": "image_too_large",
        "non-text": "non_text_field",
        "corrupt": "unreadable_image",
        "good-0": "duplicate_id",
        "no-answer": "bad_row",
    }
    bad_json = [p for p in report.problems if p.id is None]
    assert [(p.where, p.reason) for p in bad_json] == [("train.jsonl:11", "bad_row")]
    assert report.n_dropped == 10 and set(report.dropped) <= set(REASONS)
    summary = report.summary()
    assert "kept 3, dropped 10" in summary and "image_too_large: 2" in summary and "train.jsonl:11" in summary
    json.dumps(report.to_dict())


def test_unprior_sample_fields(world: Path) -> None:
    samples, _ = load_samples(world)  # format sniffed
    s0, s1, s2 = samples
    assert s0.image == (world / "images/train/000000.png").resolve() and s0.open_image().getpixel((0, 0)) == (
        255,
        0,
        0,
    )
    assert s0.meta == {"task": "colour", "k": 1} and s0.rejected is None
    assert s1.rejected == "Red."
    assert s2.prompt == "What colour?"  # the image token is removed


def test_unprior_jsonl_file_and_limit(world: Path) -> None:
    samples, report = load_samples(world / "train.jsonl", limit=2)
    assert [s.id for s in samples] == ["good-0", "good-1"] and report.kept == 2


def test_first_line_broken_still_sniffs(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    row = {"id": "x", "image": "a.png", "prompt": "Q?", "answer": "A."}
    write_jsonl(tmp_path / "rows.jsonl", ["[1, 2]", "{oops", row])
    samples, report = load_samples(tmp_path / "rows.jsonl")
    assert report.format == "unprior" and [s.id for s in samples] == ["x"]
    assert [(p.where, p.reason) for p in report.problems] == [("rows.jsonl:1", "bad_row"), ("rows.jsonl:2", "bad_row")]


def test_max_pixels_and_check_images_off(world: Path) -> None:
    samples, report = load_samples(world, max_pixels=32)  # the 8x8 = 64-pixel images are now too large
    assert samples == [] and report.dropped["image_too_large"] == 7  # incl. the 32x32 corrupt one and the dup
    samples, report = load_samples(world, check_images=False)
    assert {s.id for s in samples} == {"good-0", "good-1", "good-2", "huge", "bomb", "corrupt"}
    assert reasons_by_id(report)["escape"] == "image_outside_root"


def test_iter_samples_fills_report_while_streaming(world: Path) -> None:
    report = LoadReport()
    it = iter_samples(world, LoadConfig(), report)
    assert next(it).id == "good-0" and report.kept == 1
    list(it)
    assert report.kept == 3


def test_load_config_validation() -> None:
    with pytest.raises(ConfigError, match="format"):
        from_dict(LoadConfig, {"format": "csv"})
    with pytest.raises(ConfigError, match=r"columns\.answr"):
        from_dict(LoadConfig, {"columns": {"answr": "x"}})
    with pytest.raises(ConfigError, match="max_pixels"):
        load_samples(".", max_pixels=0)


# ------------------------------------------------------------------------------------------------------------ llava


def test_llava_json_turns_tokens_and_broken_rows(tmp_path: Path) -> None:
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "a.png").write_bytes(png_bytes())
    conv = [
        {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A square."},
        {"from": "human", "value": "Colour?"},
        {"from": "gpt", "value": "Red."},
    ]
    rows = [
        {"id": "a", "image": "coco/a.png", "conversations": conv},
        {"id": "text-only", "conversations": conv[:2]},
        {"id": "broken", "image": "coco/a.png", "conversations": conv[:3]},
        {"id": "empty", "image": "coco/a.png", "conversations": [conv[0], {"from": "gpt", "value": ""}]},
        {"id": "missing", "image": "coco/b.png", "conversations": conv[:2]},
        {"id": "no-q", "image": "coco/a.png", "conversations": [{"from": "human", "value": "<image>"}, conv[1]]},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    samples, report = load_samples(tmp_path / "llava.json")
    assert report.format == "llava"
    assert [(s.id, s.prompt, s.answer) for s in samples] == [
        ("a", "What is it?", "A square."),
        ("a#1", "Colour?", "Red."),
    ]
    assert samples[1].meta == {"turn": 1} and samples[0].image == samples[1].image
    assert reasons_by_id(report) == {
        "text-only": "no_image",
        "broken": "bad_row",
        "empty": "empty_answer",
        "missing": "missing_image",
        "no-q": "empty_prompt",
    }
    first, _ = load_llava_json(tmp_path / "llava.json", llava_turns="first")
    assert [s.id for s in first] == ["a"]


def test_llava_root_option(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png_bytes())
    (tmp_path / "ann").mkdir()
    rows = [
        {
            "id": "a",
            "image": "a.png",
            "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
        }
    ]
    (tmp_path / "ann" / "data.json").write_text(json.dumps(rows))
    samples, _ = load_llava_json(tmp_path / "ann" / "data.json", image_root=str(tmp_path / "imgs"))
    assert samples[0].image == (tmp_path / "imgs" / "a.png").resolve()


def test_llamafactory_sharegpt_ranking_rows(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    good = {
        "conversations": [{"from": "human", "value": "<image>Describe."}],
        "chosen": {"from": "gpt", "value": "A red square."},
        "rejected": {"from": "gpt", "value": "A dog."},
        "images": ["a.png"],
    }
    two_turns = {**good, "conversations": good["conversations"] * 2}
    two_images = {**good, "images": ["a.png", "a.png"]}
    (tmp_path / "lf.json").write_text(json.dumps([good, two_turns, two_images]))
    samples, report = load_samples(tmp_path / "lf.json")
    assert [(s.prompt, s.answer, s.rejected) for s in samples] == [("Describe.", "A red square.", "A dog.")]
    assert [p.reason for p in report.problems] == ["multi_turn", "multiple_images"]


# --------------------------------------------------------------------------------------------------- hf / parquet


def _image_dataset(rows: list[dict]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "uid": datasets.Value("string"),
            "picture": datasets.Image(),
            "q": datasets.Value("string"),
            "a": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def test_hf_saved_dataset_and_parquet_with_image_bytes(tmp_path: Path) -> None:
    rows = [
        {"uid": "x", "picture": {"bytes": png_bytes(), "path": None}, "q": "Colour?", "a": "Red."},
        {"uid": "y", "picture": {"bytes": corrupt_png(), "path": None}, "q": "Colour?", "a": "Red."},
        {"uid": "z", "picture": {"bytes": png_bytes(), "path": None}, "q": "Colour?", "a": ""},
    ]
    ds = _image_dataset(rows)
    columns = {"id": "uid", "image": "picture", "prompt": "q", "answer": "a"}
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    for path in (tmp_path / "saved", tmp_path / "dict", tmp_path / "pq"):
        samples, report = load_hf_dataset(path, columns=columns)
        assert [s.id for s in samples] == ["x"], path
        assert isinstance(samples[0].image, bytes) and samples[0].open_image().size == (8, 8)
        assert reasons_by_id(report) == {"y": "unreadable_image", "z": "empty_answer"}


def test_hf_needs_a_prompt_column(tmp_path: Path) -> None:
    ds = _image_dataset([{"uid": "x", "picture": {"bytes": png_bytes(), "path": None}, "q": "Q", "a": "A"}])
    ds.to_parquet(str(tmp_path / "d.parquet"))
    with pytest.raises(ValueError, match="no prompt column"):
        load_hf_dataset(tmp_path / "d.parquet", columns={"image": "picture"})
    with pytest.raises(ValueError, match="not a column"):
        load_hf_dataset(tmp_path / "d.parquet", columns={"image": "picture", "prompt": "question"})


def test_rlaifv_parquet(tmp_path: Path) -> None:
    """RLAIF-V-Bias columns over two parquet shards; the second shard has a non-text ``chosen`` column."""

    def row(idx: str, image: bytes, **kw: object) -> dict:
        return {
            "ds_name": "RLAIF-V",
            "image": {"bytes": image, "path": f"{idx}.jpg"},
            "question": "What is shown?",
            "chosen": "A red square.",
            "rejected": "A blue circle.",
            "origin_dataset": "coco",
            "origin_split": '{"model": "x"}',
            "idx": idx,
            "image_path": f"{idx}.jpg",
            "question_only": "A cat.",
            "image_only": "The image shows a square.",
            **kw,
        }

    shard0 = [row("0", png_bytes()), row("1", huge_png_header(100_000, 100_000))]
    pq.write_table(pa.Table.from_pylist(shard0), tmp_path / "RLAIF-V-Bias_000.parquet")
    pq.write_table(pa.Table.from_pylist([row("2", png_bytes(), chosen=7)]), tmp_path / "RLAIF-V-Bias_001.parquet")
    samples, report = load_samples(tmp_path)
    assert report.format == "rlaifv"
    (s,) = samples
    assert (s.id, s.prompt, s.answer, s.rejected) == ("RLAIF-V-0", "What is shown?", "A red square.", "A blue circle.")
    assert s.meta["question_only"] == "A cat." and s.meta["image_only"].startswith("The image")
    assert s.meta["origin_dataset"] == "coco"
    assert reasons_by_id(report) == {"RLAIF-V-1": "image_too_large", "RLAIF-V-2": "non_text_field"}
    assert load_rlaifv_parquet(tmp_path / "RLAIF-V-Bias_000.parquet")[1].kept == 1


# ------------------------------------------------------------------------------------------------------------ trl


def test_trl_conversational_parquet(tmp_path: Path) -> None:
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "chosen": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "rejected": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        }
    )
    img = {"bytes": png_bytes(), "path": None}
    user = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What colour?"}]
    rows = [
        {
            "images": [img],
            "prompt": user,
            "chosen": [{"role": "assistant", "content": "Red."}],
            "rejected": [{"role": "assistant", "content": "Blue."}],
        },
        {
            "images": [img, img],
            "prompt": user,
            "chosen": [{"role": "assistant", "content": "Red."}],
            "rejected": [{"role": "assistant", "content": "Blue."}],
        },
        {
            "images": [img],
            "prompt": [*user, {"role": "assistant", "content": "Hm."}, {"role": "user", "content": "?"}],
            "chosen": [{"role": "assistant", "content": "Red."}],
            "rejected": [{"role": "assistant", "content": "B"}],
        },
        {
            "images": [],
            "prompt": user,
            "chosen": [{"role": "assistant", "content": "Red."}],
            "rejected": [{"role": "assistant", "content": "Blue."}],
        },
    ]
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    samples, report = load_samples(tmp_path / "train.parquet")
    assert report.format == "trl"
    (s,) = samples
    assert (s.id, s.prompt, s.answer, s.rejected, s.meta) == (
        "0",
        "What colour?",
        "Red.",
        "Blue.",
        {"system": "Be brief."},
    )
    assert [p.reason for p in report.problems] == ["multiple_images", "multi_turn", "no_image"]


def test_trl_standard_jsonl_with_image_paths(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4), "red").save(tmp_path / "r.png")
    write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"id": "p1", "image": "r.png", "prompt": "<image> What colour?", "chosen": "Red.", "rejected": "Blue."},
            {"id": "p2", "image": "r.png", "prompt": "What colour?", "chosen": "Red.", "rejected": 3},
        ],
    )
    samples, report = load_trl_preference(tmp_path / "prefs.jsonl")
    assert [(s.id, s.prompt, s.rejected) for s in samples] == [("p1", "What colour?", "Blue.")]
    assert reasons_by_id(report) == {"p2": "non_text_field"}


# ----------------------------------------------------------------------------------------------------- pieces


def test_sniff_format() -> None:
    assert sniff_format(["id", "image", "conversations"]) == "llava"
    assert sniff_format(["images", "prompt", "chosen", "rejected"]) == "trl"
    assert sniff_format(["image", "question", "chosen", "rejected", "idx"]) == "rlaifv"
    assert sniff_format(["id", "image", "prompt", "answer", "task"]) == "unprior"
    assert sniff_format(["img", "q", "a"]) == "hf"


def test_check_image_reasons(tmp_path: Path) -> None:
    assert check_image(png_bytes(size=(5, 3)), max_pixels=100) == (5, 3)
    cases = [
        (huge_png_header(9_000, 9_000), "image_too_large"),  # above PIL's warning threshold: our limit reports it
        (huge_png_header(100_000, 100_000), "image_too_large"),  # PIL's DecompressionBombError
        (corrupt_png(), "unreadable_image"),
        (b"not an image at all", "unreadable_image"),
        (tmp_path / "nope.png", "missing_image"),
    ]
    for ref, reason in cases:
        with pytest.raises(RowProblem) as e:
            check_image(ref, max_pixels=40_000_000)
        assert e.value.reason == reason


def test_loaded_samples_write_with_the_report_root(world: Path, tmp_path: Path) -> None:
    """The contract generation relies on: sample images are inside ``report.root``."""
    samples, report = load_samples(world)
    rows = [PairRow(s.id, s.image, s.prompt, s.answer, [Negative("No idea.", "vision_bias")]) for s in samples]
    write_pairs(rows, tmp_path / "p.parquet", image_root=report.root)
    assert [r.image for r in read_pairs(tmp_path / "p.parquet")] == [s.image for s in samples]
