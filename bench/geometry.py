"""``unprior train`` against TRL 1.16's DPOTrainer at real VLM geometry (bench/shapes.py), on CPU.

Usage::

    python bench/geometry.py --preset llava15 --negatives 2 3     # trl + unprior 3×, trl_fused + naive once
    python bench/geometry.py --preset qwen2vl --negatives 2 --steps 4 --once trl_fused unprior_plain_head

Sides: ``trl`` (DPOTrainer, plain LM head, the baseline), ``trl_fused`` (DPOTrainer's own fused head),
``trl_shipped`` (DPOTrainer as shipped on CPU), ``unprior`` (shared prefix, cached reference), ``unprior_naive``
(cached reference, prompt repeated per response), ``unprior_plain_head`` (``unprior`` with the LM head called as a
module and a ``log_softmax`` + gather, the path :func:`unprior.forward.logps.head_logps` takes for heads it cannot
tile).

Per configuration (a preset with a number of negatives per row): one shared model and pairs file, the reference
cache filled once (``unprior score``, timed on its own), then ``--repeats`` repetitions, each running every side in
its own process, one after the other (so machine load hits all sides alike), one torch thread each, then one
profiled run per side for the peak tensor memory. What is measured is described in bench/train_vs_trl.py; here:

- **The same loss on both sides.** A row has a chosen answer and ``K`` negatives of different kinds. TRL's
  DPOTrainer is pairwise, so it gets ``K`` rows (chosen, negative k) per row, and a step of ``R`` rows is ``R·K``
  pairs on both sides. unprior's objective is DPO (β 0.1) on each kind with weight ``1/K``: per step, the mean over
  the same ``R·K`` pairs of the sigmoid loss TRL computes. Step-0 losses must both be log 2.
- **pairs/s** counts (chosen, rejected) pairs: ``R·K`` per step.
- **TRL's LM head** (sides ``trl`` and ``trl_fused``). TRL 1.16 projects only the completion positions through
  the LM head, and folds the ``(tokens × vocabulary)`` tiles into log-probs in one Triton pass, when Triton runs the
  kernel (CUDA, XPU). On CPU it projects every position, prompt and padding included, and folds each tile with
  about fifteen torch passes over it: costs a GPU user never pays. So both TRL sides score the completion positions
  only (``trl.trainer.utils._use_triton`` answers True for that decision), and ``trl`` also replaces the kernel by a
  plain head: ``log_softmax(hidden @ W.T)`` gathered at the labels, its logged-only outputs (entropy, mean logit,
  top-1) left at 0: the cheapest head that gives the loss. ``trl`` is the baseline of the pairs/s ratios (the
  least favourable to us); ``trl_fused`` is TRL's own kernel (its memory behaviour: no ``(tokens × vocabulary)``
  logits kept for backward). Memory ratios are printed against both. ``trl_shipped`` is TRL as shipped on CPU.
- **Phases** (printed below the table): wall milliseconds per steady step inside the vision tower (+ projector),
  the language decoder, the LM head + log-softmax (TRL's fused kernel; unprior's ``head_logps``), each
  with and without gradient (TRL's reference forward is the no-grad part), ``backward``, the optimizer step, and
  the rest (data, collation, loss, metrics, framework), from hooks around those calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import phases
import shapes
from train_vs_trl import (
    LOADED,
    cpu_name,
    heavy_imports,
    mark_first_step,
    mark_loaded,
    rss_mb,
    run_worker,
    status_mb,
    tensor_peak_mb,
)

SIDES = ("trl", "trl_fused", "trl_shipped", "unprior", "unprior_naive", "unprior_plain_head")
TRL_SIDES = ("trl", "trl_fused", "trl_shipped")


# ----------------------------------------------------------------------------------------------------- workers


def trl_dataset(pairs: Path):
    """One TRL row per (chosen, negative) pair of every row, images embedded."""
    from datasets import Dataset, Features, Image, Value

    from unprior.formats.pairs import read_pairs

    def turn(role: str, text: str) -> list[dict]:
        return [{"role": role, "content": text}]

    rows = [{"images": [{"bytes": r.image, "path": None}], "prompt": turn("user", r.prompt),
             "chosen": turn("assistant", r.chosen), "rejected": turn("assistant", n.text)}
            for r in read_pairs(pairs) for n in r.negatives]
    message = [{"role": Value("string"), "content": Value("string")}]
    features = Features({"images": [Image()], "prompt": message, "chosen": message, "rejected": message})
    return Dataset.from_list(rows, features=features)


class PlainHead:
    """Stands in for TRL's fused-head autograd function (same arguments and outputs): the LM head and a log-softmax
    at the given positions, in plain torch; entropy, mean logit and top-1 (logged only, detached) are zeros."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
        import torch
        import torch.nn.functional as F

        if softcap is not None:
            raise ValueError("the plain head does not softcap")
        logits = F.linear(hidden, weight, bias).float() * (logit_scale / temperature)
        log_probs = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
        zeros = torch.zeros_like(log_probs).detach()
        return (log_probs, zeros if "entropy" in outputs else None, None,
                zeros if "mean_logits" in outputs else None, zeros.bool() if "is_top1" in outputs else None)


