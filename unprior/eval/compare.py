"""``unprior eval compare RUN...``: one table across runs (like NaPO's Table 1) and a bar chart.

Each RUN is an eval output directory (or its ``results.json``). Runs are grouped into rows by model label and into
columns by benchmark and metric, so the runs of several benchmarks for the same model fill one row. By default the
columns are each benchmark's headline metrics; ``metrics=["all"]`` shows every metric, and ``"benchmark/metric"``
names pick columns. Arrows give the better direction; the best value per column is marked with ``*``; runs whose
results carry an approximation are marked with ``~``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unprior.eval.config import CompareConfig
from unprior.io import InputError, pyplot, read_json, save_figure


@dataclass(frozen=True)
class Column:
    benchmark: str
    metric: str
    higher_is_better: bool | None
    digits: int

    @property
    def title(self) -> str:
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        return f"{self.benchmark}\n{self.metric}{arrow}"


RESULT_KEYS = ("benchmark", "model", "metrics", "metric_info", "headline", "provenance")
"""What compare reads from a ``results.json``."""


def load_run(path: str | Path) -> dict[str, Any]:
    """``results.json`` of a run directory (or the file itself), with a clear error when it is missing."""
    p = Path(path)
    file = p / "results.json" if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no results.json (is the run finished?)")
    try:
        results = read_json(file)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{file}: not valid JSON ({e}); rerun `unprior eval run` to rewrite it") from None
    missing = [k for k in RESULT_KEYS if not isinstance(results, dict) or k not in results]
    if missing or not isinstance(results.get("model"), dict) or "label" not in results["model"]:
        raise InputError(f"{file}: not an eval results file (missing {', '.join(missing) or 'model.label'}); "
                         "pass run directories written by `unprior eval run`")
    results["_path"] = str(file)
    return results


def _rows(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> benchmark -> results; two runs of one benchmark for one label are an error."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        label, bench = r["model"]["label"], r["benchmark"]
        row = rows.setdefault(label, {})
        if bench in row:
            raise InputError(f"two {bench} runs are labelled {label!r}: {row[bench]['_path']} and {r['_path']}; "
                             "give them different labels")
        row[bench] = r
    return rows


def _columns(runs: list[dict[str, Any]], metrics: list[str] | None) -> list[Column]:
    cols: dict[tuple[str, str], Column] = {}
    for r in runs:
        names = list(r["metrics"]) if metrics == ["all"] else r["headline"] or list(r["metrics"])
        if metrics and metrics != ["all"]:
            names = [m.split("/", 1)[1] for m in metrics if m.split("/", 1)[0] == r["benchmark"]]
        for name in names:
            if name in r["metrics"]:
                info = r["metric_info"].get(name, {})
                cols.setdefault((r["benchmark"], name), Column(r["benchmark"], name, info.get("higher_is_better"),
                                                               info.get("digits", 1)))
    return list(cols.values())


def _best(values: list[float | None], higher: bool | None) -> float | None:
    present = [v for v in values if v is not None]
    if higher is None or len(present) < 2:
        return None
    return max(present) if higher else min(present)


def compare_table(runs: list[dict[str, Any]], metrics: list[str] | None = None) -> tuple[list[str], list[Column],
                                                                                          list[list[float | None]]]:
    """(row labels, columns, values[row][col]) for the given loaded runs."""
    rows = _rows(runs)
    cols = _columns(runs, metrics)
    values = [[rows[label].get(c.benchmark, {}).get("metrics", {}).get(c.metric) for c in cols] for label in rows]
    return list(rows), cols, values


def format_table(labels: list[str], cols: list[Column], values: list[list[float | None]],
                 approximate: set[tuple[str, str]] | None = None) -> str:
    """Plain-text table; ``*`` marks the best value per column, ``~`` an approximate protocol, n/a no value."""
    approximate = approximate or set()
    header = ["model", *(c.title.replace("\n", ": ") for c in cols)]
    body = []
    for i, label in enumerate(labels):
        cells = [label]
        for j, c in enumerate(cols):
            v = values[i][j]
            best = _best([row[j] for row in values], c.higher_is_better)
            text = "n/a" if v is None else f"{v:.{c.digits}f}"  # not run, or no items for it in the run
            text += "*" if v is not None and v == best else ""
            text += "~" if (label, c.benchmark) in approximate else ""
            cells.append(text)
        body.append(cells)
    widths = [max(len(r[k]) for r in [header, *body]) for k in range(len(header))]
    fmt = ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(r, widths,
                                                                                                strict=True)))
           for r in [header, *body]]
    return "\n".join([fmt[0], "  ".join("-" * w for w in widths), *fmt[1:]])


def bar_chart(labels: list[str], cols: list[Column], values: list[list[float | None]], out_png: str | Path) -> Path:
    """One small bar panel per column, one bar per model; the best bar is outlined."""
    plt = pyplot()
    n = len(cols)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for j, c in enumerate(cols):
        ax = axes[j // ncols][j % ncols]
        col = [row[j] for row in values]
        best = _best(col, c.higher_is_better)
        for i, v in enumerate(col):
            if v is None:
                continue
            ax.bar(i, v, color=colors[i % len(colors)], edgecolor="black" if v == best else "none", linewidth=1.5)
            ax.text(i, v, f"{v:.{c.digits}f}", ha="center", va="bottom", fontsize=7)
        ax.set_title(c.title, fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    fig.suptitle("outlined bar: best in its panel", fontsize=8, x=0.99, ha="right")
    return save_figure(fig, out_png, dpi=150)


def run_compare(runs: list[str | Path], out_png: str | Path | None = None, metrics: list[str] | None = None) -> str:
    """Load the runs, return the comparison table as text, and draw the bar chart when ``out_png`` is given.

    Args:
        runs: Eval output directories (or their results.json files).
        out_png: Where to save the bar chart, or None for no chart.
        metrics: None for each benchmark's headline metrics, ["all"] for all, or "benchmark/metric" names.
    """
    if not runs:
        raise ValueError("give at least one run directory")
    loaded = [load_run(r) for r in runs]
    labels, cols, values = compare_table(loaded, metrics)
    if not cols:
        raise ValueError(f"none of the metrics {metrics} is in these runs")
    approximate = {(r["model"]["label"], r["benchmark"]) for r in loaded if r["provenance"].get("approximate")}
    text = format_table(labels, cols, values, approximate)
    if approximate:
        text += "\n~ approximate protocol (see the run's results.json provenance); not comparable with papers"
    if out_png is not None:
        bar_chart(labels, cols, values, out_png)
    return text


def run_compare_config(cfg: CompareConfig) -> int:
    """CLI entry: print the table (and save the chart)."""
    print(run_compare(cfg.runs, cfg.png or None, cfg.metrics or None))
    if cfg.png:
        print(f"bar chart: {cfg.png}")
    return 0
