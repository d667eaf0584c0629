"""What pinning the CPU kernel paths to AVX2 costs (unprior/numerics.py), against each library's native choice.

    python bench/kernels.py [--repeats 3] [--out /tmp/unprior-kernels]

One unit = train the test suite's organism base (tests/world/organism.py: tiny world, 30 text + 900 multimodal
steps, one torch thread) and run its world eval (greedy generation), in a fresh process with
``UNPRIOR_CPU_KERNELS`` unset (pinned: the default) or ``native``. The modes alternate, ``--repeats`` times each;
it prints seconds per unit and the pinned / native ratio of the medians, for training and for the eval, and the
numerics signature each process reported (the ATen capability it really ran). On a CPU without AVX-512 both modes
run the AVX2 paths and the ratio is 1 by construction; the number it exists for needs an AVX-512 machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("pinned", "native")


def unit(out: Path) -> dict[str, object]:
    """One unit in this process: seconds to train the organism base and to evaluate it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from world.organism import base_quality, tiny_base_config, tiny_world_config

    from unprior.numerics import numerics_signature
    from unprior.world.base import train_base
    from unprior.world.build import build_world

    build_world(tiny_world_config(out / "world"))
    start = time.perf_counter()
    base = train_base(tiny_base_config(out / "world", out / "base"), log=lambda *_: None)
    trained = time.perf_counter()
    quality = base_quality(base, out / "world", out / "eval")
    done = time.perf_counter()
    return {"train_s": trained - start, "eval_s": done - trained, "numerics": numerics_signature(1),
            "pope_random_accuracy": quality.get("pope_random_accuracy")}


def run(mode: str, scratch: Path) -> dict[str, object]:
    """One unit in a fresh process with ``mode``'s kernel paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    env.update({"OMP_NUM_THREADS": "1", "UNPRIOR_CACHE": str(scratch / "cache"), "TQDM_DISABLE": "1"})
    env.pop("UNPRIOR_CPU_KERNELS", None)
    if mode == "native":
        env["UNPRIOR_CPU_KERNELS"] = "native"
    proc = subprocess.run([sys.executable, __file__, "--worker", str(scratch)], env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "unprior-kernels")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(unit(args.worker)))
        return 0
    results: dict[str, list[dict[str, object]]] = {m: [] for m in MODES}
    for rep in range(args.repeats):
        for mode in MODES if rep % 2 == 0 else MODES[::-1]:
            r = run(mode, args.out / f"{mode}-{rep}")
            results[mode].append(r)
            print(f"rep {rep} {mode:6s}: train {r['train_s']:6.1f} s  eval {r['eval_s']:5.1f} s  "
                  f"POPE {r['pope_random_accuracy']}  {r['numerics']['aten_cpu_capability']}", flush=True)
    for part in ("train_s", "eval_s"):
        med = {m: statistics.median(float(r[part]) for r in results[m]) for m in MODES}
        print(f"{part}: pinned {med['pinned']:.1f} s, native {med['native']:.1f} s, "
              f"pinned / native {med['pinned'] / med['native']:.2f}")
    (args.out / "kernels.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
