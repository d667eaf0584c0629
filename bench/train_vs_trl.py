"""Benchmark: ``unprior train`` against TRL 1.16's DPOTrainer on the same model, pairs, batch and sigmoid loss.

Usage::

    python bench/train_vs_trl.py                      # tiny and small LLaVA, batch 8, 30 steps, 3 repetitions
    python bench/train_vs_trl.py --sizes tiny --steps 20 --repeats 1

Every measurement runs in its own process, one after the other, alternating the sides within each repetition (so
machine load hits both alike), all with one torch thread. Each worker imports the same libraries (torch,
transformers, trl, datasets, unprior) before its baseline, so the memory numbers compare training, not imports.

- pairs/s: ``batch × steps / wall time`` of the steady steps (the first ``--warmup`` steps are excluded); the wall
  time covers everything a step does (data, collation, forward, backward, optimizer).
- peak memory: the process's peak resident memory minus its resident memory after imports (the training's own peak:
  model, reference, optimizer state, activations, data); the process totals are printed too.
- peak RSS increase during training: the peak resident memory from the moment the model(s) and data are loaded (TRL:
  its ``on_train_begin`` callback, after the policy, its reference copy and the dataset are set up; unprior: after
  ``setup``) to the end, minus the resident memory at that moment. The peak is reset there (Linux
  ``/proc/self/clear_refs``, then ``VmHWM``), so it is the training loop's own peak, not the loading's. Fixed library
  and model costs that dominate the RSS of a 150k-parameter model drop out; optimizer state, activations, autograd
  buffers and batches stay. Printed below the table: how much of it comes during the first step (first-call library
  state, lazily allocated optimizer state) and the peak increase over the remaining steps, from the end of step 1
  (TRL's ``on_step_end``; unprior: right after its first optimizer step), reset the same way.
- peak tensor memory: a separate, shorter run under ``torch.profiler`` (``profile_memory=True``) from before model
  loading to the end of training; the peak of live tensor bytes (the CPU analogue of
  ``torch.cuda.max_memory_allocated``). Only tensors: no allocator caches or library state.
- step-0 loss: both sides must log the same first loss (log 2 = 0.693147: policy equals reference).

TRL's fused LM head allocates a (tokens × 32768) tile whatever the vocabulary size; with the 400-token vocabulary of
these models that is an 80× over-allocation, so the TRL workers size the tile to the vocabulary (as it effectively
is for real 32k vocabularies). Without that, TRL's tensor peak would be about 14× ours on the tiny model.

Both sides do full fine-tuning of every parameter in fp32, AdamW, cosine schedule without warm-up, clipping at 1.0,
no activation checkpointing (TRL's default is on, which would slow it down 1.75×). TRL runs its
reference forward every step (it refuses precomputed reference log-probs for vision data); unprior reads them from
the ``unprior score`` cache, which is filled once beforehand (its cost is reported on its own line). "unprior
(naive)" is unprior with the shared prefix switched off, to separate the two savings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = {
    "tiny": dict(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, text_hidden=64, text_layers=2),
    "small": dict(image_size=64, patch_size=8, vision_hidden=64, vision_layers=2, text_hidden=128, text_layers=4),
}
"""The timing models: 16 and 64 image tokens."""
SIDES = ("trl", "unprior", "unprior_naive")
PROMPT = "Describe the image."


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak since the last reset) from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


LOADED: dict[str, float] = {}


def mark_loaded() -> None:
    """Called once the model(s) and data are loaded, right before the training loop: remember the resident memory
    and the peak so far, then reset the peak so the end of the run reads the training loop's own peak."""
    LOADED["at"] = time.perf_counter()
    LOADED["peak_before_mb"] = rss_mb()
    LOADED["rss_mb"] = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (and ru_maxrss) to the current RSS


def mark_first_step() -> None:
    """Called at the end of the first optimizer step: the peak since loading so far, the resident memory now, and a
    fresh peak, so the rest of the run gives the steady steps' own increase (first-call library state excluded)."""
    if "step1_rss_mb" in LOADED or "rss_mb" not in LOADED:
        return
    LOADED["step1_hwm_mb"] = status_mb("VmHWM")
    LOADED["step1_rss_mb"] = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")


