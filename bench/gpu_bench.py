"""bench/gpu.sh: unprior against TRL's DPOTrainer on a random-weight 7B LLaVA-1.5 in bf16, FSDP2 (or DeepSpeed
ZeRO-3) through accelerate on one CUDA GPU; then ``unprior pairs`` with the vllm and the hf backend on that model.

    bench/gpu.sh                     # everything, one GPU, about 5–7 minutes (--budget-s caps it)
    bench/gpu.sh --dry-run           # no GPU needed: write the accelerate config and print the plan
    bench/gpu.sh --engine zero3      # DeepSpeed ZeRO-3 instead of FSDP2 (needs the deepspeed package)
    bench/gpu.sh --smoke             # CPU: a tiny model through every step, no engine (tests the plumbing)

Steps (each its own process, bench/gpu_workers.py): build the model (LLaVA-1.5-7B's shape, bench/shapes.py,
random weights, saved in bf16) and ``--rows`` pairs of ``--negatives`` negatives (336 px images, answers of 100–200
tokens); fill unprior's reference cache on the GPU (timed once); train TRL, then unprior, ``--steps`` steps of
``--rows-per-step`` rows (``rows × negatives`` pairs) under ``accelerate launch --config_file OUT/accelerate.yaml``;
generate ``vision_bias`` negatives for ``--prompts`` prompts with ``generator.backend=hf`` and ``=vllm`` (skipped,
with the reason, when vllm is not installed). Results: stdout, ``OUT/results.json``, ``OUT/summary.md``.

**MFU** is model FLOPs per second over the GPU's peak dense bf16 FLOPs (``--peak-tflops``, or a table of known
GPUs). Model FLOPs count what each side runs, from the mean prompt and answer lengths: per token 2 FLOPs per weight
of the decoder's linear layers, attention ``4·layers·width·context``, the LM head (``2·width·vocabulary``) at scored
positions only, the vision tower and projector once per image; the backward is counted as one more forward for the
language model (LoRA: activation gradients only; the vision side gets none); activation recomputation is not
counted (MFU, not hardware FLOPs). TRL: two full sequences per pair, trained, plus the reference forward on both;
unprior: each row's prompt once, then each response continuing from it, trained.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shapes
import yaml

HERE = Path(__file__).resolve().parent
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H800", 989.4),
                    ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0))
"""Dense bf16 tensor-core peak (TFLOPS) by device-name substring, first match wins."""
WRAP = "LlamaDecoderLayer,CLIPEncoderLayer"


@dataclass
class Step:
    name: str
    cmd: list[str]
    needs: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/unprior-gpu"))
    p.add_argument("--engine", choices=("fsdp", "zero3"), default="fsdp")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="steps excluded from the timing")
    p.add_argument("--rows-per-step", type=int, default=2)
    p.add_argument("--negatives", type=int, default=2, choices=(1, 2, 3, 4))
    p.add_argument("--prompts", type=int, default=64, help="prompts of the pairs-generation comparison")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak (0: from the table)")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of all steps together")
    p.add_argument("--skip-pairs", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="write the accelerate config, print the plan, exit")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, no engine: the plumbing only")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps <= args.warmup + 1:
        p.error(f"--steps must exceed --warmup + 1 (≥ 2 timed steps) and --warmup be ≥ 1, got {args.steps}, "
                f"{args.warmup}")
    if args.rows_per_step < 1 or args.prompts < 1 or args.budget_s <= 0:
        p.error("--rows-per-step, --prompts and --budget-s must be positive")
    args.shape = "smoke" if args.smoke else "llava15_7b"
    args.rows = args.rows_per_step * args.steps
    return args


def ok(result: dict | None) -> bool:
    return result is not None and "error" not in result and "skipped" not in result


def accelerate_config(args: argparse.Namespace) -> dict:
    """The ``accelerate launch --config_file`` contents: one process, bf16, FSDP2 full sharding wrapped per
    decoder / vision layer, or DeepSpeed ZeRO-3."""
    base = {"compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0, "num_processes": 1,
            "mixed_precision": "bf16", "use_cpu": False, "rdzv_backend": "static", "same_network": True,
            "main_training_function": "main", "downcast_bf16": "no"}
    if args.engine == "zero3":
        return base | {"distributed_type": "DEEPSPEED", "deepspeed_config": {
            "zero_stage": 3, "offload_optimizer_device": "none", "offload_param_device": "none",
            "zero3_init_flag": False, "zero3_save_16bit_model": True, "gradient_accumulation_steps": 1,
            "gradient_clipping": 1.0}}
    fsdp = {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": WRAP, "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": False, "fsdp_activation_checkpointing": False}
    return base | {"distributed_type": "FSDP", "fsdp_config": fsdp}


def pairs_config(args: argparse.Namespace, backend: str, paths: dict[str, str]) -> dict:
    """``unprior pairs`` config: NaPO's vision_bias answers (greedy, one beam) from the model, one backend."""
    generator = {"backend": backend, "model": paths["model"], "batch_size": args.prompts}
    if backend == "vllm":
        generator["engine_args"] = {"max_model_len": 2048, "enforce_eager": True, "gpu_memory_utilization": 0.85,
                                    "limit_mm_per_prompt": {"image": 1}}
    return {"source": paths["source"], "out": str(args.out / f"pairs-{backend}"), "strategies": ["vision_bias"],
            "vision_bias": {"decoding": {"num_beams": 1, "max_new_tokens": args.max_new_tokens}},
            "generator": generator, "overwrite": True, "progress": False, "part_size": args.prompts}


