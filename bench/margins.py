"""How far each trained-model quality test is from its threshold, over seeds 0-4 at 1 and 2 torch threads.

    python bench/margins.py [--seeds 0 1 2 3 4] [--threads 1 2] [--jobs 2] [--out runs/margins]

For each (seed, threads) it trains the test suite's organism (tests/world/organism.py: the tiny world and biased
base of the session fixtures, with that base seed) and measures every quality in ``BASE_THRESHOLDS``, then the
held-out preference gain of tests/train/test_world.py. Each unit runs in its own process (``--jobs`` at a time;
a 2-thread unit runs alone), so thread counts and kernel paths are those of a fresh test session. It prints one
table per quality (value per unit, the worst case, the threshold and the margin) and writes ``margins.json``.
A test's ``worst`` field should be the worst case printed here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def unit(seed: int, threads: int, out: Path) -> dict[str, float]:
    """One (seed, threads) unit, in this process."""
    import torch
    from train.test_world import held_out_accuracy
    from world.organism import base_quality, tiny_base_config, tiny_world_config

    from unprior.world.base import train_base
    from unprior.world.build import build_world

    torch.set_num_threads(threads)
    world = out / "world"
    if not (world / "manifest.json").is_file():
        build_world(tiny_world_config(world))
    tag = f"seed{seed}-t{threads}"
    base = train_base(tiny_base_config(world, out / f"base-{tag}", seed=seed, threads=threads), log=lambda *_: None)
    quality = base_quality(base, world, out / f"eval-{tag}", threads=threads)
    accuracy = held_out_accuracy(out / f"train-{tag}", seed=seed, threads=threads)
    demo = demo_effect(world, base, out / f"demo-{tag}", threads)
    return {**quality, **demo, "held_out_gain": accuracy[100] - accuracy[0], "held_out_start": accuracy[0]}


def demo_effect(world: Path, base: Path, out: Path, threads: int) -> dict[str, float]:
    """tests/test_demo.py's smoke demo on this unit's base: what its debiasing test asserts."""
    import io
    import os

    from rich.console import Console
    from test_demo import demo_effect as effect
    from test_demo import smoke_config

    from unprior.demo import run_demo

    os.environ["UNPRIOR_CACHE"] = str(out / "cache")
    cfg = smoke_config(world, base, out / "report")
    cfg.threads = threads
    assert run_demo(cfg, console=Console(file=io.StringIO())) == 0
    return effect(json.loads((out / "report" / "results.json").read_text()))


def _spawn(seed: int, threads: int, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--unit", str(seed), str(threads), "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def run_all(seeds: list[int], threads: list[int], jobs: int, out: Path) -> dict[str, dict[str, float]]:
    """Every unit in a subprocess; 1-thread units ``jobs`` at a time, wider ones alone."""
    results: dict[str, dict[str, float]] = {}
    queue = []
    for s, t in ((s, t) for t in threads for s in seeds):
        done = out / f"unit-seed{s}-t{t}.json"
        if done.is_file():
            results[f"seed{s}-t{t}"] = json.loads(done.read_text())
        else:
            queue.append((s, t))
    running: list[tuple[str, subprocess.Popen]] = []
    world = out / "world"
    if not (world / "manifest.json").is_file():  # built once, before the units race for it
        subprocess.run([sys.executable, __file__, "--world", "--out", str(out)], check=True)
    while queue or running:
        width = sum(int(k.split("-t")[1]) for k, _ in running)
        if queue and (not running or width + queue[0][1] <= jobs):
            s, t = queue.pop(0)
            running.append((f"seed{s}-t{t}", _spawn(s, t, out)))
            continue
        key, proc = running.pop(0)
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"unit {key} failed (exit {proc.returncode})")
        results[key] = json.loads(stdout.strip().splitlines()[-1])
        (out / f"unit-{key}.json").write_text(json.dumps(results[key]))  # a killed sweep keeps finished units
        print(f"  {key}: done", flush=True)
    return results


def report(results: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    from test_demo import DEMO_THRESHOLDS
    from train.test_world import HELD_OUT_GAIN, HELD_OUT_START
    from world.organism import BASE_THRESHOLDS, Threshold

    rows = []
    held_out = (Threshold("held_out_gain", ">=", HELD_OUT_GAIN, worst=0.0),
                Threshold("held_out_start", "<=", HELD_OUT_START, worst=0.0))
    for th in (*BASE_THRESHOLDS, *DEMO_THRESHOLDS, *held_out):
        values = {k: r[th.metric] for k, r in sorted(results.items())}
        margins = {k: th.margin(r) for k, r in results.items()}
        worst_key = min(margins, key=margins.__getitem__)
        rows.append({"metric": th.metric, "op": th.op, "threshold": th.value, "worst": values[worst_key],
                     "worst_unit": worst_key, "margin": margins[worst_key], "values": values})  # fmt: skip
    width = max(len(r["metric"]) for r in rows)
    print(f"\n{'quality':<{width}}  test        worst   (unit)        margin  all units")
    for r in rows:
        vals = " ".join(f"{v:.3f}" for v in r["values"].values())
        print(f"{r['metric']:<{width}}  {r['op']} {r['threshold']:<7.3f}  {r['worst']:.3f}  ({r['worst_unit']:<11})"
              f"  {r['margin']:+.3f}  {vals}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="CPU threads in use at once")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "margins")
    ap.add_argument("--unit", type=int, nargs=2, metavar=("SEED", "THREADS"), help=argparse.SUPPRESS)
    ap.add_argument("--world", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.world:
        from world.organism import tiny_world_config

        from unprior.world.build import build_world

        build_world(tiny_world_config(args.out / "world"))
        return 0
    if args.unit:
        print(json.dumps(unit(*args.unit, args.out)))
        return 0
    from unprior.numerics import numerics_signature

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(args.seeds, args.threads, args.jobs, args.out)
    rows = report(results)
    seconds = round(time.perf_counter() - t0)
    print(f"\n{len(results)} units in {seconds} s; numerics {numerics_signature()}")
    (args.out / "margins.json").write_text(json.dumps(
        {"numerics": numerics_signature(), "seconds": seconds, "units": results, "margins": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
