"""The no-prior control (the visual ceiling) for more base seeds than the studies use (they use seed 0's).

Trains (or reuses, from the cache) the demo's control with ``base.seed`` = each given seed, evaluates it on the
world benchmark and the grounding frontier, and writes ``experiments/results/controls.json``; each model's
``train_log.jsonl`` holds its loss curve.

usage: UNPRIOR_CACHE=... .venv/bin/python experiments/controls.py [SEED ...]     (default: 0 1 2; 2 processes)
"""

from __future__ import annotations

import copy
import sys
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from unprior.io import write_json

OUT = Path(__file__).resolve().parent / "results" / "controls.json"


def control_for_seed(seed: int) -> dict[str, Any]:
    """Train (or reuse) and evaluate the control of ``base.seed = seed``, one torch thread."""
    import torch

    from unprior.pipeline.config import DemoConfig, control_config
    from unprior.pipeline.steps import evaluate_model
    from unprior.world.base import train_base
    from unprior.world.build import build_world

    torch.set_num_threads(1)
    cfg = DemoConfig()
    base = copy.deepcopy(cfg.base)
    base.seed = seed
    ctrl = control_config(base)
    ctrl.threads = 1
    model = train_base(ctrl, log=lambda _: None)
    entry, _ = evaluate_model(build_world(cfg.base.world), model, f"control-s{seed}", limit=None, batch_size=64,
                              frontier=True, log=lambda _: None)
    world = entry["world"]["metrics"]
    return {"seed": seed, "model": str(model), "id": world["id_attribute_accuracy"],
            "cf": world["cf_attribute_accuracy"], "frontier": entry["frontier"]["metrics"]["cf_at_id_0.90"]}


def main(argv: list[str]) -> int:
    seeds = [int(a) for a in argv] or [0, 1, 2]
    with get_context("spawn").Pool(2) as pool:
        results = sorted(pool.imap_unordered(control_for_seed, seeds), key=lambda r: r["seed"])
    for r in results:
        print(f"control seed {r['seed']}: ID {r['id']:.3f} CF {r['cf']:.3f} frontier {r['frontier']:.3f}")
    write_json(OUT, {"controls": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
