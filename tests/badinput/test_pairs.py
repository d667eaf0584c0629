"""``unprior pairs``, ``pairs merge``, ``pairs noise`` and ``pairs browse`` given bad input (docs/errors.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pairs.helpers import corrupt_png, huge_png_header, png_bytes

from unprior.pairs.merge import iter_run_rows

from .helpers import GOOD, pairs_args, pairs_file, refused, rejected, snapshot, source_row, truncate, write_rows

GOOD_IDS = {i for i, *_ in GOOD}


def _symlink_out(root: Path) -> str:
    os.symlink(root.parent / "outside.png", root / "images" / "link.png")
    return "images/link.png"


def _file(root: Path, name: str, data: bytes) -> str:
    (root / "images" / name).write_bytes(data)
    return f"images/{name}"


# (case, the bad row to append to train.jsonl (built from the root), the reason rejected.jsonl gives)
BAD_ROWS = {
    "non_utf8_byte": (lambda root: b'{"id": "bad", "image": "images/g0.png", "prompt": "Q\xff?", "answer": "A."}',
                      "not_utf8"),
    "malformed_json": (lambda root: b'{"id": "bad", "image": ', "bad_row"),
    "missing_answer_field": (lambda root: {"id": "bad", "image": "images/g0.png", "prompt": "Q?"}, "bad_row"),
    "answer_not_text": (lambda root: source_row("bad", "images/g0.png", answer=["A red square."]),
                        "non_text_field"),
    "empty_answer": (lambda root: source_row("bad", "images/g0.png", answer="  "), "empty_answer"),
    "dotdot_path": (lambda root: source_row("bad", "../outside.png"), "image_outside_root"),
    "absolute_path_elsewhere": (lambda root: source_row("bad", str(root.parent / "outside.png")),
                                "image_outside_root"),
    "symlink_out_of_root": (lambda root: source_row("bad", _symlink_out(root)), "image_outside_root"),
    "missing_image": (lambda root: source_row("bad", "images/none.png"), "missing_image"),
    "decompression_bomb": (lambda root: source_row("bad", _file(root, "bomb.png", huge_png_header(30_000, 30_000))),
                           "image_too_large"),
    "truncated_png": (lambda root: source_row("bad", _file(root, "cut.png", corrupt_png())), "unreadable_image"),
    "duplicate_id": (lambda root: source_row("g0", "images/g1.png"), "duplicate_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_source_row_is_a_dropped_row(case, source, tmp_path, cli):
    """Table rows 4 and 6 and the loader's other row checks: exit 0, the good rows written, the bad one listed in
    rejected.jsonl with its file:line and reason."""
    make, reason = BAD_ROWS[case]
    write_rows(source / "train.jsonl", [*[source_row(i, f"images/{i}.png", a, r) for i, _, a, r in GOOD],
                                        make(source)])
    out = tmp_path / "pairs"
    assert cli(*pairs_args(source, out)).code == 0
    assert {r.id for r in iter_run_rows(out)} == GOOD_IDS
    (listed,) = rejected(next(out.glob("shard-*")) / "rejected.jsonl")
    assert listed["reason"] == reason and listed["where"] == "train.jsonl:4", listed


def test_non_utf8_byte_in_a_llava_json_drops_that_row_only(source, tmp_path, cli):
    """Table row 6 (LLaVA .json): the row is named by file[index] and the file line of the byte."""
    rows = [{"id": i, "image": f"images/{i}.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": a}]}
        for i, _, a, _ in GOOD]
    text = json.dumps(rows, indent=1).encode().replace(b"A green square.", b"A gr\xffen square.")
    (source / "llava.json").write_bytes(text)
    out = tmp_path / "pairs"
    result = cli("pairs", f"source={source / 'llava.json'}", f"out={out}", "strategies=[rules]", "progress=false")
    assert result.code == 0
    listed = {r["id"]: r for r in rejected(next(out.glob("shard-*")) / "rejected.jsonl")}
    bad = next(r for r in listed.values() if r["reason"] == "not_utf8")
    line = text[: text.index(b"\xff")].count(b"\n") + 1
    assert bad["where"] == "llava.json[1]" and f"file line {line}" in bad["detail"]


def test_bomb_with_check_images_false_drops_the_row_at_generation(source, tmp_path, cli):
    """Table row 4: the shard finishes (a rerun is a no-op), the bomb is listed as image_too_large."""
    bomb = _file(source, "bomb.png", huge_png_header(30_000, 30_000))
    write_rows(source / "train.jsonl", [*[source_row(i, f"images/{i}.png", a, r) for i, _, a, r in GOOD],
                                        source_row("bomb", bomb)])
    out = tmp_path / "pairs"
    args = pairs_args(source, out, "load.check_images=false")
    assert cli(*args).code == 0
    assert {r.id for r in iter_run_rows(out)} == GOOD_IDS
    listed = rejected(next(out.glob("shard-*")) / "rejected.jsonl")
    assert [(r["id"], r["where"], r["reason"]) for r in listed] == [("bomb", "generation", "image_too_large")]
    parts = snapshot(next(out.glob("shard-*")) / "part-00000.parquet")
    assert cli(*args).code == 0 and {r.id for r in iter_run_rows(out)} == GOOD_IDS
    assert json.loads(next(out.glob("shard-*/summary.json")).read_text())["parts_generated_by_this_run"] == 0
    assert snapshot(next(out.glob("shard-*")) / "part-00000.parquet") == parts  # the finished part kept as it was


# (case, how to break the source or the arguments, the words the one stderr line must hold)
REFUSED_PAIRS = {
    "empty_source": (lambda root: (root / "train.jsonl").write_text(""), [], ["no rows found", "data"]),
    "every_row_bad": (lambda root: write_rows(root / "train.jsonl", [source_row("x", "../outside.png")]), [],
                      ["every row was dropped", "train.jsonl:1", "image_outside_root"]),
    "no_rows_file": (lambda root: (root / "train.jsonl").unlink(), [], ["data", "no train.jsonl", "load.split"]),
    "source_missing": (lambda root: shutil.rmtree(root), [], ["data", "does not exist"]),
    "unknown_strategy": (lambda root: None, ["strategies=[nope]"], ["'strategies'", "nope"]),
    "part_size_zero": (lambda root: None, ["part_size=0"], ["'part_size'", ">= 1"]),
    "params_of_another_perturbation": (  # patch_mask given diffusion_noise's default {t: 900}
        lambda root: None, ["strategies=[image_weakening]", "generator.model=unused",
                            "image_weakening.perturbation=patch_mask", "image_weakening.params={t: 900}"],
        ["image_weakening.params"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PAIRS))
def test_pairs_refuses_bad_usage_in_one_line(case, source, tmp_path, cli):
    """Table row 8 (an empty dataset refused by the first stage that sees it) and config mistakes: exit 2, one
    line naming the field or file, nothing written."""
    breaks, extra, needles = REFUSED_PAIRS[case]
    breaks(source)
    out = tmp_path / "pairs"
    args = [a.replace("strategies=[original]", "") for a in pairs_args(source, out)] if any(
        a.startswith("strategies=") for a in extra) else pairs_args(source, out)
    refused(cli(*[a for a in args if a], *extra), 2, *needles)
    assert not any(out.glob("shard-*/part-*.parquet"))


def test_a_bad_config_file_is_refused_naming_it(source, tmp_path, cli):
    bad = tmp_path / "pairs.yaml"
    bad.write_text("strategies: [original\nseed: 1\n")
    refused(cli("pairs", "--config", str(bad), f"source={source}", f"out={tmp_path / 'p'}"), 2, str(bad),
            "not valid YAML")
    refused(cli("pairs", "--config", str(tmp_path / "none.yaml"), f"source={source}"), 2, "none.yaml")


def test_a_shard_restarted_with_another_config_is_refused_and_kept(source, tmp_path, cli):
    """The list under the table: a shard restarted with another config. Its finished parts stay as they were."""
    out = tmp_path / "pairs"
    assert cli(*pairs_args(source, out)).code == 0
    before = snapshot(out)
    refused(cli(*pairs_args(source, out, "seed=1")), 2, "shard-00000-of-00001", "different config",
            "overwrite=true")
    assert snapshot(out) == before


# ----------------------------------------------------------------------------------------------------------- merge


def test_merge_without_a_pairs_run_is_refused(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    refused(cli("pairs", "merge", f"out={tmp_path / 'empty'}"), 2, "empty", "unprior pairs out=")


def test_merge_with_a_missing_shard_is_refused_and_the_shard_kept(source, tmp_path, cli):
    out = tmp_path / "pairs"
    assert cli(*pairs_args(source, out, "num_shards=2", "shard_index=1")).code == 0
    before = snapshot(out)
    refused(cli("pairs", "merge", f"out={out}"), 2, "shard-00000-of-00002 is missing", "allow_partial=true")
    assert snapshot(out) == before and not (out / "pairs.parquet").exists()


def test_merge_of_a_run_without_rows_is_refused_with_the_rows_listed(source, tmp_path, cli):
    """Table row 8: no negative for any row (no source answer to reject) -> merge says so instead of writing an
    empty file for score and train to trip over."""
    write_rows(source / "train.jsonl", [source_row(i, f"images/{i}.png", a, None) for i, _, a, _ in GOOD])
    out = tmp_path / "pairs"
    assert cli(*pairs_args(source, out)).code == 0
    refused(cli("pairs", "merge", f"out={out}"), 2, "no rows to merge", str(out / "rejected.jsonl"))
    assert not (out / "pairs.parquet").exists()
    assert {r["reason"] for r in rejected(out / "rejected.jsonl")} == {"no_negatives"}


# ----------------------------------------------------------------------------------------------------------- noise


@pytest.fixture
def merged(source, tmp_path, cli) -> Path:
    out = tmp_path / "pairs"
    assert cli(*pairs_args(source, out)).code == 0
    assert cli("pairs", "merge", f"out={out}").code == 0
    return out / "pairs.parquet"


def test_noise_rewrite_errors_are_one_line(merged, tmp_path, cli):
    """The list under the table: `pairs noise` rewrite errors. Rows the world rewrite cannot answer (not from a
    world) cannot reach the rate: refused with the fixes; same_form without phrasings likewise."""
    noised = tmp_path / "noised.parquet"
    refused(cli("pairs", "noise", f"pairs={merged}", f"out={noised}", "kinds=[original]"), 2,
            "correct alternative", "mode=flip")
    refused(cli("pairs", "noise", f"pairs={merged}", f"out={noised}", "kinds=[original]", "mode=same_form"), 2,
            "phrasings")
    assert not noised.exists()
    assert cli("pairs", "noise", f"pairs={merged}", f"out={noised}", "kinds=[original]", "mode=flip").code == 0


@pytest.mark.parametrize("case", ["missing", "empty", "same_as_out"])
def test_noise_refuses_a_missing_or_empty_input(case, tmp_path, cli):
    pairs = tmp_path / "in.parquet"
    if case == "empty":
        from unprior.formats.pairs import write_pairs

        write_pairs([], pairs)
    out = pairs if case == "same_as_out" else tmp_path / "out.parquet"
    needles = {"missing": ["in.parquet", "does not exist"], "empty": ["in.parquet", "has no rows"],
               "same_as_out": ["'out'", "must differ"]}[case]
    refused(cli("pairs", "noise", f"pairs={pairs}", f"out={out}"), 2, *needles)


# ----------------------------------------------------------------------------------------------------------- browse


def test_browse_shows_rows_with_bad_images_without_them(source, tmp_path, cli):
    """A `../` path, an outward symlink and a bomb: the page is written with every row; the images are skipped
    with their reasons (browse opens images with the same size check)."""
    _file(source, "bomb.png", huge_png_header(30_000, 30_000))
    pairs = pairs_file(source, tmp_path / "p.parquet",
                       ["images/g0.png", "../outside.png", _symlink_out(source), "images/bomb.png"])
    result = cli("pairs", "browse", f"pairs={pairs}", f"out={tmp_path / 'browse'}")
    assert result.code == 0 and "4 rows" in result.out and "image_too_large" in result.out
    assert (tmp_path / "browse" / "index.html").is_file()


@pytest.mark.parametrize("case", ["missing", "truncated", "not_parquet"])
def test_browse_refuses_an_unreadable_pairs_file(case, source, tmp_path, cli):
    good = pairs_file(source, tmp_path / "good.parquet", ["images/g0.png"])
    pairs = {"missing": tmp_path / "none.parquet", "truncated": truncate(good, tmp_path / "cut.parquet"),
             "not_parquet": tmp_path / "text.parquet"}[case]
    if case == "not_parquet":
        pairs.write_bytes(png_bytes())
    needles = {"missing": ["none.parquet", "does not exist"], "truncated": ["cut.parquet", "damaged"],
               "not_parquet": ["text.parquet", "not a readable parquet"]}[case]
    refused(cli("pairs", "browse", f"pairs={pairs}", f"out={tmp_path / 'browse'}"), 2, *needles)
