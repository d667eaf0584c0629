"""A study's summary: mean ± std over seeds, the gap each arm closes, paired differences, the noise pivot."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from unprior.io import pyplot, save_figure, write_json
from unprior.pipeline.config import METRICS
from unprior.study.config import DERIVED, PROBE, StudyConfig


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def derive(results: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Arm -> seed -> metrics, with the frontier gap closed and the ID cost against that seed's base."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by.setdefault(r["arm"], {})[r["seed"]] = dict(r["metrics"])
    bases, controls = by.get("base", {}), by.get("control", {})
    shared = next(iter(controls.values()), {}).get("frontier") if len(controls) == 1 else None
    for arm, seeds in by.items():
        for seed, m in seeds.items():
            base = bases.get(seed)
            if base is None or arm in ("base", "control"):
                continue
            ceiling = controls[seed]["frontier"] if seed in controls else shared  # the seed's own, else the one
            if ceiling is not None and ceiling > base["frontier"]:  # a control below its base is no ceiling
                m["gap_closed"] = (m["frontier"] - base["frontier"]) / (ceiling - base["frontier"])
            m["id_cost"] = base["id"] - m["id"]
    return by


def write_summary(cfg: StudyConfig, results: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """``summary.md`` and ``summary.json`` from the unit results."""
    by = derive(results)
    order = [a for a in ("base", "control") if a in by] + [a for a in cfg.arms if a in by]
    probed = any("probe_cf" in m for seeds in by.values() for m in seeds.values())
    columns = {**{k: (v[2], v[3]) for k, v in METRICS.items()}, **(PROBE if probed else {}), **DERIVED}
    table = {arm: {k: [by[arm][s][k] for s in sorted(by[arm]) if by[arm][s].get(k) is not None] for k in columns}
             for arm in order}
    label = {a: (cfg.arms[a].label or a) if a in cfg.arms else a for a in order}
    lines = [f"# {cfg.title or out.name}", "",
             f"Mean ± sample std over seeds {', '.join(map(str, cfg.seeds))} (n per row in the last column). "
             "Arrows: which direction is better. Gap closed: (frontier − base frontier) / (ceiling − base "
             "frontier) per seed, ceiling = the no-prior control. ID cost: base ID accuracy − ID accuracy.", "",
             "| arm | " + " | ".join(f"{t} {'↑' if hi else '↓'}" for t, hi in columns.values()) + " | n |",
             "|---|" + "---|" * (len(columns) + 1)]
    for arm in order:
        n = len(by[arm])
        lines.append(f"| {label[arm]} | " + " | ".join(_fmt(table[arm][k]) for k in columns) + f" | {n} |")
    comparisons = _comparisons(cfg, by)
    if comparisons:
        lines += ["", "## Paired differences (same seed: same base, pool, pairs and row order)", "",
                  "| a − b | CF attr acc | CF@ID≥0.90 | ID attr acc | CF POPE adv FP | a better on CF (seeds) |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['a']} − {c['b']} | {_fmt(c['cf'])} | {_fmt(c['frontier'])} | {_fmt(c['id'])} | "
                         f"{_fmt(c['pope_adv_fp'])} | {c['wins_cf']}/{len(c['cf'])} |")
    pivot = _noise_pivot(cfg, by)
    if pivot:
        rates = sorted({r for g in pivot.values() for r in g})
        for key, title in (("cf", "CF attr acc"), ("frontier", "CF@ID≥0.90"), ("id", "ID attr acc")):
            lines += ["", f"## {title} by share of noisy negatives", "",
                      "| objective | " + " | ".join(f"{r:.0%}" for r in rates) + " |",
                      "|---|" + "---|" * len(rates)]
            for group, cells in pivot.items():
                lines.append(f"| {group} | " + " | ".join(_fmt(cells[r][key]) if r in cells else "-"
                                                           for r in rates) + " |")
    if pivot and plot_noise(pivot, out / "noise.png"):
        lines += ["", "![CF accuracy and frontier by share of noisy negatives](noise.png)"]
    late = _late_table(cfg, results)
    if late:
        lines += ["", "## q and γ at the end of training (mean of the last quarter of logged steps, over seeds)", "",
                  *late]
    lines += ["", "## Reproduce", "", "```bash", f"unprior study --config {out / 'config.yaml'}", "```", ""]
    (out / "summary.md").write_text("\n".join(lines))
    summary = {"columns": {k: {"title": t, "higher_is_better": hi} for k, (t, hi) in columns.items()},
               "arms": {a: {"label": label[a], "seeds": {str(s): m for s, m in by[a].items()},
                            "mean": {k: mean_std(v)[0] for k, v in table[a].items() if v},
                            "std": {k: mean_std(v)[1] for k, v in table[a].items() if v},
                            "cf_at_id_90": _mean(table[a]["frontier"]),
                            "gap_closed": _mean(table[a]["gap_closed"])} for a in order},
               "comparisons": comparisons, "noise_pivot": {g: {str(r): v for r, v in c.items()}
                                                           for g, c in pivot.items()},
               **_tower_probe(by)}
    write_json(out / "summary.json", summary)
    return summary


def _mean(values: list[float]) -> float | None:
    return mean_std(values)[0] if values else None


def _tower_probe(by: dict[str, dict[int, dict[str, float]]]) -> dict[str, float]:
    """Mean colour probe of the vision tower over the seeds' base models (present when the study probes)."""
    out = {}
    for key in ("tower_probe_cf", "tower_probe_id"):
        values = [m[key] for m in by.get("base", {}).values() if m.get(key) is not None]
        if values:
            out[key] = mean_std(values)[0]
    return out


