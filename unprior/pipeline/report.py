"""The demo's report: the results table (printed and markdown), the figures, ``results.json`` and ``report.md``.
The eval, browser and rich imports are where they are used: ``unprior demo --help`` loads this module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from unprior.config import to_dict
from unprior.io import pyplot, read_json, read_jsonl, save_figure, write_json
from unprior.pipeline.config import COLUMNS, DESCRIPTIONS, LABELS
from unprior.pipeline.steps import Demo


def results_table(d: Demo) -> tuple[list[str], list[Any], list[list[float | None]]]:
    """(method keys, compare columns, values) of the table, from the eval runs' results (``eval compare``'s table)."""
    from unprior.eval.compare import compare_table

    runs = []
    for e in d.evals.values():
        runs.append({**e["world"], "_path": e["dirs"]["world"]})
        if "frontier" in e:
            runs.append({**e["frontier"], "_path": e["dirs"]["frontier"]})
    metrics = [c for c, _ in COLUMNS if d.cfg.frontier or not c.startswith("world_frontier/")]
    labels, cols, values = compare_table(runs, metrics)
    order = sorted(range(len(cols)), key=lambda j: metrics.index(f"{cols[j].benchmark}/{cols[j].metric}"))
    keys = {LABELS[m]: m for m in d.evals}
    return [keys[label] for label in labels], [cols[j] for j in order], [[row[j] for j in order] for row in values]


def _title(col) -> str:
    return dict(COLUMNS)[f"{col.benchmark}/{col.metric}"]


def _heading(col) -> str:
    return _title(col) + {True: " ↑", False: " ↓", None: ""}[col.higher_is_better]


def _best(values: list[float | None], higher: bool | None) -> float | None:
    present = [v for v in values if v is not None]
    if higher is None or not present:
        return None
    return max(present) if higher else min(present)


def _cells(methods: list[str], cols, values, bold: Callable[[str], str]) -> list[list[str]]:
    """Each method's cells; the best of each column among the trained methods and the base marked with ``bold``."""
    trained = [i for i, m in enumerate(methods) if m != "control"]  # the ceiling does not compete
    best = [_best([values[k][j] for k in trained], c.higher_is_better) for j, c in enumerate(cols)]
    return [["-" if v is None else bold(f"{v:.3f}") if v == best[j] and m != "control" else f"{v:.3f}"
             for j, v in enumerate(values[i])] for i, m in enumerate(methods)]


def print_table(d: Demo, methods: list[str], cols, values) -> None:
    from rich.table import Table

    table = Table(title="unprior demo: the embedded world (test_cf: non-canonical colours, absent partners)")
    table.add_column("method", no_wrap=True)
    for c in cols:
        table.add_column(_heading(c), justify="right")
    for m, cells in zip(methods, _cells(methods, cols, values, "[bold]{}[/bold]".format), strict=True):
        table.add_row(LABELS[m], *cells, style="dim" if m == "control" else None)
    console = d.console
    if not console.is_terminal and console.width < 140:  # a log file or pipe: no need to wrap at 80 columns
        from rich.console import Console

        console = Console(file=console.file, width=140)
    console.print(table)


def markdown_table(methods: list[str], cols, values) -> str:
    head = ["method", *map(_heading, cols)]
    body = ["| " + " | ".join([LABELS[m], *cells]) + " |"
            for m, cells in zip(methods, _cells(methods, cols, values, "**{}**".format), strict=True)]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *body])


def plot_q_gamma(metrics_file: Path, out_png: Path) -> Path | None:
    """q per NaPO kind and γ per kind against the step, from the trainer's ``metrics.jsonl``."""
    rows = [r for r in read_jsonl(metrics_file) if "loss" in r]
    if not rows:
        return None
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.4))
    for ax, prefix, title in ((axes[0], "q/", "dynamic q (Eq. 12)"), (axes[1], "gamma/", "γ per kind (Eq. 13)")):
        for key in sorted({k for r in rows for k in r if k.startswith(prefix)}):
            ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r],
                    label=key.removeprefix(prefix))
        ax.set(xlabel="step", title=title, ylim=(0, 1.05))
        ax.legend(fontsize=8)
    fig.suptitle("NaPO training: q and γ per negative kind", fontsize=10)
    return save_figure(fig, out_png, dpi=130)


