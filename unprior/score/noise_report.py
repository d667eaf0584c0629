"""The noise report: how much the frozen starting model already separates chosen answers from each negative kind.

For every (chosen, negative) pair the reference margins are

    m_Σ = log π_ref(y_w) − log π_ref(y_l)                     (summed log-probs, as NaPO's ψ_Σ without β)
    m_μ = log π_ref(y_w)/|y_w| − log π_ref(y_l)/|y_l|         (length-averaged, ψ_μ)

NaPO Fig. 4 plots these raw margins per bias type and finds that noisy (actually fine) negatives have smaller ones:
the average margin for language-biased negatives, the summed margin for vision-biased ones (NaPO Eq. 12;
docs/papers.md N1). Per kind the report gives the distribution of both, the share of negatives the reference already
prefers to the chosen answer (margin < 0), and two q values of Eq. 12's rule (official-code formula):


- ``q_start``: the value training starts from. At step 0 the policy equals the reference, so the training margin is
  0 and q = 1 (MAE-like) for every kind.
- ``q_from_reference``: the q the rule would give if the reference's own mean margin were the training margin,
  with the paper's α per margin type (0.5 for m_μ, 0.01 for m_Σ). A low value means the reference already separates
  the kind well (clean, easy negatives); a value near 1 flags a kind the reference cannot tell from the chosen answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from unprior.guards import json_safe
from unprior.io import pyplot, save_figure, write_json
from unprior.losses import noise_q

ALPHA = {"mean": 0.5, "sum": 0.01}
"""NaPO's α per margin type (docs/papers.md N1): 0.5 on the averaged margin, 0.01 on the summed one."""
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def reference_margins(table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """``{kind: {"sum": (n,), "mean": (n,)}}`` reference margins, chosen minus negative, for every negative."""
    data = table.to_pydict()
    chosen: dict[int, tuple[float, float]] = {}
    for row, response, total, mean in zip(data["row"], data["response"], data["logp_sum"], data["logp_mean"],
                                          strict=True):
        if response == 0:
            chosen[row] = (total, mean)
    margins: dict[str, dict[str, list[float]]] = {}
    for row, response, kind, total, mean in zip(
        data["row"], data["response"], data["kind"], data["logp_sum"], data["logp_mean"], strict=True
    ):
        if response == 0:
            continue
        entry = margins.setdefault(kind, {"sum": [], "mean": []})
        entry["sum"].append(chosen[row][0] - total)
        entry["mean"].append(chosen[row][1] - mean)
    return {k: {t: np.asarray(v, dtype=np.float64) for t, v in m.items()} for k, m in sorted(margins.items())}


def _summary(values: np.ndarray, alpha: float) -> dict[str, Any]:
    values = values[np.isfinite(values)]  # entries hold finite values only; a table from elsewhere may not
    if not values.size:
        return {"mean": None, "std": None, "quantiles": {}, "share_negative": None, "share_tied": None,
                "q_from_reference": None, "alpha": alpha}
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {f"p{int(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES},
        "share_negative": float((values < 0).mean()),
        "share_tied": float((values == 0).mean()),
        "q_from_reference": float(noise_q(float(values.mean()), alpha=alpha)),
        "alpha": alpha,
    }


def noise_report(margins: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The report as a JSON-able dict: ``{"kinds": {kind: {"n", "q_start", "sum": {...}, "mean": {...}}}}``.

    Args:
        margins: :func:`reference_margins` of a reference table.
    """
    kinds = {
        kind: {
            "n": len(m["sum"]),
            "q_start": float(noise_q(0.0, alpha=1.0)),
            "sum": _summary(m["sum"], ALPHA["sum"]),
            "mean": _summary(m["mean"], ALPHA["mean"]),
        }
        for kind, m in margins.items()
    }
    return {"margins": "reference log-prob of the chosen answer minus the negative's (sum: summed; mean: per token)",
            "kinds": kinds}


def write_noise_report(table: pa.Table, out: str | Path) -> dict[str, Any]:
    """Write ``noise_report.json``, ``noise_sum.png`` and ``noise_mean.png`` (one histogram per kind) into ``out``.

    Returns:
        The report.
    """
    out = Path(out)
    margins = reference_margins(table)
    report = noise_report(margins)
    write_json(out / "noise_report.json", json_safe(report))
    for margin, label in (("sum", "summed log-prob margin m_Σ"), ("mean", "per-token log-prob margin m_μ")):
        fig, ax = pyplot().subplots(figsize=(6.4, 3.6), dpi=110)
        for kind, values in margins.items():
            finite = values[margin][np.isfinite(values[margin])]
            if not finite.size:  # nothing to draw (a histogram of NaNs raises)
                continue
            share = report["kinds"][kind][margin]["share_negative"]
            ax.hist(finite, bins=40, histtype="step", linewidth=1.4, label=f"{kind} ({share:.0%} < 0)")
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"reference {label}: chosen − negative")
        ax.set_ylabel("negatives")
        ax.set_title("Noise report: reference margins per negative kind (NaPO Fig. 4)", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        save_figure(fig, out / f"noise_{margin}.png")
    return report
