"""`unprior pairs` runs: sharding, merge, resumption from any partial state, config checks, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unprior.cli import _split_command, main
from unprior.config import ConfigError, load_config
from unprior.formats.pairs import read_pairs
from unprior.io import InputError, read_json
from unprior.pairs.config import MergeConfig, PairsConfig
from unprior.pairs.merge import iter_run_rows, merge_pairs
from unprior.pairs.run import run_pairs
from unprior.pairs.shards import shard_of

from .tiny import pairs_args, run_config


def _rules(world: Path, out: Path, *extra: str) -> PairsConfig:
    return load_config(PairsConfig, None, [f"source={world}", f"out={out}", "progress=false", "part_size=10", *extra])


def _as_tuples(rows) -> list[tuple]:
    return sorted((r.id, tuple((n.kind, n.text, json.dumps(n.provenance, sort_keys=True)) for n in r.negatives))
                  for r in rows)  # fmt: skip


def test_shards_partition_the_samples_and_merge_back(tiny_world: Path, tmp_path: Path) -> None:
    run_pairs(_rules(tiny_world, tmp_path / "one"))
    whole = _as_tuples(iter_run_rows(tmp_path / "one"))
    for i in range(3):
        run_pairs(_rules(tiny_world, tmp_path / "three", "num_shards=3", f"shard_index={i}"))
    summary = merge_pairs(MergeConfig(out=str(tmp_path / "three"), export="trl"))
    merged = read_pairs(tmp_path / "three" / "pairs.parquet")
    assert _as_tuples(merged) == whole  # same rows, none lost or duplicated
    assert summary["rows"] == len(whole) and summary["problems"] == []
    assert summary["counts"]["rows"] == len(whole) and summary["export"]["rows"] == len(whole)
    assert (tmp_path / "three" / "trl" / "train.parquet").is_file()
    sizes = [read_json(d / "plan.json")["samples"] for d in sorted((tmp_path / "three").glob("shard-*"))]
    assert all(sizes) and sum(sizes) == len(whole)
    assert shard_of("x", 3) == shard_of("x", 3)


def test_merge_refuses_missing_or_unfinished_shards(tiny_world: Path, tmp_path: Path) -> None:
    run_pairs(_rules(tiny_world, tmp_path, "num_shards=2", "shard_index=1"))
    with pytest.raises(InputError, match="shard-00000-of-00002 is missing"):
        merge_pairs(MergeConfig(out=str(tmp_path)))
    summary = merge_pairs(MergeConfig(out=str(tmp_path), allow_partial=True, output=str(tmp_path / "p.jsonl")))
    assert summary["problems"] == ["shard-00000-of-00002 is missing"]
    assert len(read_pairs(tmp_path / "p.jsonl")) == summary["rows"] > 0
    (tmp_path / "shard-00001-of-00002" / "summary.json").unlink()
    with pytest.raises(InputError, match="not finished"):
        merge_pairs(MergeConfig(out=str(tmp_path), allow_partial=False))


def test_resume_from_every_kind_of_partial_state(tiny_world: Path, tiny_model: Path, tmp_path: Path) -> None:
    extra = ("strategies=[image_weakening,rules]", "part_size=16")
    run_pairs(run_config(tiny_world, tiny_model, tmp_path / "ref", *extra))
    reference = _as_tuples(iter_run_rows(tmp_path / "ref"))
    out = tmp_path / "crashed"
    shutil.copytree(tmp_path / "ref", out)
    shard = out / "shard-00000-of-00001"
    done = read_json(shard / "done.json")["parts"]
    assert len(done) >= 4
    keys = sorted(done)
    (shard / "summary.json").unlink()  # killed before the end
    (shard / f"part-{keys[0]}.parquet").unlink()  # a recorded part whose file is gone
    del done[keys[1]]  # killed between the part's rename and the index update
    del done[keys[2]]
    (shard / f"part-{keys[2]}.parquet").unlink()  # killed before the part was written
    (shard / ".part-00099.parquet.abc.tmp").write_bytes(b"half a file")  # killed mid-write
    (shard / "done.json").write_text(json.dumps({"parts": done}))
    assert run_pairs(run_config(tiny_world, tiny_model, out, *extra)) == 0
    summary = read_json(shard / "summary.json")
    assert summary["parts_generated_by_this_run"] == 3
    assert not list(shard.glob(".*.tmp"))
    assert _as_tuples(iter_run_rows(out)) == reference  # identical to the uninterrupted run
    assert summary["counts"] == read_json(tmp_path / "ref" / "shard-00000-of-00001" / "summary.json")["counts"]
    assert run_pairs(run_config(tiny_world, tiny_model, out, *extra)) == 0  # finished: nothing to do
    assert read_json(shard / "summary.json")["parts_generated_by_this_run"] == 0


def test_changed_config_or_source_is_refused_and_overwrite_restarts(tiny_world: Path, tmp_path: Path) -> None:
    world = shutil.copytree(tiny_world, tmp_path / "world")
    out = tmp_path / "out"
    run_pairs(_rules(world, out))
    with pytest.raises(InputError, match=r"different config \(rules.max_negatives: 1 -> 2; seed: 0 -> 1\)"):
        run_pairs(_rules(world, out, "seed=1", "rules.max_negatives=2", "progress=true"))  # progress: not content
    lines = (world / "train.jsonl").read_text().splitlines(keepends=True)
    (world / "train.jsonl").write_text("".join(lines[:-3]))
    with pytest.raises(InputError, match="different source samples"):
        run_pairs(_rules(world, out))
    run_pairs(_rules(world, out, "progress=true", "rules.max_negatives=2", "overwrite=true"))
    assert read_json(out / "shard-00000-of-00001" / "summary.json")["parts_generated_by_this_run"] > 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("strategies=[nope]", "strategies"),
        ("strategies=[rules,rules]", "strategies"),
        ("strategies=[image_weakening]", "generator.model"),
        ("shard_index=2", "shard_index"),
        ("image_weakening.space=sideways", "space"),
        ("rules.edits=[teleport]", "edits"),
        ("generator.backend=tgi", "backend"),
    ],
)
def test_config_errors_name_the_field(override: str, field: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=field):
        cfg = load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "num_shards=2", override])
        cfg.validate()


def test_bad_perturbation_params_fail_before_loading(tmp_path: Path) -> None:
    for params in ("{t: 1000}", "{t: 900, mean: 0.5}"):
        cfg = load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "strategies=[image_weakening]",
                                              "generator.model=m", "image_weakening.space=tensor",
                                              f"image_weakening.params={params}"])  # fmt: skip
        with pytest.raises(ConfigError, match=r"image_weakening\.params"):
            run_pairs(cfg)


def test_cli_pairs_and_pairs_merge(tiny_world: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:
    assert _split_command(["pairs", "merge", "out=x"]) == ("pairs merge", ["out=x"])
    assert _split_command(["pairs", "out=x"]) == ("pairs", ["out=x"])
    args = pairs_args(tiny_world, tiny_model, tmp_path, "strategies=[vision_bias]", "load.limit=8")
    assert main(["pairs", *args]) == 0
    assert main(["pairs", "merge", f"out={tmp_path}", "export=llamafactory"]) == 0
    assert "llamafactory export: 8 preference rows" in capsys.readouterr().out
    assert main(["pairs", "--help"]) == 0 and "image_weakening.params" in capsys.readouterr().out
    assert main(["pairs", "source=x", "out=y", "strategies=[nope]"]) == 2


def test_dropped_input_rows_are_shown_and_listed_with_their_reason(tmp_path: Path, capsys) -> None:
    """A LLaVA JSON of 8 rows, 7 bad: the screen shows the counts by reason, rejected.jsonl names each row."""
    from .helpers import corrupt_png, png_bytes

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "good.png").write_bytes(png_bytes())
    (root / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    (root / "img" / "cut.png").write_bytes(corrupt_png())
    (tmp_path / "outside.png").write_bytes(png_bytes())

    def row(i: str, image: str, answer: str | None = "A red square.") -> dict:
        turns = [{"from": "human", "value": "<image>\nWhat is it?"}]
        return {"id": i, "image": image, "conversations": turns + ([{"from": "gpt", "value": answer}]
                                                                   if answer is not None else [])}

    rows = [row("good", "img/good.png"), row("escape", "../outside.png"),
            row("absolute", str(tmp_path / "outside.png")), row("corrupt", "img/corrupt.png"),
            row("cut", "img/cut.png"), row("empty", "img/good.png", answer=""), row("missing", "img/none.png"),
            row("no-answer", "img/good.png", answer=None)]  # fmt: skip
    (root / "llava.json").write_text(json.dumps(rows))
    out = tmp_path / "pairs"
    assert main(["pairs", f"source={root / 'llava.json'}", f"out={out}", "strategies=[rules]",
                 "progress=false"]) == 0
    screen = capsys.readouterr().out  # progress=false: no bar, but the summary and drop counts (issue 21 item 5)
    assert "rows written" in screen
    shard = next(out.iterdir())
    summary = read_json(shard / "summary.json")
    listed = [json.loads(line) for line in (shard / "rejected.jsonl").read_text().splitlines()]
    assert summary["rejected"]["total"] == 8 == len(listed)  # rules alone find no negative for the one good row
    by_id = {r["id"]: r for r in listed}
    good = by_id.pop("good")
    assert (good["where"], good["reason"]) == ("generation", "no_negatives")
    assert good["detail"] == ("no negative was produced (rules); the rules found no object, count, colour or "
                              "relation word to edit")  # not "every negative was empty" (issue 21 item 9)
    assert set(by_id) == {"escape", "absolute", "corrupt", "cut", "empty", "missing", "no-answer"}
    assert by_id["escape"]["where"] == "llava.json[1]" and by_id["no-answer"]["where"] == "llava.json[7]"
    assert all(r["reason"] and r["detail"] for r in listed)
    for reason, n in summary["load"]["dropped"].items():
        assert f"input rows dropped: {reason}" in screen and n >= 1
    assert "8 input rows dropped, listed in" in screen and "rejected.jsonl" in screen
    assert main(["pairs", "merge", f"out={out}"]) == 2  # no row left: refused, with the rows listed
    assert "no rows to merge" in capsys.readouterr().err
    assert read_json(out / "summary.json")["rejected"]["total"] == 8


def test_no_negatives_detail_says_whether_anything_was_made() -> None:
    from unprior.pairs.run import _no_negatives_detail

    assert _no_negatives_detail(2, ["rules"]).startswith("all 2 negatives were dropped by the filters")
    assert _no_negatives_detail(0, ["error_injection"]) == "no negative was produced (error_injection)"


@pytest.mark.parametrize(("perturbation", "params"), [("diffusion_noise", {"t": 900}), ("blur", {"sigma": 3}),
                                                      ("patch_mask", {"ratio": 0.5, "patch": 16}),
                                                      ("blank", {"colour": "white"})])
def test_switching_perturbation_takes_its_own_default_params(perturbation: str, params: dict, tmp_path: Path) -> None:
    """Issue 21 item 7: naming a perturbation alone uses its defaults, not diffusion's {t: 900}."""
    cfg = load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "strategies=[image_weakening]",
                                          "generator.model=m", f"image_weakening.perturbation={perturbation}"])
    assert cfg.image_weakening.params == params
    partial = load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "image_weakening.perturbation=patch_mask",
                                              "image_weakening.params={ratio: 0.25}"])
    assert partial.image_weakening.params == {"ratio": 0.25, "patch": 16}


