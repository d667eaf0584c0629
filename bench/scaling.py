"""How unprior's speed-up over TRL's DPOTrainer scales with prompt length and negatives per row (LLaVA geometry).

Usage::

    python bench/scaling.py                                   # tokens 64/256/576/1156 at K=2, K=1..4 at 576 tokens
    python bench/scaling.py --tokens 64 576 --negatives 1 3 --repeats 2 --png scaling.png

Each point is one :func:`geometry.measure` configuration of the ``llava15`` preset (bench/shapes.py) with the image
tokens or negatives changed: ``trl`` (the plain-head TRL baseline, see bench/geometry.py) and ``unprior`` in
alternating processes, ``--repeats`` times, one thread each. LLaVA's image tokens are a square grid of 14 px
patches, so the longest prompt has 34² = 1,156 image tokens (the square nearest 1,152). Prints a markdown table
(pairs/s ratio, per repetition, RSS increase ratio) and draws both curves into ``--png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import geometry
import shapes


def points(args: argparse.Namespace) -> list[tuple[int, int]]:
    """``(image tokens, negatives)`` of every configuration: the token sweep at ``--base-negatives``, then the
    negatives sweep at ``--base-tokens`` (the shared point once)."""
    sweep = [(t, args.base_negatives) for t in args.tokens]
    sweep += [(args.base_tokens, k) for k in args.negatives if (args.base_tokens, k) not in sweep]
    return sweep


def geometry_args(args: argparse.Namespace) -> argparse.Namespace:
    g = geometry.parser().parse_args([])
    g.sides, g.once, g.memory = ["trl", "unprior"], [], []
    for name in ("repeats", "steps", "warmup", "rows_per_step", "work", "lr"):
        setattr(g, name, getattr(args, name))
    return g


def run(args: argparse.Namespace) -> list[dict]:
    g = geometry_args(args)
    results = []
    for tokens, k in points(args):
        raw = geometry.measure(shapes.preset("llava15", image_tokens=tokens, negatives=k), g)
        rows = geometry.summarise(raw, g)
        u = rows["unprior"]
        results.append({"image_tokens": tokens, "negatives": k, "ratio": u["ratio"], "ratios": u["ratios"],
                        "trl_pairs_s": rows["trl"]["pairs_s"], "unprior_pairs_s": u["pairs_s"],
                        "rss_ratio": u["increase_x_trl"], "loss0": [r["loss0"] for r in rows.values()],
                        "phases": {side: r["phases"] for side, r in rows.items()}})
        print(row(results[-1]), flush=True)
    return results


HEADER = ("| image tokens | prompt tokens (≈) | negatives per row | TRL pairs/s | unprior pairs/s | × TRL (median) | "
          "× TRL per repetition | RSS increase × TRL |\n|---|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
    per_rep = ", ".join(f"{x:.2f}" for x in r["ratios"])
    return (f"| {r['image_tokens']} | {r['image_tokens'] + 26} | {r['negatives']} | {r['trl_pairs_s']:.3f} | "
            f"{r['unprior_pairs_s']:.3f} | {r['ratio']:.2f} | {per_rep} | {r['rss_ratio']:.2f} |")


def plot(results: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    sweeps = [("image_tokens", "negatives", args.base_negatives, "image tokens per prompt", axes[0]),
              ("negatives", "image_tokens", args.base_tokens, "negatives per row", axes[1])]
    for x_key, fixed_key, fixed, label, ax in sweeps:
        chosen = sorted((r for r in results if r[fixed_key] == fixed), key=lambda r: r[x_key])
        xs = [r[x_key] for r in chosen]
        ax.plot(xs, [r["ratio"] for r in chosen], "o-", label="median")
        for r in chosen:
            ax.plot([r[x_key]] * len(r["ratios"]), r["ratios"], ".", color="grey", alpha=0.7)
        ax.axhline(2.0, ls="--", color="tab:red", lw=1, label="target 2.0×")
        ax.axhline(1.0, ls=":", color="black", lw=1)
        ax.set_xlabel(label + (f" ({fixed_key.replace('_', ' ')} {fixed})"))
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("unprior pairs/s ÷ TRL DPOTrainer pairs/s")
    axes[0].legend()
    fig.suptitle("LLaVA-1.5 geometry at width 256 (CPU, 1 thread per side; grey: repetitions)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[64, 256, 576, 1156], help="image tokens (squares)")
    p.add_argument("--negatives", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--base-tokens", type=int, default=576, help="image tokens of the negatives sweep")
    p.add_argument("--base-negatives", type=int, default=2, help="negatives of the image-token sweep")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rows-per-step", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--work", type=Path, default=Path("/tmp/unprior-bench-geometry"))
    p.add_argument("--png", type=Path, default=Path("scaling.png"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    print(geometry.header())
    print(HEADER, flush=True)
    results = run(args)
    print("\n" + HEADER + "\n" + "\n".join(row(r) for r in results))
    plot(results, args, args.png)
    print(f"plot: {args.png}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    spread = [x for r in results for x in r["ratios"]]
    if spread:
        print(f"all repetitions: {min(spread):.2f}–{max(spread):.2f}× (median {statistics.median(spread):.2f}×)")


if __name__ == "__main__":
    main()
