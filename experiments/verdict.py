"""The papers' claims, met or not, from a study's summary.json (docs/experiments.md §8):

    python experiments/verdict.py experiments/results/pretrained_vision/summary.json

Prints one markdown row per claim with the numbers it rests on (means over seeds; paired differences with the
seeds on which the first arm is better). A claim whose arms have not run yet says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _mean(summary: dict[str, Any], arm: str, key: str) -> float | None:
    return summary["arms"].get(arm, {}).get("mean", {}).get(key)


def _paired(summary: dict[str, Any], a: str, b: str, key: str = "cf") -> tuple[float, int, int] | None:
    arms = summary["arms"]
    if a not in arms or b not in arms:
        return None
    seeds = sorted(set(arms[a]["seeds"]) & set(arms[b]["seeds"]))
    diffs = [arms[a]["seeds"][s][key] - arms[b]["seeds"][s][key] for s in seeds]
    return (sum(diffs) / len(diffs), sum(d > 0 for d in diffs), len(diffs)) if diffs else None


def _fmt_paired(p: tuple[float, int, int] | None, points: bool = True) -> str:
    if p is None:
        return "not run"
    return f"{p[0] * (100 if points else 1):+.1f}{' points' if points else ''} ({p[1]}/{p[2]} seeds)"


def claims(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    gap = _mean(s, "napo", "gap_closed")
    rows.append(("NaPO closes ≥ 50 % of the base → ceiling frontier gap (tower frozen)",
                 "not run" if gap is None else f"{gap:.0%} (SFT {_mean(s, 'sft', 'gap_closed') or 0:.0%}, "
                 f"DPO on BPO's pairs {_mean(s, 'dpo', 'gap_closed') or 0:.0%})",
                 "-" if gap is None else ("met" if gap >= 0.5 else "not met")))
    p = _paired(s, "napo", "sft")
    rows.append(("NaPO beats SFT on the same chosen answers (CF accuracy)", _fmt_paired(p) + "; frontier "
                 + _fmt_paired(_paired(s, "napo", "sft", "frontier")),
                 "-" if p is None else ("met" if p[0] > 0 and p[1] == p[2] else "not met")))
    for mode, title in (("flip", "flipped pairs"), ("same_form", "same-form correct negatives")):
        p = _paired(s, f"napo_{mode}_30", f"napo_as_dpo_{mode}_30")
        rows.append((f"NaPO beats DPO by ≥ 5 CF points at 30 % {title}", _fmt_paired(p),
                     "-" if p is None else ("met" if p[0] >= 0.05 else "not met")))
    cost = _mean(s, "napo", "id_cost")
    rows.append(("NaPO costs ≤ 2 ID points", "not run" if cost is None else f"{cost * 100:+.1f} points",
                 "-" if cost is None else ("met" if cost <= 0.02 else "not met")))
    order = [(a, b, _paired(s, a, b)) for a, b in (("napo", "napo_as_dpo"), ("napo", "no_gamma"),
                                                   ("lb_only", "lb_only_dpo"), ("vb_only", "vb_only_dpo"))]
    ran = [(a, b, p) for a, b, p in order if p is not None]
    rows.append(("Table 2 order: full NaPO > A3 (DPO), > A2 (no γ); LB1 > LB2; VB1 > VB2",
                 "; ".join(f"{a} − {b} {_fmt_paired(p)}" for a, b, p in ran) or "not run",
                 "-" if not ran else ("met" if all(p[0] > 0 for _, _, p in ran) and len(ran) == 4 else
                                      "not met" if any(p[0] <= 0 for _, _, p in ran) else "partly run")))
    return rows


def main(argv: list[str]) -> int:
    summary = json.loads(Path(argv[1]).read_text())
    print("| claim | measured | verdict |\n|---|---|---|")
    for claim, measured, verdict in claims(summary):
        print(f"| {claim} | {measured} | {verdict} |")
    for key in ("tower_probe_id", "tower_probe_cf"):
        if key in summary:
            print(f"\n{key}: {summary[key]:.3f}", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