def heavy_imports() -> None:
    """Import everything either side needs, before the memory baseline."""
    import datasets  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import unprior.score.reference
    import unprior.train.trainer  # noqa: F401


# ----------------------------------------------------------------------------------------------------- data


def build(size: str, root: Path, n_rows: int) -> tuple[Path, Path]:
    """A random tiny LLaVA of ``size`` and ``n_rows`` pairs (embedded images, one error_injection negative)."""
    import numpy as np
    from PIL import Image

    from unprior.formats.pairs import Negative, PairRow, write_pairs
    from unprior.models.tiny import build_tiny_llava, save_model
    from unprior.models.tokenizer import train_tokenizer

    colours = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan"]
    objects = ["apple", "banana", "frog", "bear", "crow", "whale", "pig", "grape"]
    rng = np.random.default_rng(0)
    rows, corpus = [], [PROMPT]
    for i in range(n_rows):
        c, o, x = (rng.integers(8) for _ in range(3))
        chosen = f"A {colours[c]} {objects[o]} and a {colours[x]} {objects[(o + 1) % 8]}."
        rejected = f"A {colours[(c + 1) % 8]} {objects[o]} and a {colours[x]} {objects[(o + 1) % 8]}."
        pixels = (rng.random((SIZES[size]["image_size"],) * 2 + (3,)) * 255).astype("uint8")
        buf = __import__("io").BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        rows.append(PairRow(f"r{i}", buf.getvalue(), PROMPT, chosen, [Negative(rejected, "error_injection")]))
        corpus += [chosen, rejected]
    model, processor = build_tiny_llava(train_tokenizer(corpus), **SIZES[size])
    save_model(model, processor, root / "model")
    write_pairs(rows, root / "pairs.parquet")
    return root / "model", root / "pairs.parquet"


def trl_dataset(pairs: Path):
    from datasets import Dataset, Features, Image, Value

    from unprior.formats.pairs import read_pairs

    rows = [
        {
            "images": [{"bytes": r.image, "path": None}],
            "prompt": [{"role": "user", "content": r.prompt}],
            "chosen": [{"role": "assistant", "content": r.chosen}],
            "rejected": [{"role": "assistant", "content": r.negatives[0].text}],
        }
        for r in read_pairs(pairs)
    ]
    message = [{"role": Value("string"), "content": Value("string")}]
    features = Features({"images": [Image()], "prompt": message, "chosen": message, "rejected": message})
    return Dataset.from_list(rows, features=features)


# ----------------------------------------------------------------------------------------------------- workers


def run_trl(args: argparse.Namespace) -> dict:
    import trl.trainer.utils
    from transformers import AutoConfig, AutoProcessor, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    # TRL's fused LM head allocates a (tokens × 32768) float tile whatever the vocabulary; at our 400-token vocabulary
    # that is an 80× over-allocation that would flatter us. Size the tile to the vocabulary, as it effectively is
    # for real 32k-vocabulary models (only its width changes; the arithmetic is the same).
    vocab = AutoConfig.from_pretrained(args.model).text_config.vocab_size
    trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE = min(trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE, vocab)

    stamps: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            mark_loaded()  # policy, reference copy, dataset, optimizer and dataloader are set up

        def on_step_end(self, *_, **__):
            stamps.append(time.perf_counter())
            mark_first_step()

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    config = DPOConfig(
        output_dir=str(args.work / "trl-out"), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0, max_grad_norm=1.0, beta=0.1,
        loss_type=["sigmoid"], bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=1, dataloader_num_workers=0, seed=0,  # TRL's default optim: fused AdamW
    )
    processor = AutoProcessor.from_pretrained(args.model)
    trainer = DPOTrainer(model=str(args.model), args=config, train_dataset=trl_dataset(args.pairs),
                         processing_class=processor, callbacks=[Clock()])
    trainer.train()
    return {"stamps": stamps, "losses": losses}


