"""The grounding frontier: counterfactual accuracy at matched in-distribution accuracy (``unprior eval frontier``).

Greedy ID and CF attribute accuracy trade off: a model that merely trusts its colour prior less gains CF and loses
ID, without looking at the image any better (docs/world.md, "What the design runs showed", item 8). The frontier
separates the two. For every attribute row of ``test_id`` and ``test_cf`` the model is teacher-forced up to the
colour slot of the world's answer template ("The apple is") and the log-probability of each of the eight colour
words is read (one forward pass per batch, no generation). A bias ``b`` is added to the canonical colour's score and
the prediction is the best-scoring colour; sweeping ``b`` traces the model's prior/vision trade-off curve. Reported:


- the accuracies at ``b = 0`` (the greedy numbers, for a model that answers in the template);
- the best CF accuracy over the biases whose ID accuracy is at least each threshold (0.90, 0.95), with that bias.

A recipe grounds the model only if it raises CF at matched ID; a constant decode-time bias on the untrained base
already reproduces a "gain" that merely moves along its curve. CF@ID≥0.95 is fragile (many models top out near
0.96 ID); trust ID ≥ 0.90 more.

Colour words that the tokenizer splits into several tokens are scored by the sum of their tokens' log-probs (one
teacher-forced sequence per colour); single-token colours (the world tokenizer's " red" ...) take one sequence
per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from unprior.config import config_hash, to_dict
from unprior.eval.benchmarks.world import resolve_world_dir
from unprior.eval.config import FrontierConfig
from unprior.eval.generation import base_model, load_eval_model, load_image, model_info
from unprior.eval.runner import model_label
from unprior.io import pyplot, read_json, read_jsonl, save_figure, write_json, write_jsonl
from unprior.models.generate import chat_text
from unprior.world.build import attribute_qa
from unprior.world.spec import COLOUR_NAMES, canonical

FRONTIER_VERSION = "frontier-v1"
SPLITS = ("test_id", "test_cf")


def answer_prefix(category: str) -> str:
    """The world's attribute answer up to (not including) the colour word: ``"The apple is"``."""
    answer = attribute_qa(category, COLOUR_NAMES[0])[1]
    return answer[: answer.index(" " + COLOUR_NAMES[0])]


def colour_token_ids(tokenizer: Any, context: str) -> list[list[int]]:
    """Token ids of each colour word (after a space) as the tokenizer splits it right after ``context``.

    Raises:
        ValueError: the tokenizer merges the colour word with the end of ``context``, so no clean slot exists.
    """
    pre = tokenizer(context, add_special_tokens=False)["input_ids"]
    out = []
    for colour in COLOUR_NAMES:
        full = tokenizer(f"{context} {colour}", add_special_tokens=False)["input_ids"]
        if full[: len(pre)] != pre or len(full) == len(pre):
            raise ValueError(f"the tokenizer merges ' {colour}' into {context!r}; no clean colour slot")
        out.append(full[len(pre) :])
    return out


@torch.no_grad()
def _last_logprobs(model: Any, processor: Any, texts: list[str], images: list[Any], keep: int) -> torch.Tensor:
    """(B, keep, V) next-token log-probs at the last ``keep`` positions of each text, batched with left padding.

    ``[:, -1]`` is the distribution of the token after the text; ``[:, -1 - j]`` predicts the text's j-th last token.

    Position ids count real tokens only, as ``generate`` does with a left-padded batch, so b = 0 reproduces greedy
    decoding.
    """
    processor.tokenizer.padding_side = "left"
    enc = processor(images=images, text=texts, return_tensors="pt", padding=True)
    param = next(model.parameters())
    enc = {k: v.to(param.device, dtype=param.dtype if v.is_floating_point() else None) for k, v in enc.items()}
    position_ids = (enc["attention_mask"].long().cumsum(-1) - 1).masked_fill(enc["attention_mask"] == 0, 0)
    logits = model(**enc, position_ids=position_ids, logits_to_keep=keep).logits[:, -keep:]
    return torch.log_softmax(logits.float(), dim=-1)


def _ending_logprobs(model: Any, processor: Any, texts: list[str], images: list[Any],
                     endings: list[list[int]]) -> np.ndarray:
    """(B,) sum of log p(ending tokens) for texts that end with ``endings[i]``."""
    k = max(len(e) for e in endings)
    logp = _last_logprobs(model, processor, texts, images, k + 1)  # position j predicts the token at j + 1
    out = np.zeros(len(texts))
    for i, ids in enumerate(endings):
        pos = torch.arange(k - len(ids), k, device=logp.device)
        out[i] = float(logp[i, pos, torch.tensor(ids, device=logp.device)].sum())
    return out