def run_trl(args: argparse.Namespace, save: bool = False) -> dict:
    """TRL's side: ``args.steps`` steps (0: one epoch over the pairs), the model saved after them with ``save``."""
    import trl.trainer.utils
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from unprior.models.families import load_processor

    if args.side != "trl_shipped":  # score completion positions only, as TRL does on CUDA / XPU (module docstring)
        trl.trainer.utils._use_triton = lambda device: True
    if args.side == "trl":
        trl.trainer.utils._ChunkedLogProbFunction = PlainHead
    stamps: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            mark_loaded()

        def on_step_end(self, *_, **__):
            stamps.append(time.perf_counter())
            phases.snapshot()
            mark_first_step()

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    config = DPOConfig(
        output_dir=str(args.work / "trl-out"), per_device_train_batch_size=args.rows_per_step * args.negatives,
        max_steps=args.steps or -1, num_train_epochs=1, learning_rate=args.lr, lr_scheduler_type="cosine",
        warmup_steps=0, max_grad_norm=1.0, beta=0.1, loss_type=["sigmoid"], bf16=False, use_cpu=True,
        activation_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
        dataloader_num_workers=0, seed=0, max_length=None,
    )
    trainer = DPOTrainer(model=str(args.model), args=config, train_dataset=trl_dataset(args.pairs),
                         processing_class=load_processor(args.model), callbacks=[Clock()])
    phases.install([trainer.model, trainer.ref_model])
    trainer.train()
    if save:
        trainer.save_model()
    return {"stamps": stamps, "losses": losses}


def objective(negatives: int):
    """DPO on each of the first ``negatives`` kinds, weight 1/K: the mean sigmoid loss over a row's K pairs."""
    from unprior.losses import ObjectiveConfig
    from unprior.losses.config import KindConfig

    kinds = {kind: KindConfig(loss="dpo", weight=1 / negatives) for kind in shapes.NEGATIVE_KINDS[:negatives]}
    return ObjectiveConfig(kinds=kinds, beta=0.1, gamma="fixed")


def run_unprior(args: argparse.Namespace, method: str) -> dict:
    """unprior's side: ``args.steps`` steps (0: one epoch), reading the reference cache ``run_score`` filled."""
    import unprior.train.trainer as trainer
    from unprior.train.config import LoraSettings, TrainConfig

    out = args.work / f"{method}-out"
    cfg = TrainConfig(
        model=str(args.model), pairs=str(args.pairs), out=str(out), overwrite=True,
        objective=objective(args.negatives), max_length=4096, batch_size=args.rows_per_step, steps=args.steps,
        lr=args.lr, warmup_ratio=0.0, max_grad_norm=1.0, lora=LoraSettings(enabled=False), train_vision=True,
        method=method, reference_dir=str(args.work / "ref"),
    )
    cfg.validate()
    run = trainer.setup(cfg)
    phases.install([run.scorer], head_module=method == "naive")  # the shared prefix's head is timed as head_logps
    mark_loaded()
    log_metrics = trainer._log_metrics

    def logged(*a, **k):  # right after each optimizer step, as TRL's on_step_end
        phases.snapshot()
        mark_first_step()
        return log_metrics(*a, **k)

    trainer._log_metrics = logged
    trainer.train(run)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"seconds": [m["seconds"] for m in rows], "losses": [m["loss"] for m in rows]}


def run_score(args: argparse.Namespace) -> dict:
    from unprior.score.config import ScoreConfig
    from unprior.score.reference import ensure_reference

    start = time.perf_counter()
    ensure_reference(ScoreConfig(model=str(args.model), pairs=str(args.pairs), max_length=4096, overwrite=True,
                                 reference_dir=str(args.work / "ref"),
                                 batch_size=args.score_batch_size or args.rows_per_step),
                     log=lambda _: None)
    return {"seconds": time.perf_counter() - start}