def _comparisons(cfg: StudyConfig, by: dict[str, dict[int, dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for a, b in cfg.compare:
        seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
        if not seeds:
            continue
        diff = {k: [by[a][s][k] - by[b][s][k] for s in seeds] for k in ("cf", "frontier", "id", "pope_adv_fp")}
        rows.append({"a": a, "b": b, "seeds": seeds, **diff, "wins_cf": sum(d > 0 for d in diff["cf"])})
    return rows


def _noise_pivot(cfg: StudyConfig, by: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[float, Any]]:
    """Group -> noise rate -> metric -> per-seed values, for the groups with more than one rate."""
    pivot: dict[str, dict[float, Any]] = {}
    for name, arm in cfg.arms.items():
        if name in by:
            seeds = by[name].values()
            pivot.setdefault(arm.group or name, {})[arm.noise] = {
                k: [m[k] for m in seeds if m.get(k) is not None] for k in ("cf", "frontier", "id")}
    return {group: cells for group, cells in pivot.items() if len(cells) > 1}  # only groups with several rates


def plot_noise(pivot: dict[str, dict[float, Any]], png: Path) -> Path | None:
    """CF accuracy and frontier against the noise rate, one line per objective, mean ± std error bars."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "cf", "CF attribute accuracy"), (axes[1], "frontier", "CF@ID≥0.90")):
        for k, (group, cells) in enumerate(pivot.items()):
            rates = sorted(r for r in cells if cells[r][key])
            stats = [mean_std(cells[r][key]) for r in rates]
            shift = (k - (len(pivot) - 1) / 2) * 0.004  # side by side, so the error bars stay readable
            ax.errorbar([100 * (r + shift) for r in rates], [m for m, _ in stats], yerr=[s for _, s in stats],
                        marker="o", capsize=3, label=group)
        ax.set(xlabel="noisy negatives (% of the biased kinds)", title=title)
    axes[0].legend(fontsize=8)
    return save_figure(fig, png, dpi=120)


def _late_table(cfg: StudyConfig, results: list[dict[str, Any]]) -> list[str]:
    late: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for k, v in (r.get("train") or {}).get("late", {}).items():
            if v is not None:
                late.setdefault(r["arm"], {}).setdefault(k, []).append(v)
    keys = sorted({k for v in late.values() for k in v})
    if not keys:
        return []
    lines = ["| arm | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for arm in (a for a in cfg.arms if a in late):
        lines.append(f"| {cfg.arms[arm].label or arm} | " + " | ".join(_fmt(late[arm].get(k, []), 2)
                                                                        for k in keys) + " |")
    return lines


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every unit result of a study folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(out, "runs").glob("*.json"))]