def slot_logprobs(model: Any, processor: Any, rows: Sequence[dict[str, Any]], root: Path,
                  batch_size: int = 32) -> np.ndarray:
    """(N, 8) log-prob of each colour word (``COLOUR_NAMES`` order) in the answer slot of each attribute row.

    Args:
        model: An image-text-to-text model in eval mode.
        processor: Its processor (chat template, tokenizer, image processor).
        rows: World attribute rows (``prompt``, ``image`` relative to ``root``, ``meta.target``).
        root: The world directory.
        batch_size: Rows per forward pass (times 8 when colour words span several tokens).
    """
    contexts = [chat_text(processor, r["prompt"], True) + answer_prefix(r["meta"]["target"]) for r in rows]
    out = np.zeros((len(rows), len(COLOUR_NAMES)), dtype=np.float64)
    for start in range(0, len(rows), batch_size):
        batch = range(start, min(start + batch_size, len(rows)))
        images = [load_image(root / rows[i]["image"]) for i in batch]
        ids = [colour_token_ids(processor.tokenizer, contexts[i]) for i in batch]
        if all(len(t) == 1 for per_row in ids for t in per_row):
            out[batch.start : batch.stop] = _single_token_scores(model, processor, [contexts[i] for i in batch],
                                                                 images, ids)
            continue
        texts = [f"{contexts[i]} {c}" for i in batch for c in COLOUR_NAMES]
        flat = _ending_logprobs(model, processor, texts, [im for im in images for _ in COLOUR_NAMES],
                                [t for per_row in ids for t in per_row])
        out[batch.start : batch.stop] = np.asarray(flat).reshape(len(batch), len(COLOUR_NAMES))
    return out


def _single_token_scores(model: Any, processor: Any, contexts: list[str], images: list[Any],
                         ids: list[list[list[int]]]) -> np.ndarray:
    """(B, 8) next-token log-probs of single-token colour words after each context (one sequence per row)."""
    logp = _last_logprobs(model, processor, contexts, images, 1)[:, -1]
    index = torch.tensor([[t[0] for t in per_row] for per_row in ids], device=logp.device)
    return logp.gather(1, index).cpu().numpy().astype(np.float64)


def bias_grid(lo: float = -15.0, hi: float = 15.0, step: float = 0.25) -> np.ndarray:
    """Biases from ``lo`` to ``hi`` in ``step`` increments, always including 0."""
    n = math.floor((hi - lo) / step + 1e-9) + 1
    grid = lo + step * np.arange(n)
    return np.unique(np.round(np.append(grid, 0.0), 10))


