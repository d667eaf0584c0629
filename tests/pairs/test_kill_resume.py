"""kill -9 a real `python -m unprior pairs` process mid-run, rerun the same command: nothing lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from unprior.cli import main
from unprior.io import read_json
from unprior.pairs.loaders import load_samples
from unprior.pairs.merge import iter_run_rows
from unprior.pairs.run import run_pairs

from .tiny import pairs_args, run_config

EXTRA = ("strategies=[image_weakening,rules]", "part_size=4", "image_weakening.decoding.max_new_tokens=16")


def _command(world: Path, model: Path, out: Path) -> list[str]:
    args = pairs_args(world, model, out, *EXTRA)
    # pairs_args sets max_new_tokens=6 first; the later override in EXTRA wins
    return [sys.executable, "-m", "unprior", "pairs", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _done_parts(shard: Path) -> int:
    try:
        return len(read_json(shard / "done.json")["parts"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _rows(out: Path) -> list[tuple]:
    return sorted((r.id, tuple((n.kind, n.text) for n in r.negatives)) for r in iter_run_rows(out))


def test_kill_9_then_rerun_loses_and_duplicates_nothing(tiny_world: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shard = out / "shard-00000-of-00001"
    proc = subprocess.Popen(_command(tiny_world, tiny_model, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while _done_parts(shard) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:] if proc.stdout else ""
    plan = read_json(shard / "plan.json")
    done_at_kill = _done_parts(shard)
    assert 2 <= done_at_kill < plan["parts"], "the kill must land mid-run"
    assert not (shard / "summary.json").exists()

    # The same command again (in this process, through the same CLI entry point, to save a second start-up).
    assert main(_command(tiny_world, tiny_model, out)[3:]) == 0
    summary = read_json(shard / "summary.json")
    assert summary["parts_generated_by_this_run"] == plan["parts"] - done_at_kill

    resumed = _rows(out)
    samples, _ = load_samples(tiny_world)
    assert sorted(r[0] for r in resumed) == sorted(s.id for s in samples)  # every sample once
    run_pairs(run_config(tiny_world, tiny_model, tmp_path / "ref", *EXTRA))
    assert resumed == _rows(tmp_path / "ref")  # and exactly what an uninterrupted run writes