def _noise_lines(d: Demo) -> list[str]:
    report = read_json(d.out / "noise_report.json")
    lines = ["| negative kind | n | reference prefers the negative (Σ) | (μ) | mean margin Σ | mean margin μ | "
             "q from reference (Σ / μ) |", "|---|---|---|---|---|---|---|"]
    for kind, s in report["kinds"].items():
        lines.append(f"| {kind} | {s['n']} | {s['sum']['share_negative']:.3f} | {s['mean']['share_negative']:.3f} | "
                     f"{s['sum']['mean']:.2f} | {s['mean']['mean']:.3f} | {s['sum']['q_from_reference']:.3f} / "
                     f"{s['mean']['q_from_reference']:.3f} |")
    return lines


def write_markdown(d: Demo, methods: list[str], cols, values, figures: dict[str, str]) -> None:
    counts = d.pairs_summary.get("counts", {})
    t, p, pool = d.cfg.train, d.cfg.pairs, d.cfg.pool
    share = "drawn uniformly" if pool.noncanonical_share is None else \
        f"{pool.noncanonical_share:.0%} of them holding a non-canonical colour"
    lines = [
        "# unprior demo report",
        "",
        "The embedded world: a tiny LLaVA with a built-in colour and co-occurrence prior, debiased with "
        "bootstrapped preference pairs (BPO, NaPO) and compared with SFT. Greedy decoding on the world's test "
        "splits; `test_cf` holds only non-canonical colours and no co-occurrence partners. CF@ID≥0.90 is the "
        "best counterfactual accuracy reachable with a decode-time bias on the canonical colour while "
        "in-distribution accuracy stays ≥ 0.90 (the grounding frontier, docs/eval.md). Bold: best among the "
        "trained methods and the base (the control is the visual ceiling, not a competitor).",
        "",
        markdown_table(methods, cols, values),
        "",
        "## Methods",
        "",
        *(f"- **{LABELS[m]}**: {DESCRIPTIONS[m]}." for m in methods),
        "",
        f"All three trained methods start from the base, fine-tune every language-side weight ("
        f"{'the vision tower and projector too' if t.train_vision else 'vision tower and projector frozen'}) for "
        f"{t.steps} steps of {t.batch_size} rows at lr {t.lr:g} (warm-up "
        f"{t.warmup_ratio:.0%}, cosine), β {t.beta:g}, on the same rows in the same order. "
        f"**SFT anchor:** DPO and NaPO add the length-normalised NLL of the chosen answer with weight "
        f"{t.sft_weight:g} (RPO-style, in neither paper): without it every pairwise loss breaks this tiny model's "
        "output format (docs/world.md, \"What the design runs showed\", item 6). SFT is that term alone, so the "
        "pairwise terms' own effect is the difference to SFT.",
        "",
        "## Pairs",
        "",
        f"Pool: {pool.images} train-split images ({share}), their {' and '.join(pool.tasks)} rows; chosen = the "
        f"ground-truth answer. Negatives from the base model itself: image weakening (diffusion noise t = "
        f"{p.weakening_t}, T = 0.2), rule-based error injection (one common-but-wrong edit from the pool's own "
        f"statistics), language-biased answers (no image) and vision-biased answers (no question), "
        f"{p.num_beams} beams. BPO's pairs = image_weakening + error_injection; NaPO's pairs = error_injection "
        "(the original-pair role) + language_bias + vision_bias. Negatives equal to the chosen answer are dropped.",
        "",
        f"Rows: {d.pairs_summary.get('rows', 0)}; negatives kept per kind: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.get("kept", {}).items()))
        + "; negatives dropped by the filters (kind/reason): "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.get("filters", {}).get("dropped_by_kind", {}).items())),
        "",
        "Every pair, with its image, weakened images, negatives and reference margins (filters, search, histograms "
        "per kind; `unprior pairs browse`): [browse/index.html](browse/index.html).",
        "",
        "## Noise report (reference margins, NaPO Fig. 4)",
        "",
        *_noise_lines(d),
        "",
        *(f"![{name}]({file})" for name, file in figures.items()),
        "",
        "## Reproduce",
        "",
        "```bash",
        "unprior demo " + (f"--config {d.cfg.out}/configs/demo.yaml" if d.cfg.out else ""),
        "# or stage by stage, with the resolved configs written beside this report:",
        f"unprior pairs --config {d.out}/configs/pairs.yaml && unprior pairs merge out={d.pairs_dir}",
        f"unprior score --config {d.out}/configs/score.yaml",
        *(f"unprior train --config {d.out}/configs/train_{m}.yaml" for m in d.cfg.methods),
        *(f"unprior eval run benchmark=world model={d.models[m]} label='{LABELS[m]}' "
          f"options.world_dir={d.world} out=runs/eval/{m}-world" for m in methods),
        *(f"unprior eval frontier model={d.models[m]} world_dir={d.world} out=runs/eval/{m}-frontier"
          for m in methods if d.cfg.frontier),
        "```",
        "",
        "## Time",
        "",
        "| step | seconds | from cache |",
        "|---|---|---|",
        *(f"| {k} | {v:.0f} | {'yes' if d.cached.get(k) else 'no'} |" for k, v in d.seconds.items()),
        "",
    ]
    (d.out / "report.md").write_text("\n".join(lines))