def paths_of(args: argparse.Namespace) -> dict[str, str]:
    work = args.out / "work"
    return {"work": str(work), "model": str(work / "model"), "pairs": str(work / "pairs.parquet"),
            "source": str(work / "source"), "reference": str(work / "reference")}


def plan(args: argparse.Namespace) -> list[Step]:
    paths = paths_of(args)
    common = {"shape": args.shape, "negatives": args.negatives, "rows": args.rows, "prompts": args.prompts,
              "rows_per_step": args.rows_per_step, "steps": args.steps, **paths}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(args.out / "accelerate.yaml")]

    def job(name: str) -> list[str]:
        script = [str(HERE / "gpu_workers.py"), name, "--json", json.dumps(common)]
        return [*launch, *script] if name in ("trl", "unprior") and not args.smoke else [sys.executable, *script]

    steps = [Step("build", job("build")), Step("score", job("score"), ["build"]), Step("trl", job("trl"), ["build"]),
             Step("unprior", job("unprior"), ["score"])]
    if not args.skip_pairs:
        for backend in ("hf", "vllm"):
            cfg = args.out / f"pairs-{backend}.yaml"
            steps.append(Step(f"pairs_{backend}", [sys.executable, "-m", "unprior", "pairs", "--config", str(cfg)],
                              ["build"]))
    return steps


def write_configs(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accelerate.yaml").write_text(yaml.safe_dump(accelerate_config(args), sort_keys=False))
    for backend in ("hf", "vllm"):
        (args.out / f"pairs-{backend}.yaml").write_text(yaml.safe_dump(pairs_config(args, backend, paths_of(args))))


def skip_reason(step: Step, args: argparse.Namespace, done: dict[str, dict]) -> str | None:
    failed = [n for n in step.needs if not ok(done.get(n))]
    if failed:
        return f"needs {', '.join(failed)}, which did not finish"
    if step.name == "pairs_vllm" and importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm, on the GPU machine); the hf backend ran alone"
    if step.name in ("trl", "unprior") and args.engine == "zero3" and importlib.util.find_spec("deepspeed") is None:
        return "--engine zero3 needs the deepspeed package (pip install deepspeed)"
    return None


def run_step(step: Step, seconds_left: float) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(step.cmd, env=env, capture_output=True, text=True, timeout=max(1.0, seconds_left))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {seconds_left:.0f} s (--budget-s)", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}", "wall_s": wall}
    return (json.loads(lines[-1].removeprefix("RESULT ")) if lines else {}) | {"wall_s": wall}


# ----------------------------------------------------------------------------------------------------- numbers


def lm_flops(shape: shapes.Shape, tokens: int, context_start: int, scored: int) -> float:
    """Forward FLOPs of the language model on ``tokens`` tokens attending to ``context_start`` earlier ones and
    themselves (causal), with the LM head at ``scored`` positions."""
    h, layers = shape.text_hidden, shape.text_layers
    linear = 2 * layers * (4 * h * h + 3 * h * (shape.text_intermediate or 4 * h))
    context = tokens * context_start + tokens * (tokens + 1) / 2
    return linear * tokens + 4 * layers * h * context + 2 * h * shape.vocab * scored


def vision_flops(shape: shapes.Shape) -> float:
    """Forward FLOPs of the vision tower (image tokens + CLS, full attention) and the two-layer projector."""
    h, layers, n = shape.vision_hidden, shape.vision_layers, shape.image_tokens + 1
    per_token = 2 * layers * (4 * h * h + 2 * h * (shape.vision_intermediate or 4 * h))
    projector = 2 * shape.image_tokens * (h * shape.text_hidden + shape.text_hidden**2)
    return per_token * n + 4 * layers * h * n * n + projector


def flops_per_pair(shape: shapes.Shape, side: str, prompt: float, answer: float, negatives: int) -> float:
    """Model FLOPs per (chosen, rejected) pair (module docstring): trained LM parts count twice (forward + backward),
    the vision side and TRL's reference forward once."""
    p, r = round(prompt), round(answer)
    if side == "trl":
        sequence = lm_flops(shape, p + r, 0, r)
        return 2 * (2 * sequence + vision_flops(shape)) + 2 * (sequence + vision_flops(shape))
    row = 2 * lm_flops(shape, p - 1, 0, 0) + vision_flops(shape)
    row += (negatives + 1) * 2 * lm_flops(shape, r + 1, p - 1, r)
    return row / negatives


def peak_tflops(args: argparse.Namespace, device: str) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    return next((value for key, value in PEAK_BF16_TFLOPS if key in device), None)