def biased_accuracy(scores: np.ndarray, truth: np.ndarray, canon: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """Accuracy of argmax(scores + b at the canonical colour) for each bias ``b``.

    Args:
        scores: (N, C) colour scores.
        truth: (N,) index of the true colour.
        canon: (N,) index of the row category's canonical colour.
        biases: (K,) biases.

    Returns:
        (K,) accuracies (0 for N = 0).
    """
    if len(scores) == 0:
        return np.zeros(len(biases))
    onehot = np.zeros_like(scores)
    onehot[np.arange(len(scores)), canon] = 1.0
    shifted = scores[None] + biases[:, None, None] * onehot[None]  # (K, N, C)
    return (shifted.argmax(-1) == truth[None]).mean(-1)


def frontier_summary(biases: np.ndarray, id_acc: np.ndarray, cf_acc: np.ndarray,
                     thresholds: Sequence[float]) -> dict[str, Any]:
    """b = 0 accuracies and, per ID threshold, the best CF accuracy among biases reaching it (None if none does)."""
    zero = int(np.argmin(np.abs(biases)))
    best: dict[str, Any] = {}
    for t in thresholds:
        ok = np.flatnonzero(id_acc >= t - 1e-12)
        if len(ok) == 0:
            best[f"{t:.2f}"] = None
            continue
        # best CF; among ties, the bias closest to 0
        j = min(ok, key=lambda i: (-cf_acc[i], abs(biases[i])))
        best[f"{t:.2f}"] = {"cf_accuracy": float(cf_acc[j]), "id_accuracy": float(id_acc[j]), "bias": float(biases[j])}
    return {
        "at_zero": {"id_accuracy": float(id_acc[zero]), "cf_accuracy": float(cf_acc[zero])},
        "best_cf_at_id": best,
        "max_id_accuracy": float(id_acc.max()),
        "max_cf_accuracy": float(cf_acc.max()),
    }


def attribute_rows(root: Path, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The attribute rows of a world split (of its first ``limit`` images when given)."""
    rows = [r for r in read_jsonl(root / f"{split}.jsonl") if r["task"] == "attribute"]
    if limit is not None:
        keep = set(list(dict.fromkeys(r["image"] for r in rows))[:limit])
        rows = [r for r in rows if r["image"] in keep]
    return rows


def _targets(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    truth = np.array([COLOUR_NAMES.index(r["meta"]["colour"]) for r in rows], dtype=np.int64)
    canon = np.array([COLOUR_NAMES.index(canonical(r["meta"]["target"])) for r in rows], dtype=np.int64)
    return truth, canon


def grounding_frontier(model: Any, processor: Any, world_dir: str | Path, *, batch_size: int = 32,
                       biases: np.ndarray | None = None, id_thresholds: Sequence[float] = (0.90, 0.95),
                       limit: int | None = None) -> dict[str, Any]:
    """Sweep a decode-time bias on the canonical colour; return the ID/CF curve and CF at matched ID.

    Args:
        model: An image-text-to-text model in eval mode.
        processor: Its processor.
        world_dir: A world directory with ``test_id.jsonl`` and ``test_cf.jsonl``.
        batch_size: Rows per forward pass.
        biases: Biases to sweep (default ``bias_grid()``: -15 to 15 in steps of 0.25).
        id_thresholds: ID accuracies at which the best CF accuracy is reported.
        limit: Use the attribute rows of the first ``limit`` images of each split.

    Returns:
        ``{"curve": [{bias, id_accuracy, cf_accuracy}], "at_zero", "best_cf_at_id": {"0.90": {...} | None},
        "max_id_accuracy", "max_cf_accuracy", "n": {split: rows}, "multi_token_colours", "rows": {split: [{id,
        colour, canonical, logprobs}]}}``.
    """
    root = Path(world_dir)
    biases = bias_grid() if biases is None else np.asarray(biases, dtype=np.float64)
    acc, rows_out, n = {}, {}, {}
    for split in SPLITS:
        rows = attribute_rows(root, split, limit)
        scores = slot_logprobs(model, processor, rows, root, batch_size)
        truth, canon = _targets(rows)
        acc[split] = biased_accuracy(scores, truth, canon, biases)
        n[split] = len(rows)
        rows_out[split] = [{"id": r["id"], "colour": r["meta"]["colour"], "canonical": canonical(r["meta"]["target"]),
                            "logprobs": dict(zip(COLOUR_NAMES, np.round(s, 5).tolist(), strict=True))}
                           for r, s in zip(rows, scores, strict=True)]
    curve = [{"bias": float(b), "id_accuracy": float(i), "cf_accuracy": float(c)}
             for b, i, c in zip(biases, acc["test_id"], acc["test_cf"], strict=True)]
    tokens = colour_token_ids(processor.tokenizer, answer_prefix("apple"))
    return {"curve": curve, **frontier_summary(biases, acc["test_id"], acc["test_cf"], id_thresholds), "n": n,
            "multi_token_colours": any(len(t) > 1 for t in tokens), "rows": rows_out}


def plot_frontier(result: dict[str, Any], out_png: str | Path, label: str = "") -> Path:
    """Two panels: ID and CF accuracy against the bias; CF against ID (the frontier) with the thresholds."""
    plt = pyplot()
    b = [p["bias"] for p in result["curve"]]
    i = [p["id_accuracy"] for p in result["curve"]]
    c = [p["cf_accuracy"] for p in result["curve"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(b, i, label="ID accuracy")
    left.plot(b, c, label="CF accuracy")
    left.axvline(0, color="grey", lw=0.8, ls=":")
    left.set_xlabel("bias on the canonical colour's log-prob")
    left.set_ylabel("attribute accuracy")
    left.legend(fontsize=8)
    right.plot(i, c, color="black", lw=1)
    z = result["at_zero"]
    right.scatter([z["id_accuracy"]], [z["cf_accuracy"]], color="black", zorder=3, label="b = 0 (greedy)")
    for k, (t, best) in enumerate(result["best_cf_at_id"].items()):
        right.axvline(float(t), color="grey", lw=0.8, ls="--")
        if best is not None:
            right.scatter([best["id_accuracy"]], [best["cf_accuracy"]], marker="*", s=90, zorder=3,
                          color=plt.get_cmap("tab10")(k + 1),
                          label=f"best CF at ID ≥ {t}: {best['cf_accuracy']:.3f} (b = {best['bias']:g})")
    right.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="ID accuracy", ylabel="CF accuracy")  # same axes for every model
    right.legend(fontsize=7)
    fig.suptitle(f"grounding frontier{': ' + label if label else ''}", fontsize=10)
    return save_figure(fig, out_png, dpi=150)


def frontier_results(cfg: FrontierConfig, result: dict[str, Any], world: Path) -> dict[str, Any]:
    """A ``results.json`` in the runner's format (benchmark ``world_frontier``), so ``eval compare`` can show it."""
    metrics: dict[str, float] = {"id_accuracy_b0": result["at_zero"]["id_accuracy"],
                                 "cf_accuracy_b0": result["at_zero"]["cf_accuracy"]}
    info = {"id_accuracy_b0": "ID attribute accuracy at b = 0 (slot argmax)",
            "cf_accuracy_b0": "CF attribute accuracy at b = 0 (slot argmax)"}
    for t, best in result["best_cf_at_id"].items():
        info[f"cf_at_id_{t}"] = f"best CF accuracy with ID accuracy >= {t}"
        if best is not None:
            metrics[f"cf_at_id_{t}"] = best["cf_accuracy"]
    manifest = world / "manifest.json"
    return {
        "benchmark": "world_frontier",
        "benchmark_version": FRONTIER_VERSION,
        "parser_version": None,
        "scorer_version": FRONTIER_VERSION,
        "provenance": {"world_dir": str(world), "world_hash": read_json(manifest).get("config_hash")
                       if manifest.is_file() else None, "method": "teacher-forced colour slot, canonical bias sweep"},
        "metrics": metrics,
        "metric_info": {k: {"higher_is_better": True, "description": v, "digits": 3} for k, v in info.items()
                        if k in metrics},
        "headline": [k for k in info if k.startswith("cf_at_id_") and k in metrics] + ["cf_accuracy_b0"],
        "n_items": sum(result["n"].values()),
        "model": {"label": model_label(cfg.label, cfg.model, cfg.adapter), "model": cfg.model, "adapter": cfg.adapter,
                  "backend": "hf", **model_info(cfg.adapter, "hf")},
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
    }


def run_frontier(cfg: FrontierConfig) -> int:
    """``unprior eval frontier``: compute, save and print the grounding frontier of one model."""
    console = Console(stderr=True)
    world = resolve_world_dir(cfg.world_dir)
    model, processor = load_eval_model(base_model(cfg.model, cfg.adapter), cfg.adapter)
    biases = bias_grid(cfg.bias_min, cfg.bias_max, cfg.bias_step)
    result = grounding_frontier(model, processor, world, batch_size=cfg.batch_size, biases=biases,
                                id_thresholds=cfg.id_thresholds, limit=cfg.limit)
    out = Path(cfg.out)
    rows = result.pop("rows")
    write_jsonl(out / "slot_logprobs.jsonl", ({"split": s, **r} for s, rs in rows.items() for r in rs))
    write_json(out / "frontier.json", {**result, "config": to_dict(cfg), "world_dir": str(world),
                                       "version": FRONTIER_VERSION})
    results = frontier_results(cfg, result, world)
    write_json(out / "results.json", results)
    plot_frontier(result, out / "frontier.png", results["model"]["label"])
    console.print(frontier_text(result, results["model"]["label"]), markup=False, highlight=False)
    console.print(f"written to {out}", markup=False, highlight=False)
    return 0


def frontier_text(result: dict[str, Any], label: str) -> str:
    """One line per number: the b = 0 accuracies and CF at each matched ID."""
    z = result["at_zero"]
    lines = [f"{label}: ID {z['id_accuracy']:.3f}, CF {z['cf_accuracy']:.3f} at b = 0 "
             f"({result['n']['test_id']} / {result['n']['test_cf']} attribute rows)"]
    for t, best in result["best_cf_at_id"].items():
        lines.append(f"  CF at ID >= {t}: " + ("- (ID never reaches it)" if best is None else
                                              f"{best['cf_accuracy']:.3f} (ID {best['id_accuracy']:.3f}, "
                                              f"b = {best['bias']:g})"))
    return "\n".join(lines)
