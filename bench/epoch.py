"""Time to a trained model: one epoch of ``unprior score`` + ``unprior train`` against one epoch of TRL 1.16's
DPOTrainer, at real VLM geometry (bench/shapes.py), on CPU (issue 23, item 3).

Usage::

    python bench/epoch.py                                   # llava15, 64 rows, K = 2 and 3, 2 repetitions
    python bench/epoch.py --rows 64 --negatives 2 --repeats 1 --json bench/results/train_epoch_llava15.json

bench/geometry.py measures steady steps with the reference cache already filled; this adds what a user waits for
before and after them. Per configuration (a preset with K negatives per row, ``--rows`` rows): one shared model and
pairs file, then ``--repeats`` repetitions, each running both sides in their own process, one after the other, one
torch thread each (everything else as in bench/geometry.py: the same model, rows, loss, batch of 1 row = K pairs, and
the ``trl`` baseline, i.e. TRL's head on the completion positions only, as on CUDA, with a plain log-softmax):

- **unprior**: ``unprior score`` (:func:`unprior.score.reference.ensure_reference`, rescoring into an empty cache:
  the model loaded, every response of every row scored, the entry written) then ``unprior train`` for one epoch
  (:func:`unprior.train.trainer.setup`, which loads the model again and reads the cache, then
  :func:`unprior.train.trainer.train`, which saves the model at the end), in the same process.
- **TRL**: ``DPOTrainer(...)`` (loads the policy and its reference copy, tokenises the K pairs of every row), one epoch
  of ``train()`` (a reference forward every step), ``save_model()``.

Both clocks start after the imports (each process imports the same libraries first) and stop once the model is on
disk. Reported: each side's epoch time, the ratio TRL ÷ unprior per repetition and of the medians, the same ratio in
processor seconds (each process's user + system time: on a shared machine, other work stretches wall time but
hardly processor time), and the breakdown: the score pass, setup (model loading, data), the training loop (first
step to last), and saving.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import geometry
import phases
import shapes
from train_vs_trl import LOADED, heavy_imports, run_worker

SIDES = ("trl", "unprior")
PARTS = ("score", "setup", "loop", "save")


def _parts(start: float, loaded: float, last_step: float, end: float) -> dict[str, float]:
    """Seconds of setup (start to the loop's start), the loop (to the last optimizer step) and saving (to ``end``)."""
    return {"setup": loaded - start, "loop": last_step - loaded, "save": end - last_step}


def worker(args: argparse.Namespace) -> dict:
    """One side's epoch in this process: its wall time and parts, steps, step-0 loss."""
    import torch

    torch.set_num_threads(1)
    heavy_imports()
    start, cpu = time.perf_counter(), time.process_time()
    score = score_cpu = 0.0
    if args.side == "unprior":
        score = geometry.run_score(args)["seconds"]
        score_cpu = time.process_time() - cpu
        result = geometry.run_unprior(args, "prefix")
        steps = len(result["seconds"])
    else:
        result = geometry.run_trl(args, save=True)
        steps = len(result["stamps"])
    end = time.perf_counter()
    parts = {"score": score} | _parts(start + score, LOADED["at"], phases.SNAPSHOTS[-1][0], end)
    return {"seconds": end - start, "parts": parts, "steps": steps, "loss0": result["losses"][0],
            "phases": phases.steady(args.warmup), "cpu_s": time.process_time() - cpu, "score_cpu_s": score_cpu}


def spawn(side: str, args: argparse.Namespace, work: Path, negatives: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(work / "model"), "--pairs",
           str(work / "pairs.parquet"), "--work", str(work), "--negatives", str(negatives), "--lr", str(args.lr),
           "--warmup", str(args.warmup), "--score-batch-size", str(args.score_batch_size)]
    return run_worker(side, cmd)


def measure(shape: shapes.Shape, args: argparse.Namespace) -> dict:
    """Build ``shape``'s model and ``--rows`` rows, then ``--repeats`` alternating repetitions of both sides."""
    work = args.work / f"{shape.family}-{shape.image_tokens}-k{shape.negatives}-v{shape.vocab}-r{args.rows}"
    work.mkdir(parents=True, exist_ok=True)
    shapes.build(shape, work, n_rows=args.rows)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side in SIDES:
            runs[side].append(spawn(side, args, work, shape.negatives))
    return {"shape": shape.describe(), "negatives": shape.negatives, "rows": args.rows, "runs": runs}


def summarise(raw: dict) -> dict:
    """Median epoch seconds and parts per side; TRL ÷ unprior per repetition and of the medians."""
    med = {side: {"seconds": statistics.median(r["seconds"] for r in runs),
                  "parts": {p: statistics.median(r["parts"][p] for r in runs) for p in PARTS}}
           for side, runs in raw["runs"].items()}
    pairs = list(zip(raw["runs"]["trl"], raw["runs"]["unprior"], strict=True))
    per_rep = [t["seconds"] / u["seconds"] for t, u in pairs]
    cpu = [t["cpu_s"] / u["cpu_s"] for t, u in pairs]  # processor time: what a loaded machine disturbs least
    loop = med["trl"]["parts"]["loop"] / med["unprior"]["parts"]["loop"]
    return {"median": med, "ratio": med["trl"]["seconds"] / med["unprior"]["seconds"], "ratios": per_rep,
            "cpu_ratios": cpu, "loop_ratio": loop}


def report(raw: dict, summary: dict, args: argparse.Namespace) -> None:
    k, rows = raw["negatives"], raw["rows"]
    print(f"\n{raw['shape']}; one epoch of {rows} rows = {rows * k} pairs, 1 row = {k} pairs per step, "
          f"{args.repeats} repetition(s), sides alternating; medians")
    print("| side | epoch (s) | score pass | setup | training loop | save | steps | step-0 loss |")
    print("|---|---|---|---|---|---|---|---|")
    for side, runs in raw["runs"].items():
        m = summary["median"][side]
        cells = " | ".join(f"{m['parts'][p]:.1f}" for p in PARTS)
        print(f"| {side} | {m['seconds']:.1f} | {cells} | {runs[0]['steps']} | {runs[0]['loss0']:.6f} |")
    per_rep = ", ".join(f"{x:.2f}" for x in summary["ratios"])
    per_cpu = ", ".join(f"{x:.2f}" for x in summary["cpu_ratios"])
    print(f"epoch: TRL ÷ unprior = {summary['ratio']:.2f}× (per repetition {per_rep}; in processor seconds "
          f"{per_cpu}); training loops alone {summary['loop_ratio']:.2f}×")
    print("phases of each side's first run (ms per steady step):\n"
          + phases.table({side: runs[0]["phases"] for side, runs in raw["runs"].items()}))
    losses = [runs[0]["loss0"] for runs in raw["runs"].values()]
    assert max(losses) - min(losses) < 1e-4, f"step-0 losses differ: {losses}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="llava15", choices=list(shapes.PRESETS))
    p.add_argument("--negatives", type=int, nargs="+", default=[2, 3], help="negatives per row, one run each")
    p.add_argument("--rows", type=int, default=64, help="rows of the epoch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--score-batch-size", type=int, default=8, help="rows per scoring forward (unprior's default)")
    p.add_argument("--warmup", type=int, default=1, help="steps left out of the phase table")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--work", type=Path, default=Path("/tmp/unprior-bench-epoch"))
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    for hidden in ("--worker", "--model", "--pairs"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.worker:
        args.side, args.model, args.pairs = args.worker, Path(args.model), Path(args.pairs)
        args.negatives, args.rows_per_step, args.steps = args.negatives[0], 1, 0  # steps 0: one epoch
        print("RESULT " + json.dumps(worker(args)))
        return
    args.warmup = max(1, args.warmup)
    print(geometry.header())
    raw = []
    for k in args.negatives:
        result = measure(shapes.preset(args.preset, negatives=k), args)
        result["summary"] = summarise(result)
        report(result, result["summary"], args)
        raw.append(result)
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