def run_side(args: argparse.Namespace) -> dict:
    if args.side in TRL_SIDES:
        return run_trl(args)
    if args.side == "score":
        return run_score(args)
    if args.side == "unprior_plain_head":
        import unprior.forward.prefix
        from unprior.forward.logps import plain_head_logps

        unprior.forward.prefix.head_logps = plain_head_logps
    return run_unprior(args, "naive" if args.side == "unprior_naive" else "prefix")


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    heavy_imports()
    baseline = rss_mb()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        import unprior.train.trainer as trainer
        from unprior.train.data import Prefetcher

        trainer.prefetched = lambda data, plan: Prefetcher(data, plan, threaded=False)  # the profiler sees one thread
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run_side(args)
        print("RESULT " + json.dumps({"tensor_peak_mb": tensor_peak_mb(prof)}))
        return
    result = run_side(args)
    end = status_mb("VmHWM")
    result |= {"baseline_mb": baseline, "loaded_mb": LOADED.get("rss_mb"),
               "train_hwm_mb": max(LOADED.get("step1_hwm_mb", 0.0), end), "phases": phases.steady(args.warmup)}
    print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------------------------------- driver


def spawn(side: str, args: argparse.Namespace, work: Path, negatives: int, profile: bool = False) -> dict:
    """Run one side in a fresh process; its RESULT line."""
    steps = args.profile_steps if profile else args.steps
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(work / "model"), "--pairs",
           str(work / "pairs.parquet"), "--work", str(work), "--rows-per-step", str(args.rows_per_step),
           "--negatives", str(negatives), "--steps", str(steps), "--warmup", str(args.warmup), "--lr", str(args.lr),
           "--score-batch-size", str(args.score_batch_size)]
    cmd += ["--profile"] * profile
    return run_worker(side, cmd)


def pairs_per_second(result: dict, pairs_per_step: int, warmup: int) -> float:
    times = result.get("stamps") or result["seconds"]
    steady = times[warmup - 1 :]
    return pairs_per_step * (len(steady) - 1) / (steady[-1] - steady[0])


