"""Scoring commits its work in chunks: a killed ``unprior score`` resumes with only the missing rows, bit-identical
to an uninterrupted run; stale staged directories are cleaned; non-finite numbers never reach an entry."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unprior.cli import main
from unprior.guards import NonFiniteError
from unprior.io import clean_stale_staging, is_complete, staged_dir
from unprior.score import reference as reference_module
from unprior.score.config import ScoreConfig
from unprior.score.reference import CHUNK_FILE, ensure_reference, load_reference, work_dir

from .helpers import make_rows, pairs_file

ROWS = 160


def _args(model: Path, pairs: Path, cache: Path) -> list[str]:
    return [f"model={model}", f"pairs={pairs}", "max_length=64", f"reference_dir={cache}", "batch_size=4",
            "chunk_rows=4", "threads=1"]


def _committed_responses(cache: Path) -> int:
    works = list(cache.glob(".*.work"))
    if not works:
        return 0
    return sum(pq.read_metadata(p).num_rows for p in works[0].iterdir() if CHUNK_FILE.fullmatch(p.name))


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if is_complete(p)]
    return entry


def test_kill_9_then_rerun_scores_only_the_missing_rows(family_model, tmp_path, capsys):
    pairs = pairs_file(tmp_path / "pairs.parquet", make_rows(ROWS))
    model, killed = family_model("llava"), tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "unprior", "score", *_args(model, pairs, killed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while _committed_responses(killed) < 3 * 4 * 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:] if proc.stdout else ""
    committed = _committed_responses(killed)
    assert 0 < committed < ROWS * 4, "the kill must land mid-run"
    assert not [p for p in killed.iterdir() if is_complete(p)]

    capsys.readouterr()
    assert main(["score", *_args(model, pairs, killed)]) == 0
    printed = capsys.readouterr().out
    now = re.search(r"\((\d+) responses by this run, (\d+) resumed", " ".join(printed.split()))
    assert now is not None, printed
    assert (int(now[1]), int(now[2])) == (ROWS * 4 - committed, committed)
    assert not list(killed.glob(".*.work")) and not list(killed.glob(".*.partial-*"))

    whole = tmp_path / "whole"
    assert main(["score", *_args(model, pairs, whole)]) == 0
    a, b = _entry(killed), _entry(whole)
    assert a.name == b.name
    assert pq.read_table(a / "reference.parquet").equals(pq.read_table(b / "reference.parquet"))
    assert (a / "noise_report.json").read_bytes() == (b / "noise_report.json").read_bytes()
    assert (a / "dropped.jsonl").read_bytes() == (b / "dropped.jsonl").read_bytes()


def test_interrupted_run_resumes_in_process(family_model, small_pairs, tmp_path, monkeypatch):
    """A KeyboardInterrupt in the third batch: two batches are committed; the rerun scores the other rows only."""
    cfg = ScoreConfig(model=str(family_model("llava")), pairs=str(small_pairs), max_length=64, batch_size=2,
                      chunk_rows=2, reference_dir=str(tmp_path / "c"))
    real, calls = reference_module._reference_batch, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(reference_module, "_reference_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_reference(cfg, log=lambda _: None)
    monkeypatch.setattr(reference_module, "_reference_batch", real)
    lines: list[str] = []
    out = ensure_reference(cfg, log=lines.append)
    assert any("resuming: rows 0-3" in line for line in lines), lines
    assert any("32 responses by this run, 16 resumed" in line for line in lines), lines
    assert not work_dir(out).exists()
    fresh = ensure_reference(ScoreConfig(**{**cfg.__dict__, "reference_dir": str(tmp_path / "d")}), log=lambda _: None)
    assert pq.read_table(out / "reference.parquet").equals(pq.read_table(fresh / "reference.parquet"))


def test_stale_staged_directories_are_removed(tmp_path):
    dead = tmp_path / f".entry.partial-999999999@{socket.gethostname()}-abc123"
    legacy = tmp_path / ".entry.partial-k2j_8x"
    other_legacy = tmp_path / ".other.partial-k2j_8x"
    live = tmp_path / f".other.partial-{os.getpid()}@{socket.gethostname()}-zz9"
    for d in (dead, legacy, other_legacy, live):
        d.mkdir()
        (d / "reference.parquet").write_bytes(b"half")
    with staged_dir(tmp_path / "entry") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not dead.exists() and not legacy.exists()
    assert other_legacy.exists() and live.exists()  # another output's unowned write; a running process's write
    assert clean_stale_staging(tmp_path, "other") == [other_legacy]
    assert live.exists() and is_complete(tmp_path / "entry")


def test_a_model_with_nan_weights_is_refused_without_a_traceback(family_model, small_pairs, tmp_path, capsys):
    import torch

    from unprior.models.families import load_model
    from unprior.models.tiny import save_model

    net, processor = load_model(family_model("llava"))
    with torch.no_grad():
        next(p for n, p in net.named_parameters() if "lm_head" in n or "embed" in n).view(-1)[:3] = float("nan")
    broken = tmp_path / "broken"
    save_model(net, processor, broken)
    code = main(["score", *_args(broken, small_pairs, tmp_path / "c")])
    assert code == 1
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and str(broken) in err and "Traceback" not in err
    assert not [p for p in (tmp_path / "c").iterdir() if is_complete(p)]


def test_the_noise_report_draws_finite_margins_only(tmp_path):
    """A table from elsewhere (not an entry) may hold non-finite values: the histogram must not crash on them."""
    from unprior.score.noise_report import write_noise_report
    from unprior.score.reference import REFERENCE_SCHEMA

    rows = [(0, "a", 0, "chosen", float("nan"), float("nan"), 3, False),
            (0, "a", 1, "language_bias", -2.0, -1.0, 2, False)]
    table = pa.Table.from_pylist([dict(zip(REFERENCE_SCHEMA.names, r, strict=True)) for r in rows],
                                 schema=REFERENCE_SCHEMA)
    report = write_noise_report(table, tmp_path)
    assert report["kinds"]["language_bias"]["sum"]["mean"] is None
    assert json.loads((tmp_path / "noise_report.json").read_text())["kinds"]["language_bias"]["n"] == 1
    assert (tmp_path / "noise_sum.png").is_file()


def _nan_rows(rows: set[int]):
    real = reference_module._reference_batch

    def poisoned(encoder, scorer, chunk, *budget):
        columns, dropped = real(encoder, scorer, chunk, *budget)
        for i, row in enumerate(columns["row"]):
            if row in rows and columns["response"][i] == 1:
                columns["logp_sum"][i] = float("nan")
                columns["logp_mean"][i] = float("-inf")
        return columns, dropped

    return poisoned


def test_a_few_nonfinite_rows_are_dropped_most_are_refused(family_model, small_pairs, tmp_path, monkeypatch):
    cfg = ScoreConfig(model=str(family_model("llava")), pairs=str(small_pairs), max_length=64,
                      reference_dir=str(tmp_path / "c"))
    monkeypatch.setattr(reference_module, "_reference_batch", _nan_rows({2, 7}))
    out = ensure_reference(cfg, log=lambda _: None)
    assert load_reference(out).rows == [r for r in range(12) if r not in (2, 7)]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejected] == [("r2", "nonfinite_logp"), ("r7", "nonfinite_logp")]
    assert json.loads((out / "manifest.json").read_text())["dropped"] == {"nonfinite_logp": 2}

    monkeypatch.setattr(reference_module, "_reference_batch", _nan_rows(set(range(8))))
    other = ScoreConfig(**{**cfg.__dict__, "reference_dir": str(tmp_path / "d")})
    with pytest.raises(NonFiniteError, match=r"for 8 of 12 rows \(ids r0, r1"):
        ensure_reference(other, log=lambda _: None)
    assert not [p for p in (tmp_path / "d").iterdir() if is_complete(p)]
    assert list((tmp_path / "d").glob(".*.work/chunk-*.parquet"))  # the scoring work is kept


def test_a_damaged_entry_is_refused_when_read(family_model, small_pairs, tmp_path):
    """The issue's first case: NaN and ±inf written into an entry by hand; training must not start on it."""
    cfg = ScoreConfig(model=str(family_model("llava")), pairs=str(small_pairs), max_length=64,
                      reference_dir=str(tmp_path / "c"))
    out = ensure_reference(cfg, log=lambda _: None)
    table = pq.read_table(out / "reference.parquet")
    sums = table["logp_sum"].to_numpy().copy()
    sums[[5, 9, 30]] = [np.nan, np.inf, -np.inf]  # rows 1, 2 and 7 (4 responses per row)
    table = table.set_column(table.schema.get_field_index("logp_sum"), "logp_sum", pa.array(sums))
    pq.write_table(table, out / "reference.parquet")
    with pytest.raises(NonFiniteError) as e:
        load_reference(out)
    assert str(out / "reference.parquet") in str(e.value)
    assert "3 rows" in str(e.value) and "rows 1, 2, 7" in str(e.value) and "ids r1, r2, r7" in str(e.value)
