"""``unprior score`` and ``unprior train`` given bad input (docs/errors.md): refused before the model loads where
the input says so, a bad row dropped where only the row is bad."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import GOOD, drop_column, pairs_file, refused, rejected, score, snapshot, train, truncate


def _unmerged_run(tmp: Path) -> Path:
    (tmp / "run" / "shard-00000-of-00001").mkdir(parents=True)
    return tmp / "run"


# (case, the pairs argument built from (pairs, tmp_path), words of the one stderr line)
BAD_PAIRS = {
    "unfinished_run_dir": (lambda p, tmp: _unmerged_run(tmp), ["run", "not finished", "allow_partial=true"]),
    "score_before_merge": (lambda p, tmp: _unmerged_run(tmp) / "pairs.parquet",
                           ["does not exist", "unprior pairs merge out="]),
    "missing_file": (lambda p, tmp: tmp / "nope.parquet", ["nope.parquet", "does not exist"]),
    "missing_chosen": (lambda p, tmp: drop_column(p, "chosen", tmp / "x.parquet"), ["x.parquet", "column chosen"]),
    "missing_negatives": (lambda p, tmp: drop_column(p, "negatives", tmp / "x.parquet"), ["column negatives"]),
    "missing_image_path": (lambda p, tmp: drop_column(p, "image_path", tmp / "x.parquet"), ["column image_path"]),
    "truncated_parquet": (lambda p, tmp: truncate(p, tmp / "cut.parquet"), ["cut.parquet", "truncated"]),
    "empty": (lambda p, tmp: pairs_file(tmp, tmp / "empty.parquet", []), ["empty.parquet", "has no rows"]),
    "not_a_pairs_file": (lambda p, tmp: (tmp / "x.csv").write_text("a,b\n") and tmp / "x.csv", [".parquet or .jsonl"]),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIRS))
def test_score_refuses_a_bad_pairs_file_before_loading_the_model(case, pairs, model, tmp_path, cli):
    """Table rows 8 and 9 and the list under the table (score before `pairs merge`, a missing column)."""
    make, needles = BAD_PAIRS[case]
    refused(score(cli, model, make(pairs, tmp_path), tmp_path), 2, *needles)
    assert not (tmp_path / "ref").exists() or not any((tmp_path / "ref").iterdir())


def _without_template(model: Path, tmp: Path) -> Path:
    copy = shutil.copytree(model, tmp / "no-template")
    (copy / "chat_template.jinja").unlink()
    return copy


def _truncated_weights(model: Path, tmp: Path) -> Path:
    copy = shutil.copytree(model, tmp / "cut-weights")
    truncate(copy / "model.safetensors", copy / "model.safetensors", keep=0.3)
    return copy


BAD_MODELS = {
    "no_chat_template": (_without_template, ["no-template", "no chat template"]),
    "truncated_safetensors": (_truncated_weights, ["cut-weights", "cannot be loaded", "truncated"]),
    "no_such_folder": (lambda model, tmp: tmp / "none", ["none", "no such folder"]),
    "not_a_model_folder": (lambda model, tmp: tmp, ["no config.json"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_score_refuses_a_bad_model_folder_naming_it(case, pairs, model, tmp_path, cli):
    """Table row 13 and the list under it (a model folder without a chat template is refused when loaded, not at
    the first generation)."""
    make, needles = BAD_MODELS[case]
    refused(score(cli, make(model, tmp_path), pairs, tmp_path), 2, *needles, only_line=False)


def test_score_drops_rows_with_bad_images_and_scores_the_rest(data, model, tmp_path, cli):
    """Table rows 5 and 7: a `../` path, an outward symlink and a 12000² image are dropped rows (listed with their
    reasons), not a dead run; the good rows are scored."""
    paths = ["images/g0.png", "../outside.png", "images/link.png", "images/huge.png", "images/g1.png"]
    pairs = pairs_file(data, tmp_path / "mixed.parquet", paths)
    result = score(cli, model, pairs, tmp_path)
    assert result.code == 0
    (entry,) = [p for p in (tmp_path / "ref").iterdir() if (p / "manifest.json").is_file()]
    listed = {r["where"]: r["reason"] for r in rejected(entry / "rejected.jsonl")}
    assert listed == {"row 1": "image_outside_root", "row 2": "image_outside_root", "row 3": "image_too_large"}
    warning = " ".join(result.out.split())  # more than half dropped: a warning naming the file, counts and list
    assert "WARNING: 3 of 5 rows of" in warning and "image_outside_root 2, image_too_large 1" in warning
    import pyarrow.parquet as pq

    assert sorted(set(pq.read_table(entry / "reference.parquet")["row"].to_pylist())) == [0, 4]


def test_score_refuses_a_file_whose_every_row_was_dropped(data, model, tmp_path, cli):
    """No entry when no row is left (train would refuse it later): exit 2 naming the file and the counts by
    reason, the rows listed in the rejected.jsonl the line names."""
    pairs = pairs_file(data, tmp_path / "gone.parquet", ["../outside.png", "images/link.png", "images/huge.png"])
    result = score(cli, model, pairs, tmp_path)
    refused(result, 2, "gone.parquet", "every one of its 3 rows was dropped",
            "image_outside_root 2, image_too_large 1", "rejected.jsonl", only_line=False)
    assert not [p for p in (tmp_path / "ref").iterdir() if (p / "manifest.json").is_file()]
    listed = result.lines[-1].split("each row and its reason: ")[1].split(";")[0]
    assert [r["reason"] for r in rejected(Path(listed))] == ["image_outside_root"] * 2 + ["image_too_large"]


def test_score_refuses_a_damaged_jsonl_row_naming_its_line(data, model, tmp_path, cli):
    pairs = pairs_file(data, tmp_path / "p.jsonl", [f"images/{i}.png" for i, *_ in GOOD])
    lines = pairs.read_text().splitlines()
    pairs.write_text("\n".join([lines[0], lines[1][: len(lines[1]) // 2], lines[2]]) + "\n")
    refused(score(cli, model, pairs, tmp_path), 2, "p.jsonl:2", "not valid JSON", only_line=False)


# ----------------------------------------------------------------------------------------------------------- train


@pytest.mark.parametrize("case", ["lr_nan", "batch_size_zero", "unknown_field"])
def test_train_refuses_a_bad_config_value_naming_the_field(case, pairs, model, tmp_path, cli):
    extra, needle = {"lr_nan": ("lr=.nan", "'lr'"), "batch_size_zero": ("batch_size=0", "'batch_size'"),
                     "unknown_field": ("learning_rate=1", "'learning_rate'")}[case]
    refused(train(cli, model, pairs, tmp_path / "run", extra), 2, needle)
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_missing_pairs_file_and_a_busy_out(pairs, model, tmp_path, cli):
    refused(train(cli, model, tmp_path / "none.parquet", tmp_path / "run"), 2, "none.parquet", "does not exist",
            only_line=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "checkpoint").write_text("finished work")
    refused(train(cli, model, pairs, busy), 2, "busy", "resume=true")
    assert (busy / "checkpoint").read_text() == "finished work"


def test_train_refuses_data_without_the_objectives_kinds_keeping_the_reference(pairs, model, tmp_path, cli):
    """The default objective trains on error_injection negatives; this file has only `original` ones: one line with
    the kinds on both sides, after the reference entry was written (and kept for the next try)."""
    refused(train(cli, model, pairs, tmp_path / "run"), 2, "['error_injection']", "original", only_line=False)
    (entry,) = [p for p in (tmp_path / "ref").iterdir() if (p / "manifest.json").is_file()]
    before = snapshot(entry)
    refused(train(cli, model, pairs, tmp_path / "run", "overwrite=true"), 2, "['error_injection']",
            only_line=False)
    assert snapshot(entry) == before


def test_train_refuses_a_file_whose_every_row_was_dropped(data, model, tmp_path, cli):
    """Table row 8 reached through a hand-made file: every image escapes the root, so no row is usable."""
    pairs = pairs_file(data, tmp_path / "out.parquet", ["../outside.png", "images/link.png"])
    refused(train(cli, model, pairs, tmp_path / "run"), 2, "every one of its 2 rows was dropped",
            "image_outside_root 2", only_line=False)
