"""The reference cache: computed once, hit on the same inputs, missed when anything that changes the numbers
changes, and untouched by settings that do not (batch size, forward method). Bad rows are counted, not fatal."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from unprior.cli import main
from unprior.formats.pairs import read_pairs
from unprior.forward.batch import RowEncoder
from unprior.forward.prefix import ResponseScorer
from unprior.models.families import load_model
from unprior.score import reference as reference_module
from unprior.score.config import ScoreConfig
from unprior.score.reference import ensure_reference, load_reference

from .helpers import make_rows, pairs_file


@pytest.fixture
def counted(monkeypatch):
    """Count how often the model actually scores (a cache hit must not)."""
    calls = []
    real = reference_module.score_pairs

    def wrapper(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_module, "score_pairs", wrapper)
    return calls


def test_hit_and_miss(family_model, small_pairs, tmp_path, counted):
    cfg = ScoreConfig(model=str(family_model("llava")), pairs=str(small_pairs), max_length=64,
                      reference_dir=str(tmp_path / "cache"))
    first = ensure_reference(cfg, log=lambda _: None)
    assert len(counted) == 1
    assert ensure_reference(cfg, log=lambda _: None) == first and len(counted) == 1  # hit
    same = ScoreConfig(**{**cfg.__dict__, "batch_size": 3, "method": "naive"})
    assert ensure_reference(same, log=lambda _: None) == first and len(counted) == 1  # not in the key
    longer = ScoreConfig(**{**cfg.__dict__, "max_length": 65})
    assert ensure_reference(longer, log=lambda _: None) != first and len(counted) == 2
    other_pairs = pairs_file(tmp_path / "other.parquet", make_rows(12, seed=1))
    assert ensure_reference(ScoreConfig(**{**cfg.__dict__, "pairs": str(other_pairs)}),
                            log=lambda _: None) != first
    other_model = ScoreConfig(**{**cfg.__dict__, "model": str(family_model("idefics3"))})
    assert ensure_reference(other_model, log=lambda _: None) != first
    assert len(counted) == 4
    forced = ScoreConfig(**{**cfg.__dict__, "overwrite": True})
    assert ensure_reference(forced, log=lambda _: None) == first and len(counted) == 5


def test_entry_holds_what_training_reads(family_model, small_pairs, tmp_path):
    cfg = ScoreConfig(model=str(family_model("qwen2_vl")), pairs=str(small_pairs), max_length=64,
                      reference_dir=str(tmp_path), batch_size=5)
    out = ensure_reference(cfg, log=lambda _: None)
    assert {p.name for p in out.iterdir()} >= {"reference.parquet", "manifest.json", "noise_report.json",
                                               "noise_sum.png", "noise_mean.png", "score_config.yaml"}
    table = pq.read_table(out / "reference.parquet").to_pydict()
    assert len(table["row"]) == 12 * 4
    assert table["kind"][:4] == ["chosen", "error_injection", "language_bias", "vision_bias"]
    ref = load_reference(out)
    assert ref.rows == list(range(12))
    # The cached numbers are the frozen model's log-probs of row 0, scored here directly.
    model, processor = load_model(cfg.model)
    encoder = RowEncoder(processor, 64)
    rows, _ = encoder.encode([(0, read_pairs(small_pairs)[0])])
    batch = encoder.collate(rows, [[0, 1, 2, 3]], repeat_prompts=True)
    with torch.no_grad():
        sums, counts = ResponseScorer(model.eval(), "naive")(**batch.inputs())
    assert ref.sums[0] == pytest.approx(sums.double().numpy(), abs=1e-4)
    assert ref.counts[0].tolist() == counts.long().tolist()


def test_bad_rows_are_counted_not_fatal(family_model, tmp_path):
    rows = make_rows(6)
    rows[1] = rows[1].__class__(**{**rows[1].__dict__, "image": b"\x89PNG broken"})
    rows[2] = rows[2].__class__(**{**rows[2].__dict__, "chosen": ""})
    rows[3] = rows[3].__class__(**{**rows[3].__dict__, "prompt": "Describe the image in detail. " * 20})
    path = pairs_file(tmp_path / "bad.parquet", rows)
    cfg = ScoreConfig(model=str(family_model("llava")), pairs=str(path), max_length=60,
                      reference_dir=str(tmp_path / "c"))
    lines: list[str] = []
    out = ensure_reference(cfg, log=lines.append)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dropped"] == {"unreadable_image": 1, "empty_chosen": 1, "prompt_too_long": 1}
    assert load_reference(out).rows == [0, 4, 5]
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert [d["id"] for d in dropped] == ["r1", "r2", "r3"]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["id"], r["where"]) for r in rejected] == [("r1", "row 1"), ("r2", "row 2"), ("r3", "row 3")]
    for reason in manifest["dropped"]:
        assert any(f"dropped, {reason}: 1" in line for line in lines), lines


def test_cli_score_prints_the_noise_report(family_model, small_pairs, tmp_path, capsys):
    code = main(["score", f"model={family_model('llava')}", f"pairs={small_pairs}", "max_length=64",
                 f"reference_dir={tmp_path / 'cache'}", f"out={tmp_path / 'report'}"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "language_bias" in printed and "reference prefers the negative" in printed
    assert (tmp_path / "report" / "noise_report.json").is_file()
    assert (tmp_path / "report" / "noise_sum.png").is_file()


def test_patch_budget_scores_in_smaller_batches(family_model, small_pairs, monkeypatch):
    """``max_batch_patches`` halves a batch until its images fit (docs/pairs.md, "Real sizes"); same numbers."""
    from unprior.score.reference import score_pairs

    sizes: list[int] = []
    real = ResponseScorer.__call__
    monkeypatch.setattr(ResponseScorer, "__call__",
                        lambda self, **kw: sizes.append(int(kw["prompt_lens"].shape[0])) or real(self, **kw))
    model, processor = load_model(family_model("qwen2_vl"))
    tables = {}
    for budget in (0, 9):  # a tiny qwen2_vl row: 4 image tokens x 2x2 merge = 16 patches; 9 admits none together
        cfg = ScoreConfig(model="-", pairs=str(small_pairs), max_length=64, batch_size=4, max_batch_patches=budget)
        sizes.clear()
        tables[budget], _ = score_pairs(cfg, model.eval(), processor, log=lambda _: None)
        assert sizes == ([4, 4, 4] if budget == 0 else [1] * 12)
    assert tables[9].column("id").to_pylist() == tables[0].column("id").to_pylist()
    assert tables[9].column("logp_sum").to_pylist() == pytest.approx(tables[0].column("logp_sum").to_pylist(),
                                                                     abs=1e-4)