def measure(shape: shapes.Shape, args: argparse.Namespace) -> dict:
    """Build ``shape``'s model and pairs, fill the reference cache, run ``--repeats`` alternating repetitions of
    ``--sides``, then ``--once`` sides once each and ``--memory`` sides profiled; the raw results."""
    tag = f"{shape.family}-{shape.image_tokens}-k{shape.negatives}-v{shape.vocab}"
    work = args.work / tag
    work.mkdir(parents=True, exist_ok=True)
    shapes.build(shape, work, n_rows=args.rows_per_step * args.steps)
    score = spawn("score", args, work, shape.negatives)
    runs: dict[str, list[dict]] = {side: [] for side in (*args.sides, *args.once)}
    for _ in range(args.repeats):
        for side in args.sides:
            runs[side].append(spawn(side, args, work, shape.negatives))
    for side in args.once:
        runs[side].append(spawn(side, args, work, shape.negatives))
    peaks = {side: spawn(side, args, work, shape.negatives, profile=True) for side in args.memory}
    return {"shape": shape.describe(), "negatives": shape.negatives, "image_tokens": shape.image_tokens,
            "score": score, "runs": runs, "memory": peaks}


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def summarise(raw: dict, args: argparse.Namespace) -> dict[str, dict]:
    """Per side: median pairs/s and its ratio to ``trl`` (per repetition where both ran every repetition); RSS
    increase and tensor peak with their ratios to ``trl`` and ``trl_fused``; step-0 loss; phases."""
    pairs_per_step = args.rows_per_step * raw["negatives"]
    rows: dict[str, dict] = {}
    for side, runs in raw["runs"].items():
        speeds = [pairs_per_second(r, pairs_per_step, args.warmup) for r in runs]
        median_run = runs[sorted(range(len(runs)), key=speeds.__getitem__)[len(runs) // 2]]
        rows[side] = {"pairs_s": statistics.median(speeds), "spread": speeds,
                      "increase_mb": statistics.median(r["train_hwm_mb"] - r["loaded_mb"] for r in runs),
                      "tensor_mb": raw["memory"].get(side, {}).get("tensor_peak_mb"),
                      "loss0": runs[0]["losses"][0], "phases": median_run["phases"]}
    base = rows.get("trl", {})
    for r in rows.values():
        r["ratio"] = _ratio(r["pairs_s"], base.get("pairs_s"))
        paired = len(r["spread"]) == len(base.get("spread", ())) >= 1
        r["ratios"] = [a / b for a, b in zip(r["spread"], base["spread"], strict=True)] if paired else []
        for trl in ("trl", "trl_fused"):
            r[f"increase_x_{trl}"] = _ratio(r["increase_mb"], rows.get(trl, {}).get("increase_mb"))
            r[f"tensor_x_{trl}"] = _ratio(r["tensor_mb"], rows.get(trl, {}).get("tensor_mb"))
    return rows


def _cell(value: float | None, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


def report(raw: dict, rows: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"\n{raw['shape']}; {args.rows_per_step} row(s) = {args.rows_per_step * raw['negatives']} pairs per step, "
          f"{args.steps} steps ({args.warmup} warm-up); sides run {args.repeats}× ({', '.join(args.sides)}) or once "
          f"({', '.join(args.once) or 'none'}), alternating; tensor peak from {args.profile_steps}-step profiled runs")
    print("| side | runs | pairs/s (median) | × trl | × trl per repetition | RSS increase (MB) | × trl | "
          "× trl_fused | tensor peak (MB) | × trl | × trl_fused | step-0 loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for side, r in rows.items():
        per_rep = ", ".join(f"{x:.2f}" for x in r["ratios"]) or "–"
        print(f"| {side} | {len(r['spread'])} | {r['pairs_s']:.3f} | {_cell(r['ratio'])} | {per_rep} | "
              f"{r['increase_mb']:.0f} | {_cell(r['increase_x_trl'])} | {_cell(r['increase_x_trl_fused'])} | "
              f"{_cell(r['tensor_mb'], '.0f')} | {_cell(r['tensor_x_trl'])} | {_cell(r['tensor_x_trl_fused'])} | "
              f"{r['loss0']:.6f} |")
    print("phases of each side's median-speed run:\n" + phases.table({side: r["phases"] for side, r in rows.items()}))
    print(f"one-time reference scoring (unprior score, {args.rows_per_step * args.steps} rows): "
          f"{raw['score']['seconds']:.1f} s")
    loss0 = [r["loss0"] for r in rows.values()]
    assert max(loss0) - min(loss0) < 1e-4, f"step-0 losses differ: {loss0}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="llava15", choices=list(shapes.PRESETS))
    p.add_argument("--negatives", type=int, nargs="+", default=[2, 3], help="negatives per row, one run each")
    p.add_argument("--image-tokens", type=int, default=0, help="override the preset's image tokens")
    p.add_argument("--rows-per-step", type=int, default=1, help="rows per step (pairs per step: rows × negatives)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--score-batch-size", type=int, default=0, help="rows per scoring forward (0: rows per step)")
    p.add_argument("--warmup", type=int, default=1, help="steps excluded from the timing (at least 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sides", nargs="+", default=["trl", "unprior"], choices=SIDES, help="run every repetition")
    p.add_argument("--once", nargs="*", default=["trl_fused", "unprior_naive"], choices=SIDES, help="run once")
    p.add_argument("--memory", nargs="*", default=["trl", "trl_fused", "unprior"], choices=SIDES,
                   help="sides of the profiled (tensor peak) runs")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--profile-steps", type=int, default=2, help="steps of the profiled (tensor memory) run")
    p.add_argument("--work", type=Path, default=Path("/tmp/unprior-bench-geometry"))
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    for hidden in ("--worker", "--model", "--pairs"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    return p


def header() -> str:
    return (f"device: CPU, {cpu_name()}, {os.cpu_count()} cores, 1 torch thread per process; python "
            f"{platform.python_version()}")


def main() -> None:
    args = parser().parse_args()
    if args.worker:
        args.side, args.model, args.pairs = args.worker, Path(args.model), Path(args.pairs)
        args.negatives = args.negatives[0]
        worker(args)
        return
    args.warmup = max(1, args.warmup)
    print(header())
    raw = []
    for k in args.negatives:
        changes = {"image_tokens": args.image_tokens} if args.image_tokens else {}
        result = measure(shapes.preset(args.preset, negatives=k, **changes), args)
        report(result, summarise(result, args), args)
        raw.append(result)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
