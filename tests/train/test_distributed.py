"""Two CPU processes (torchrun, gloo) give the same run as one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from unprior.config import dump_yaml
from unprior.train.trainer import setup, train

from .helpers import assert_same_run, config, losses

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(family_model, train_pairs, eval_pairs, tmp_path):
    kw = dict(steps=4, eval_pairs=str(eval_pairs), threads=1)
    single = tmp_path / "single"
    train(setup(config(family_model("qwen2_vl"), train_pairs, single, batch_size=4, **kw)))

    double = tmp_path / "double"
    dump_yaml(config(family_model("qwen2_vl"), train_pairs, double, batch_size=2, **kw), tmp_path / "double.yaml")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "unprior", "train", "--config", str(tmp_path / "double.yaml")]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout

    assert_same_run(single, double)
    w1, w2 = (load_file(out / "model" / "adapter_model.safetensors") for out in (single, double))
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    assert torch.isfinite(torch.tensor([loss for _, loss in losses(double)])).all()
