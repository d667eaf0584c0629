"""What training did to the planted noisy negatives: scored by the trained policy against the reference.

For each trained unit of a noise study (``experiments/results/noise/runs/*.json`` with noise > 0), this scores every
response of the unit's pairs file with the trained model (``unprior score``; cached) and compares with the
reference (the base model's scores, already cached by the study). Per biased kind, separately for the planted
(correct) negatives and the clean ones, it reports:

- Δ = (π_w − π_l) − (ref_w − ref_l), the implicit reward margin without β (summed log-probs);
- how far the policy moved the negative itself: π_l − ref_l (a correct answer pushed down is the harm of noise);
- the per-pair gradient weight at the end: DPO's σ(−βΔ), and NaPO's σ(−βΔ)·σ(βΔ)^q with the run's late q.

usage: UNPRIOR_CACHE=... .venv/bin/python experiments/planted.py [STUDY_DIR] [ARM_PREFIX ...]
       (default: experiments/results/noise, arms dpo_30 napo_30; writes STUDY_DIR/planted.md and planted.json)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from unprior.formats.pairs import read_pairs
from unprior.io import read_json, write_json
from unprior.score.config import ScoreConfig
from unprior.score.reference import ensure_reference, load_reference

KINDS = ("language_bias", "vision_bias")


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def unit_stats(result: dict[str, Any], base: str, beta: float) -> dict[str, Any]:
    """Per kind and planted/clean: mean Δ, mean π_l − ref_l, mean DPO and NaPO weights, count."""
    score = {"pairs": result["pairs"], "max_length": 128, "batch_size": 64, "threads": 1}
    ref = load_reference(ensure_reference(ScoreConfig(model=base, **score), log=lambda _: None))
    pol = load_reference(ensure_reference(ScoreConfig(model=result["model"], **score), log=lambda _: None))
    rows = read_pairs(result["pairs"])
    late = result["train"]["late"]
    out: dict[str, Any] = {}
    for kind in KINDS:
        q = late.get(f"q/{kind}")
        groups: dict[str, list[tuple[float, float]]] = {"planted": [], "clean": []}
        for i in ref.rows:
            if i not in pol.sums or len(ref.kinds[i]) != 1 + len(rows[i].negatives):
                continue  # not scored by both, or a response was dropped: indices would not line up
            for j, neg in enumerate(rows[i].negatives, start=1):
                if neg.kind != kind or ref.kinds[i][j] != kind:
                    continue
                delta = (pol.sums[i][0] - pol.sums[i][j]) - (ref.sums[i][0] - ref.sums[i][j])
                groups["planted" if neg.provenance.get("noise") else "clean"].append(
                    (delta, pol.sums[i][j] - ref.sums[i][j]))
        out[kind] = {}
        for name, values in groups.items():
            if not values:
                continue
            dpo = [_sigmoid(-beta * d) for d, _ in values]
            entry = {"n": len(values), "margin": statistics.fmean(d for d, _ in values),
                     "negative_shift": statistics.fmean(s for _, s in values), "dpo_weight": statistics.fmean(dpo)}
            if q is not None:
                entry["napo_weight"] = statistics.fmean(
                    w * _sigmoid(beta * d) ** q for w, (d, _) in zip(dpo, values, strict=True))
                entry["q"] = q
            out[kind][name] = entry
    return out


def main(argv: list[str]) -> int:
    study = Path(argv[0]) if argv else Path("experiments/results/noise")
    prefixes = argv[1:] or ["dpo_30", "napo_30"]
    bases = {r["seed"]: r["model"] for r in map(read_json, sorted((study / "runs").glob("base-s*.json")))}
    results: dict[str, Any] = {}
    for path in sorted((study / "runs").glob("*.json")):
        r = read_json(path)
        if not any(r["arm"] == p for p in prefixes):
            continue
        results[r["name"]] = unit_stats(r, bases[r["seed"]], beta=0.1)
        print(r["name"], json.dumps(results[r["name"]], indent=None)[:300], flush=True)
    write_json(study / "planted.json", results)
    lines = ["# Planted noisy negatives after training", "",
             "Δ: implicit reward margin without β, summed log-probs, (π_w − π_l) − (ref_w − ref_l); shift: "
             "π_l − ref_l (how far training moved the negative itself); weights: the per-pair gradient factor at the "
             "end of training, DPO σ(−βΔ), NaPO σ(−βΔ)·σ(βΔ)^q with the run's late q. Mean over pairs, one line per "
             "unit.", "",
             "| unit | kind | planted: n | Δ | shift | DPO w | NaPO w | clean: n | Δ | shift | DPO w | NaPO w |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, kinds in results.items():
        for kind, groups in kinds.items():
            cells = []
            for g in ("planted", "clean"):
                e = groups.get(g, {})
                cells += [str(e.get("n", 0)), f"{e.get('margin', float('nan')):.2f}",
                          f"{e.get('negative_shift', float('nan')):.2f}", f"{e.get('dpo_weight', float('nan')):.3f}",
                          f"{e['napo_weight']:.3f}" if "napo_weight" in e else "–"]
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    (study / "planted.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {study / 'planted.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
