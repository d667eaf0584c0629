"""The ``world`` benchmark with scripted answers: the same numbers as the world report, resumable, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest

from unprior.answers import parse_pope
from unprior.config import ConfigError, from_dict
from unprior.eval.config import EvalConfig
from unprior.eval.registry import DataError, Request, make_benchmark
from unprior.eval.runner import run_eval
from unprior.io import read_jsonl
from unprior.world import metrics as world_metrics
from unprior.world.report import headline
from unprior.world.spec import canonical, partner

from .helpers import ScriptedGenerator


def world_config(world, out, **extra):
    data = {"benchmark": "world", "out": str(out), "batch_size": 50, "options": {"world_dir": str(world)},
            **extra}
    return from_dict(EvalConfig, data)


def reference_rows(world):
    return {r["id"]: r for split in ("test_id", "test_cf") for r in read_jsonl(world / f"{split}.jsonl")}


class RowGenerator:
    """A GenerateFn that answers each row with ``answer(row)``."""

    def __init__(self, world, answer):
        self.rows = reference_rows(world)
        self.answer = answer

    def __call__(self, requests: list[Request]) -> list[str]:
        return [self.answer(self.rows[r.id]) for r in requests]


def prior_answer(row) -> str:
    """What a blind, fully prior-driven model says: canonical colours, 'yes', partners in every description."""
    meta = row["meta"]
    if row["task"] == "attribute":
        return f"The {meta['target']} is {canonical(meta['target'])}."
    if row["task"] == "exists":
        return f"Yes, there is a {meta['target']}."
    cats = sorted({c for o in meta["objects"] for c in (o["category"], partner(o["category"]))})
    return " and ".join(f"a {canonical(c)} {c}" for c in cats) + "."


def test_reference_answers_score_perfectly_and_match_the_world_report(tiny_world, tmp_path, quiet_console):
    res = run_eval(world_config(tiny_world, tmp_path / "run"), RowGenerator(tiny_world, lambda r: r["answer"]),
                   console=quiet_console)
    m = res["metrics"]
    assert m["id_attribute_accuracy"] == m["cf_attribute_accuracy"] == 1.0
    assert m["cf_prior_follow"] == 0.0 and m["id_prior_follow"] > 0.8  # ID colours are mostly canonical
    assert m["cf_pope_adversarial_fp"] == m["cf_chair_i"] == m["cf_partner_hallucination"] == 0.0
    assert res["headline"][:3] == ["id_attribute_accuracy", "cf_attribute_accuracy", "cf_prior_follow"]
    assert res["metric_info"]["cf_prior_follow"]["higher_is_better"] is False
    assert res["metric_info"]["id_prior_follow"]["higher_is_better"] is None
    assert res["provenance"]["world_hash"] and res["parser_version"] == world_metrics.PARSER_VERSION


def test_prior_following_answers_and_world_report_agree(tiny_world, tmp_path, quiet_console):
    gen = RowGenerator(tiny_world, prior_answer)
    m = run_eval(world_config(tiny_world, tmp_path / "run"), gen, console=quiet_console)["metrics"]
    assert m["cf_attribute_accuracy"] == 0.0 and m["cf_prior_follow"] == 1.0
    assert m["cf_pope_random_fp"] == m["cf_pope_adversarial_fp"] == 1.0
    assert m["cf_partner_hallucination"] == 1.0 and m["cf_chair_s"] == 1.0
    # the same answers through `unprior world report`'s scoring give the same numbers
    report = {}
    for split in ("test_id", "test_cf"):
        rows = list(read_jsonl(tiny_world / f"{split}.jsonl"))
        report[split] = world_metrics.split_metrics(rows, [prior_answer(r) for r in rows])
    h = headline(report)
    same = ["id_attribute_accuracy", "cf_attribute_accuracy", "cf_prior_follow", "cf_partner_hallucination",
            "id_chair_i", "cf_chair_i"]
    pairs = {**{k: k for k in same}, "pope_fp_random_cf": "cf_pope_random_fp",
             "pope_fp_adversarial_id": "id_pope_adversarial_fp"}
    assert {k: h[k] for k in pairs} == {k: m[v] for k, v in pairs.items()}


def test_limit_counts_images_per_split(tiny_world, tmp_path, quiet_console):
    res = run_eval(world_config(tiny_world, tmp_path / "run", limit=3), RowGenerator(tiny_world, prior_answer),
                   console=quiet_console)
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    images = {(s["id"].split("-")[0], s["image"]) for s in samples}
    assert sorted({split for split, _ in images}) == ["test_cf", "test_id"]
    assert len(images) == 6 and res["n_items"] == len(samples)


def test_resume_after_kill_answers_each_row_once(tiny_world, tmp_path, quiet_console):
    cfg = world_config(tiny_world, tmp_path / "run", limit=4, batch_size=7)
    first = ScriptedGenerator(default="No", fail_after=14)
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, first, console=quiet_console)
    second = ScriptedGenerator(default="No")
    res = run_eval(cfg, second, console=quiet_console)
    assert len(first.seen) == 14 and not set(first.seen) & set(second.seen)
    assert res["n_items"] == len(first.seen) + len(second.seen) and res["n_generated"] == len(second.seen)
    third = ScriptedGenerator()
    run_eval(cfg, third, console=quiet_console)
    assert third.seen == []


def test_bad_rows_name_the_file_and_line(tiny_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(tiny_world / "images" / "test_id", world / "images" / "test_id")
    rows = list(read_jsonl(tiny_world / "test_id.jsonl"))[:3]
    del rows[1]["meta"]
    (world / "test_id.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"test_id.jsonl:2: missing field 'meta'"):
        make_benchmark("world", {"world_dir": str(world), "splits": ["test_id"]}).load()
    shutil.copy(tiny_world / "test_id.jsonl", world / "test_id.jsonl")
    with pytest.raises(DataError, match=r"test_cf: file not found: .*test_cf\.jsonl"):
        make_benchmark("world", {"world_dir": str(world)}).load()
    with pytest.raises(ConfigError, match=r"options\.splits"):
        make_benchmark("world", {"world_dir": str(world), "splits": []})


def test_world_yes_no_parser_is_the_official_pope_parser():
    cases = ["No, there is not.", "Yes.", "There is a dog.", "", "no", "NO", "Not at all", "Yes. No.", "I see no pig"]
    assert [world_metrics.parse_yes_no(c) for c in cases] == [parse_pope(c) for c in cases]