def test_wrong_perturbation_param_names_the_perturbation_and_what_it_accepts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"image_weakening\.params': patch_mask does not take t; it accepts ratio, "
                                          r"patch, fill"):
        load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "image_weakening.perturbation=patch_mask",
                                        "image_weakening.params={t: 900}"])
    with pytest.raises(ConfigError, match=r"blur does not take radius; it accepts sigma"):
        load_config(PairsConfig, None, ["source=x", f"out={tmp_path}", "image_weakening.perturbation=blur",
                                        "image_weakening.params={radius: 2}"])


def test_score_takes_a_pairs_run_directory_without_merge(tiny_world: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Issue 21 item 9: one shard needs no `pairs merge`: score (and train, through the same resolve_pairs) take
    the run directory or its shard directory and merge it on the spot, once."""
    import os

    from unprior.pairs.merge import resolve_pairs
    from unprior.score.config import ScoreConfig
    from unprior.score.reference import run_score

    out = tmp_path / "pairs"
    run_pairs(_rules(tiny_world, out, "load.limit=12"))
    shard = next(out.glob("shard-*"))
    logged: list[str] = []
    merged = resolve_pairs(str(shard), logged.append)
    assert merged == str(out / "pairs.parquet") and "merged 1 shard(s)" in logged[0]
    assert _as_tuples(read_pairs(merged)) == _as_tuples(iter_run_rows(out))
    stamp = os.stat(merged).st_mtime_ns
    assert resolve_pairs(str(out), logged.append) == merged and len(logged) == 1  # up to date: not merged again
    assert os.stat(merged).st_mtime_ns == stamp
    file = str(tmp_path / "other.jsonl")
    assert resolve_pairs(file) == file  # a file (even a missing one) is the reader's business
    (out / "pairs.parquet").unlink()
    assert run_score(load_config(ScoreConfig, None, [f"model={tiny_model}", f"pairs={out}",
                                                     f"reference_dir={tmp_path / 'cache'}"])) == 0
    assert (out / "pairs.parquet").is_file()


def test_answer_token_cap_follows_the_task() -> None:
    """Issue 21 item 11: short QA answers get a short cap, long descriptions a long one, within [32, 1024]."""
    from unprior.pairs.run import answer_token_cap

    assert answer_token_cap(["Yes.", "No, there is no pig.", "Red."] * 10) == (32, 5)
    long = ["word " * 100] * 19 + ["word " * 2000]  # one outlier does not set the cap
    assert answer_token_cap(long) == (304, 100)
    assert answer_token_cap(["word " * 900] * 3) == (1024, 900)
    assert answer_token_cap([]) == (32, 0)


def test_unset_max_new_tokens_is_derived_printed_and_recorded(tiny_world: Path, tiny_model: Path, tmp_path: Path,
                                                              capsys) -> None:
    cfg = run_config(tiny_world, tiny_model, tmp_path, "strategies=[vision_bias,rules]", "load.limit=4",
                     "vision_bias.decoding.max_new_tokens=null")
    assert cfg.vision_bias.decoding.max_new_tokens is None
    assert run_pairs(cfg) == 0
    screen = capsys.readouterr().out
    assert "generation cap: max_new_tokens=32 for vision_bias" in screen  # the world's answers are short
    rows = list(iter_run_rows(tmp_path))
    decodings = [n.provenance["decoding"] for r in rows for n in r.negatives if n.kind == "vision_bias"]
    assert decodings and all(d["max_new_tokens"] == 32 for d in decodings)