def run_unprior(args: argparse.Namespace, method: str) -> dict:
    from unprior.losses import objective_preset
    from unprior.train.config import LoraSettings, TrainConfig
    from unprior.train.trainer import setup, train

    out = args.work / f"{method}-out"
    cfg = TrainConfig(
        model=str(args.model), pairs=str(args.pairs), out=str(out), overwrite=True, objective=objective_preset("dpo"),
        max_length=1024, batch_size=args.batch, steps=args.steps, lr=args.lr, warmup_ratio=0.0, max_grad_norm=1.0,
        lora=LoraSettings(enabled=False), train_vision=True, method=method, reference_dir=str(args.work / "ref"),
    )
    cfg.validate()
    import unprior.train.trainer as trainer

    run = setup(cfg)
    mark_loaded()  # policy, cached reference values, data and optimizer are set up
    log_metrics = trainer._log_metrics

    def logged(*a, **k):  # runs right after each optimizer step, as TRL's on_step_end
        mark_first_step()
        return log_metrics(*a, **k)

    trainer._log_metrics = logged
    train(run)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"seconds": [m["seconds"] for m in logged], "losses": [m["loss"] for m in logged]}


def run_score(args: argparse.Namespace) -> dict:
    from unprior.score.config import ScoreConfig
    from unprior.score.reference import ensure_reference

    start = time.perf_counter()
    ensure_reference(ScoreConfig(model=str(args.model), pairs=str(args.pairs), max_length=1024, overwrite=True,
                                 reference_dir=str(args.work / "ref"), batch_size=args.batch), log=lambda _: None)
    return {"seconds": time.perf_counter() - start}


def run_side(args: argparse.Namespace) -> dict:
    if args.side == "trl":
        return run_trl(args)
    if args.side == "score":
        return run_score(args)
    return run_unprior(args, "naive" if args.side == "unprior_naive" else "prefix")


def tensor_peak_mb(prof) -> float:
    """Peak of live tensor bytes allocated inside the profiled region (CPU allocator events, in time order)."""
    events = prof.profiler.kineto_results.events()
    events = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def worker(args: argparse.Namespace) -> None:
    """One measurement in a fresh process: a timed run (RSS), or a profiled run (peak tensor memory)."""
    import torch

    torch.set_num_threads(1)
    heavy_imports()
    baseline = rss_mb()
    if not args.profile:
        result = run_side(args)
        end_peak = status_mb("VmHWM")
        train_peak = max(LOADED.get("step1_hwm_mb", 0.0), end_peak)
        result |= {"baseline_mb": baseline, "peak_mb": max(LOADED.get("peak_before_mb", 0.0), train_peak),
                   "loaded_mb": LOADED.get("rss_mb"), "train_hwm_mb": train_peak,
                   "step1_rss_mb": LOADED.get("step1_rss_mb"), "steady_hwm_mb": end_peak}
        print("RESULT " + json.dumps(result))
        return
    from torch.profiler import ProfilerActivity, profile

    import unprior.train.trainer as trainer
    from unprior.train.data import Prefetcher

    # The profiler sees the calling thread only: encode batches there (no prefetch thread) for this run.
    trainer.prefetched = lambda data, plan: Prefetcher(data, plan, threaded=False)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run_side(args)  # model loading, the reference model (TRL), optimizer state and activations all count
    print("RESULT " + json.dumps({"tensor_peak_mb": tensor_peak_mb(prof)}))


# ----------------------------------------------------------------------------------------------------- driver


def spawn(side: str, args: argparse.Namespace, model: Path, pairs: Path, work: Path, profile: bool = False) -> dict:
    steps = args.profile_steps if profile else args.steps
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(model), "--pairs", str(pairs),
           "--work", str(work), "--batch", str(args.batch), "--steps", str(steps), "--lr", str(args.lr)]
    cmd += ["--profile"] if profile else []
    return run_worker(side, cmd)