def step_report(d: Demo) -> None:
    from unprior.eval.compare import bar_chart
    from unprior.pairs.browse import BrowseConfig, write_browser

    methods, cols, values = results_table(d)
    print_table(d, methods, cols, values)
    figures = {}
    bar_chart([LABELS[m] for m in methods], cols, values, d.out / "metrics.png")
    figures["metric per method"] = "metrics.png"
    figures["reference margins per negative kind (summed)"] = "noise_sum.png"
    figures["reference margins per negative kind (per token)"] = "noise_mean.png"
    if "napo" in d.train_dirs and plot_q_gamma(d.train_dirs["napo"] / "metrics.jsonl", d.out / "napo_q_gamma.png"):
        figures["NaPO: q and γ over training"] = "napo_q_gamma.png"
    table = {m: {_title(c): values[i][j] for j, c in enumerate(cols)} for i, m in enumerate(methods)}
    write_json(d.out / "results.json", {
        "table": table,
        "columns": {_title(c): {"benchmark": c.benchmark, "metric": c.metric,
                                "higher_is_better": c.higher_is_better} for c in cols},
        "methods": {m: {"label": LABELS[m], "description": DESCRIPTIONS[m], "model": str(d.models[m]),
                        "world": d.evals[m]["world"]["metrics"],
                        "frontier": d.evals[m].get("frontier", {}).get("metrics"),
                        "eval_dirs": d.evals[m]["dirs"],
                        "train_dir": str(d.train_dirs[m]) if m in d.train_dirs else None} for m in methods},
        "world": str(d.world),
        "pairs": {"file": str(d.pairs_file), "summary": d.pairs_summary},
        "reference": str(d.reference),
        "noise_report": read_json(d.out / "noise_report.json"),
        "seconds": d.seconds,
        "cached": d.cached,
        "config": to_dict(d.cfg),
    })
    write_browser(BrowseConfig(pairs=str(d.pairs_file), score=str(d.reference), out=str(d.out / "browse"),
                               title="unprior demo: pairs and reference margins", overwrite=True))
    write_markdown(d, methods, cols, values, figures)
    d.log(f"report: {d.out / 'report.md'} (results.json, browse/index.html, {', '.join(sorted(figures.values()))})")

