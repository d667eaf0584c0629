"""Synthetic pairs files and reference entries for the browser tests, with margins known in closed form."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unprior.formats.pairs import Negative, PairRow, write_pairs
from unprior.io import sha256_file, write_json, write_jsonl

COLOURS = [(220, 40, 40), (40, 180, 60), (40, 80, 220)]
CHOSEN_LOGP, CHOSEN_TOKENS, NEGATIVE_TOKENS = -10.0, 5, 4
SEARCH_WORD, SEARCH_ROWS = "zebra", (11, 42)
UNSCORED_ROW = 7


def kinds_of(i: int) -> list[str]:
    """Row i's negatives: error_injection always, language_bias on even rows, image_weakening every third row,
    vision_bias every fifth."""
    kinds = ["error_injection"]
    if i % 2 == 0:
        kinds.append("language_bias")
    if i % 3 == 0:
        kinds.append("image_weakening")
    if i % 5 == 0:
        kinds.append("vision_bias")
    return kinds


def margin(i: int, j: int) -> float:
    """m_Σ of row i's negative j: integers in [-5, 14]."""
    return float((i * 7 + j * 3) % 20 - 5)


def _provenance(i: int, kind: str, seeds: int) -> dict:
    if kind != "image_weakening":
        return {"strategy": kind}
    return {"strategy": kind, "perturbation": "diffusion_noise", "params": {"t": 500},
            "seed": i % seeds if seeds else i, "space": "image"}


def row_dict(i: int, seeds: int = 0) -> dict:
    """Row i as JSON-able fields: image ``images/<i % 3>.png``; the weakening seed is i (or i % seeds)."""
    negatives = [{"text": f"A {kind.replace('_', ' ')} answer for row {i}.", "kind": kind,
                  "provenance": _provenance(i, kind, seeds)} for kind in kinds_of(i)]
    chosen = f"The {SEARCH_WORD} is red." if i in SEARCH_ROWS else f"The square is red (row {i})."
    return {"id": f"row-{i:05d}", "image": f"images/{i % len(COLOURS)}.png", "prompt": f"What colour is object {i}?",
            "chosen": chosen, "negatives": negatives, "meta": {"task": "t"}}


def write_images(root: Path) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for c, colour in enumerate(COLOURS):
        Image.new("RGB", (32, 32), colour).save(root / "images" / f"{c}.png")


def make_rows(n: int, root: Path, *, seeds: int = 0) -> list[PairRow]:
    write_images(root)
    rows = []
    for i in range(n):
        d = row_dict(i, seeds)
        negatives = [Negative(x["text"], x["kind"], x["provenance"]) for x in d["negatives"]]
        rows.append(PairRow(d["id"], root / d["image"], d["prompt"], d["chosen"], negatives, d["meta"]))
    return rows


def make_pairs(tmp: Path, n: int = 60, *, suffix: str = ".parquet", seeds: int = 0) -> Path:
    """A pairs file of ``n`` rows whose images live in ``tmp/data/images``."""
    root = tmp / "data"
    path = tmp / f"pairs{suffix}"
    write_pairs(make_rows(n, root, seeds=seeds), path, image_root=root, batch_size=4096)
    return path


def make_jsonl_pairs(tmp: Path, n: int, *, seeds: int = 3) -> Path:
    """The same rows as :func:`make_pairs` as a JSONL pairs file, written directly (fast for 100k rows)."""
    root = tmp / "data"
    write_images(root)
    path = root / "pairs.jsonl"  # JSONL image paths are relative to the file's folder
    path.write_text("".join(json.dumps(row_dict(i, seeds)) + "\n" for i in range(n)))
    return path


def make_score(pairs: Path, n: int, out: Path) -> Path:
    """A reference entry of ``pairs`` in unprior score's layout: margins from :func:`margin`, row 7 dropped."""
    cols: dict[str, list] = {k: [] for k in ("row", "id", "response", "kind", "logp_sum", "logp_mean", "n_tokens",
                                             "truncated")}

    def add(i: int, response: int, kind: str, total: float, tokens: int) -> None:
        for k, v in zip(cols, (i, f"row-{i:05d}", response, kind, total, total / tokens, tokens, False), strict=True):
            cols[k].append(v)

    for i in range(n):
        if i == UNSCORED_ROW:
            continue
        add(i, 0, "chosen", CHOSEN_LOGP, CHOSEN_TOKENS)
        for j, kind in enumerate(kinds_of(i)):
            add(i, j + 1, kind, CHOSEN_LOGP - margin(i, j), NEGATIVE_TOKENS)
    out.mkdir(parents=True)
    pq.write_table(pa.table(cols), out / "reference.parquet")
    write_jsonl(out / "dropped.jsonl", [{"row": UNSCORED_ROW, "id": f"row-{UNSCORED_ROW:05d}",
                                          "reason": "prompt_too_long"}])
    write_json(out / "manifest.json", {"kind": "unprior-reference", "format_version": 1, "key": out.name,
                                       "key_inputs": {"pairs": sha256_file(pairs)}})
    return out


def expected_rows(n: int, kinds: set[str], lo: float = float("-inf"), hi: float = float("inf")) -> list[int]:
    """Rows with a negative of ``kinds`` whose m_Σ is in [lo, hi] (an unscored row fails any range)."""
    ranged = lo > float("-inf") or hi < float("inf")
    out = []
    for i in range(n):
        for j, kind in enumerate(kinds_of(i)):
            if kind in kinds and (not ranged or (i != UNSCORED_ROW and lo <= margin(i, j) <= hi)):
                out.append(i)
                break
    return out


def read_index(out: Path) -> dict:
    text = (out / "data" / "index.js").read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))