def side_numbers(result: dict, args: argparse.Namespace, shape: shapes.Shape, lengths: dict, peak: float | None,
                 side: str) -> dict:
    stamps = result["stamps"][args.warmup - 1 :]
    pairs_s = args.rows_per_step * args.negatives * (len(stamps) - 1) / (stamps[-1] - stamps[0])
    flops = flops_per_pair(shape, side, lengths["prompt"], lengths["answer"], args.negatives)
    mfu = flops * pairs_s / (peak * 1e12) if peak else None
    return {"pairs_s": pairs_s, "tflops_per_pair": flops / 1e12, "mfu": mfu, "loss0": result["losses"][0],
            **result.get("memory", {}), "wall_s": result["wall_s"]}


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA device)"


def pairs_numbers(result: dict, args: argparse.Namespace, backend: str) -> dict:
    summaries = sorted((args.out / f"pairs-{backend}").glob("*/summary.json"))
    seconds = json.loads(summaries[-1].read_text())["seconds_this_run"] if summaries else None
    return {"wall_s": result["wall_s"], "seconds_this_run": seconds,
            "prompts_s": args.prompts / seconds if seconds else None}


def summary(args: argparse.Namespace, done: dict[str, dict], device: str) -> str:
    """The markdown report: the training table, the one-time costs, the pairs backends, and what did not run."""
    shape = shapes.PRESETS[args.shape]
    lengths, peak = done.get("build", {}).get("lengths", {}), peak_tflops(args, device)
    engine = f"engine: {args.engine} (accelerate, 1 process), bf16"
    engine = "smoke run: CPU, fp32, no engine" if args.smoke else engine
    lines = [f"GPU: {device}; {engine}, LoRA r 32, activation checkpointing; {args.rows_per_step} rows × "
             f"{args.negatives} negatives = "
             f"{args.rows_per_step * args.negatives} pairs per step, {args.steps} steps ({args.warmup} warm-up); "
             f"peak {peak or '?'} TFLOPS bf16", "",
             "| side | pairs/s | × TRL | TFLOP per pair | MFU | GPU memory after loading (GiB) | training peak (GiB) "
             "| × TRL | step-0 loss |", "|---|---|---|---|---|---|---|---|---|"]
    rows = {s: side_numbers(done[s], args, shape, lengths, peak, s) for s in ("trl", "unprior") if ok(done.get(s))}
    base = rows.get("trl", {})
    for side, r in rows.items():
        ratio = f"{r['pairs_s'] / base['pairs_s']:.2f}" if base else "–"
        mem = r.get("train_peak_gib")
        mem_ratio = f"{mem / base['train_peak_gib']:.2f}" if base.get("train_peak_gib") and mem else "–"
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        lines.append(f"| {side} | {r['pairs_s']:.2f} | {ratio} | {r['tflops_per_pair']:.1f} | {mfu} | "
                     f"{r.get('loaded_gib', 0):.1f} | {mem or 0:.1f} | {mem_ratio} | {r['loss0']:.4f} |")
    lines.append("")
    for name in ("build", "score"):
        if ok(done.get(name)):
            lines.append(f"- {name}: {done[name].get('seconds', done[name]['wall_s']):.1f} s")
    for backend in ("hf", "vllm"):
        r = done.get(f"pairs_{backend}")
        if ok(r):
            p = pairs_numbers(r, args, backend)
            lines.append(f"- unprior pairs, {backend}: {args.prompts} prompts × ≤ {args.max_new_tokens} new tokens in "
                         f"{p['seconds_this_run'] or 0:.1f} s (process {p['wall_s']:.1f} s, model loading included)")
    lines += [f"- {name}: {r.get('skipped') or r['error'][-300:]}" for name, r in done.items()
              if "skipped" in r or "error" in r]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = device_name()
    write_configs(args)
    steps = plan(args)
    if args.dry_run:
        print(f"device: {device}; vllm {'found' if importlib.util.find_spec('vllm') else 'not installed'}; "
              f"deepspeed {'found' if importlib.util.find_spec('deepspeed') else 'not installed'}")
        print(f"accelerate config: {args.out / 'accelerate.yaml'}\n" + (args.out / "accelerate.yaml").read_text())
        for step in steps:
            print(f"[{step.name}] " + " ".join(step.cmd))
        return 0
    if not args.smoke and device.startswith("CPU"):
        print(f"no CUDA device ({device}): run with --dry-run or --smoke, or on a GPU machine", file=sys.stderr)
        return 2
    done: dict[str, dict] = {}
    deadline = time.perf_counter() + args.budget_s
    for step in steps:
        reason = skip_reason(step, args, done)
        done[step.name] = {"skipped": reason} if reason else run_step(step, deadline - time.perf_counter())
        print(f"[{step.name}] {json.dumps(done[step.name])[:300]}", flush=True)
    report = summary(args, done, device)
    (args.out / "results.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "device": device,
                                                       "steps": done}, indent=1, default=str))
    (args.out / "summary.md").write_text(report + "\n")
    print("\n" + report)
    return 0 if all("error" not in r for r in done.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