def run_worker(side: str, cmd: list[str]) -> dict:
    """Run a worker command in a fresh process (one torch thread, offline); its last ``RESULT`` line, parsed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{side} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def pairs_per_second(result: dict, side: str, args: argparse.Namespace) -> float:
    times = result["stamps"] if side == "trl" else result["seconds"]
    steady = times[args.warmup - 1 :]
    return args.batch * (len(steady) - 1) / (steady[-1] - steady[0])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (both sides)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps excluded from the timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=256, help="pairs in the dataset")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/unprior-bench"))
    parser.add_argument("--profile-steps", type=int, default=6, help="steps of the profiled (memory) run")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.side = args.worker
        worker(args)
        return
    print(f"device: CPU, {cpu_name()}, {os.cpu_count()} cores, 1 torch thread per process; "
          f"python {platform.python_version()}")
    raw: dict[str, dict] = {}
    for size in args.sizes:
        work = args.work / size
        work.mkdir(parents=True, exist_ok=True)
        model, pairs = build(size, work, args.rows)
        score = spawn("score", args, model, pairs, work)
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for _ in range(args.repeats):
            for side in SIDES:
                results[side].append(spawn(side, args, model, pairs, work))
        memory = {side: spawn(side, args, model, pairs, work, profile=True) for side in SIDES}
        raw[size] = {"score": score, "memory": memory, **results}
        report(size, args, results, memory, score)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))


def report(size: str, args: argparse.Namespace, results: dict[str, list[dict]], memory: dict[str, dict],
           score: dict) -> None:
    rows = {}
    for side, runs in results.items():
        rows[side] = {
            "pairs_s": statistics.median(pairs_per_second(r, side, args) for r in runs),
            "tensor_mb": memory[side]["tensor_peak_mb"],
            "train_mb": statistics.median(r["peak_mb"] - r["baseline_mb"] for r in runs),
            "increase_mb": statistics.median(r["train_hwm_mb"] - r["loaded_mb"] for r in runs),
            "steady_mb": statistics.median(r["steady_hwm_mb"] - r["step1_rss_mb"] for r in runs),
            "step1_mb": statistics.median(r["step1_rss_mb"] - r["loaded_mb"] for r in runs),
            "loaded_mb": statistics.median(r["loaded_mb"] for r in runs),
            "peak_mb": statistics.median(r["peak_mb"] for r in runs),
            "spread": [round(pairs_per_second(r, side, args), 1) for r in runs],
            "loss0": runs[0]["losses"][0],
        }
    trl = rows["trl"]
    print(f"\n{size} LLaVA, batch {args.batch} pairs, {args.steps} steps ({args.warmup} warm-up), "
          f"median of {args.repeats}; tensor peak from a {args.profile_steps}-step profiled run")
    print("| side | pairs/s | × TRL | peak tensor memory (MB) | × TRL | training peak RSS (MB) | × TRL | "
          "RSS increase during training (MB) | × TRL | RSS after loading (MB) | process peak RSS (MB) | step-0 loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for side, r in rows.items():
        print(f"| {side} | {r['pairs_s']:.1f} | {r['pairs_s'] / trl['pairs_s']:.2f} | {r['tensor_mb']:.1f} | "
              f"{r['tensor_mb'] / trl['tensor_mb']:.2f} | {r['train_mb']:.0f} | "
              f"{r['train_mb'] / trl['train_mb']:.2f} | {r['increase_mb']:.1f} | "
              f"{r['increase_mb'] / trl['increase_mb']:.2f} | {r['loaded_mb']:.0f} | "
              f"{r['peak_mb']:.0f} | {r['loss0']:.6f} |")
    for side, r in rows.items():
        ratios = [round(v / t, 2) for v, t in zip(r["spread"], rows["trl"]["spread"], strict=True)]
        print(f"pairs/s per repetition, {side}: {r['spread']} (× TRL in the same repetition: {ratios})")
    for side, r in rows.items():
        print(f"RSS, {side}: +{r['step1_mb']:.1f} MB during the first step, then a peak of +{r['steady_mb']:.1f} MB "
              f"over the rest ({r['steady_mb'] / trl['steady_mb']:.2f} × TRL)")
    print(f"one-time reference scoring (unprior score, {args.rows} pairs): {score['seconds']:.2f} s, "
          f"{args.rows / score['seconds']:.0f} pairs/s")
    assert abs(rows["unprior"]["loss0"] - trl["loss0"]) < 1e-4, "step-0 losses differ"


if __name__ == "__main__":
    main()
