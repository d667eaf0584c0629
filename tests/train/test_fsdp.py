"""accelerate's FSDP plugin (FSDP2, full sharding) on two CPU processes (gloo) gives the run of one process.

accelerate 1.15 does not select FSDP on CPU by itself; tests/train/fsdp_cpu.py lifts that one gate and runs
``unprior train`` (see its docstring). The FSDP settings come from the environment, as ``accelerate launch
--use_fsdp`` passes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unprior.config import dump_yaml
from unprior.train.trainer import setup, train

from .helpers import assert_same_run, config, losses
from .test_distributed import free_port

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("fsdp_cpu.py")
FSDP_ENV = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_RESHARD_AFTER_FORWARD": "true",  # FULL_SHARD
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_TRANSFORMER_CLS_TO_WRAP": "Qwen2VLDecoderLayer",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
}
"""What ``accelerate launch --use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP ...``
exports for the processes it starts."""


def launch_fsdp(cfg_path: Path, processes: int = 2, **fsdp_env: str) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), str(LAUNCHER), "--config", str(cfg_path)]
    env = {**os.environ, **FSDP_ENV, **fsdp_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize(("method", "fsdp_env", "train_kw"), [
    pytest.param("prefix", {}, {}, id="prefix"),
    pytest.param("naive", {}, {}, id="naive"),
    pytest.param("prefix", {}, {"activation_checkpointing": True}, marks=pytest.mark.slow, id="prefix-checkpointing"),
    pytest.param("prefix", {"FSDP_AUTO_WRAP_POLICY": "NO_WRAP"}, {}, marks=pytest.mark.slow, id="prefix-no_wrap"),
    pytest.param("prefix", {"FSDP_RESHARD_AFTER_FORWARD": "false"}, {}, marks=pytest.mark.slow,
                 id="prefix-shard_grad_op"),
])
def test_fsdp_two_processes_match_one(method, fsdp_env, train_kw, family_model, train_pairs, eval_pairs, tmp_path):
    kw = dict(steps=4, eval_pairs=str(eval_pairs), threads=1, method=method, **train_kw)
    single = tmp_path / "single"
    train(setup(config(family_model("qwen2_vl"), train_pairs, single, batch_size=4, **kw)))

    sharded = tmp_path / "fsdp"
    dump_yaml(config(family_model("qwen2_vl"), train_pairs, sharded, batch_size=2, **kw), tmp_path / "fsdp.yaml")
    proc = launch_fsdp(tmp_path / "fsdp.yaml", **fsdp_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout
    assert "fsdp_cpu: DistributedType.FSDP, FSDP2, parameters DTensor" in proc.stdout

    assert_same_run(single, sharded)
    w1, w2 = (load_file(out / "model" / "adapter_model.safetensors") for out in (single, sharded))
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    assert torch.isfinite(torch.tensor([loss for _, loss in losses(sharded)])).all()
