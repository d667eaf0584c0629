"""bench/gpu.sh without a GPU: argument handling, the accelerate and pairs configs it writes, the plan, the FLOPs
count; the whole run on a tiny model on CPU (slow)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import gpu_bench
import shapes

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_writes_an_fsdp2_config_and_the_plan(tmp_path, capsys):
    assert gpu_bench.main(["--dry-run", "--out", str(tmp_path)]) == 0
    config = load_config_from_file(str(tmp_path / "accelerate.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    assert (config.num_processes, config.mixed_precision) == (1, "bf16")
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_reshard_after_forward"] is True
    assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer,CLIPEncoderLayer"
    out = capsys.readouterr().out
    names = [line.split("]")[0].strip("[") for line in out.splitlines() if line.startswith("[")]
    assert names == ["build", "score", "trl", "unprior", "pairs_hf", "pairs_vllm"]
    launched = [line for line in out.splitlines() if "accelerate.commands.launch" in line]
    assert [line.split("]")[0] for line in launched] == ["[trl", "[unprior"]
    assert all(f"--config_file {tmp_path / 'accelerate.yaml'}" in line for line in launched)


def test_zero3_config(tmp_path):
    assert gpu_bench.main(["--dry-run", "--engine", "zero3", "--out", str(tmp_path)]) == 0
    config = load_config_from_file(str(tmp_path / "accelerate.yaml"))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 3


def test_pairs_configs_load_and_validate(tmp_path):
    from unprior.config import load_config
    from unprior.pairs.config import PairsConfig

    gpu_bench.main(["--dry-run", "--out", str(tmp_path), "--prompts", "16", "--max-new-tokens", "32"])
    for backend in ("hf", "vllm"):
        cfg = load_config(PairsConfig, tmp_path / f"pairs-{backend}.yaml")
        cfg.validate()
        assert (cfg.generator.backend, cfg.strategies, cfg.generator.batch_size) == (backend, ["vision_bias"], 16)
        assert (cfg.vision_bias.decoding.num_beams, cfg.vision_bias.decoding.max_new_tokens) == (1, 32)


@pytest.mark.parametrize("argv", [["--steps", "3", "--warmup", "2"], ["--warmup", "0"], ["--engine", "ddp"],
                                  ["--negatives", "5"], ["--rows-per-step", "0"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as exit_:
        gpu_bench.parse_args(argv)
    assert exit_.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_refuses_to_run(tmp_path, capsys):
    assert gpu_bench.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_sh_dry_run(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "distributed_type: FSDP" in proc.stdout


def test_the_7b_shape_is_llava_1_5_7b():
    from unprior.models.tiny import family_tokenizer

    shape = shapes.PRESETS["llava15_7b"]
    model, _ = shapes.build_model(shape, family_tokenizer("llava", shapes.WORDS), device="meta", dtype="bfloat16")
    assert abs(sum(p.numel() for p in model.parameters()) - 7_063_427_072) < 1e6  # llava-hf/llava-1.5-7b-hf
    layers = {type(m).__name__ for m in model.modules()}
    assert set(gpu_bench.WRAP.split(",")) <= layers


def test_flops_are_counted_by_hand():
    tiny = shapes.Shape("llava", image_tokens=4, text_hidden=2, text_layers=1, text_intermediate=4, vocab=10,
                        vision_hidden=2, vision_layers=1, vision_intermediate=4)
    # linear 2·1·(4·2² + 3·2·4) = 80 per token × 3; attention 4·1·2·(0 + 3·4/2) = 48; head 2·2·10·1 = 40.
    assert gpu_bench.lm_flops(tiny, 3, 0, 1) == 80 * 3 + 48 + 40
    # continuation of 2 tokens after 5: attention context 2·5 + 3 = 13 -> 4·2·13 = 104.
    assert gpu_bench.lm_flops(tiny, 2, 5, 0) == 80 * 2 + 104
    # vision: 5 tokens × 2·(4·4 + 2·2·4) = 64 each; attention 4·2·25 = 200; projector 2·4·(2·2 + 4) = 64.
    assert gpu_bench.vision_flops(tiny) == 5 * 64 + 200 + 64
    seq, vis = gpu_bench.lm_flops(tiny, 7, 0, 3), gpu_bench.vision_flops(tiny)
    assert gpu_bench.flops_per_pair(tiny, "trl", 4, 3, 2) == 2 * (2 * seq + vis) + 2 * (seq + vis)
    row = 2 * gpu_bench.lm_flops(tiny, 3, 0, 0) + vis + 3 * 2 * gpu_bench.lm_flops(tiny, 4, 3, 3)
    assert math.isclose(gpu_bench.flops_per_pair(tiny, "unprior", 4, 3, 2), row / 2)


def test_known_gpus_have_a_peak():
    args = gpu_bench.parse_args([])
    assert gpu_bench.peak_tflops(args, "NVIDIA H200") == 989.4
    assert gpu_bench.peak_tflops(args, "NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.peak_tflops(args, "NVIDIA L40S") == 362.0
    assert gpu_bench.peak_tflops(args, "Some GPU") is None
    assert gpu_bench.peak_tflops(gpu_bench.parse_args(["--peak-tflops", "100"]), "Some GPU") == 100


@pytest.mark.slow
def test_smoke_run_goes_through_every_step(tmp_path):
    argv = ["--smoke", "--out", str(tmp_path), "--steps", "4", "--warmup", "1", "--prompts", "4",
            "--max-new-tokens", "8"]
    assert gpu_bench.main(argv) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| trl |" in summary and "| unprior |" in summary and "unprior pairs, hf" in summary
    for side in ("trl", "unprior"):
        line = next(line for line in summary.splitlines() if line.startswith(f"| {side} |"))
        assert line.rstrip(" |").endswith("0.6931")
