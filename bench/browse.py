"""``unprior pairs browse`` at scale: write the browser for a synthetic 100k-row scored pairs file, then time the page
in headless Chromium (open, kind filter, margin range, sort, next page, a full-text search over every chunk).

    python bench/browse.py                          # 100k rows, 1000 distinct images, scored
    python bench/browse.py --rows 20000 --json out.json

Rows look like the demo's at a larger scale: three to five negatives of the four generated kinds, answers of 10-40
words, real-valued margins (m_Σ ~ N(2, 3), m_μ ~ N(0.2, 0.4)), image-weakening provenance with ``--weakened``
distinct (image, seed) pairs. Needs Debian's chromium and playwright (requirements-dev.txt) for the page timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from unprior.io import sha256_file, write_json
from unprior.pairs.browse import BrowseConfig, write_browser

WORDS = ["a", "red", "apple", "and", "yellow", "banana", "on", "the", "table", "there", "is", "also", "blue", "car",
         "near", "small", "green", "bird", "picture", "shows", "two", "dogs", "beside", "white", "chair", "tree"]
KINDS = ("image_weakening", "error_injection", "language_bias", "vision_bias")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def sentence(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(10, 40)))).capitalize() + "."


def make_data(tmp: Path, rows: int, images: int, weakened: int) -> tuple[Path, Path]:
    """A JSONL pairs file and a reference entry in ``unprior score``'s layout."""
    rng = np.random.default_rng(0)
    root = tmp / "data"
    (root / "images").mkdir(parents=True)
    for k in range(images):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(root / "images" / f"{k}.png")
    ref = {k: [] for k in ("row", "id", "response", "kind", "logp_sum", "logp_mean", "n_tokens", "truncated")}
    with open(root / "pairs.jsonl", "w") as f:
        for i in range(rows):
            kinds = [k for k in KINDS if rng.random() < 0.85] or ["error_injection"]
            negatives = [{"text": sentence(rng), "kind": k, "provenance": {
                "strategy": k, "generator": "runs/base", "decoding": {"max_new_tokens": 32, "num_beams": 3},
                **({"perturbation": "diffusion_noise", "params": {"t": 900}, "space": "tensor",
                    "seed": i % weakened} if k == "image_weakening" else {})}} for k in kinds]
            row = {"id": f"pool-{i:06d}", "image": f"images/{i % images}.png", "prompt": "Describe the image.",
                   "chosen": sentence(rng), "negatives": negatives, "meta": {"task": "describe"}}
            f.write(json.dumps(row) + "\n")
            chosen = -float(rng.uniform(5, 40))
            responses = [("chosen", chosen, 20)] + [(k, chosen - float(rng.normal(2, 3)), 20) for k in kinds]
            for j, (kind, total, tokens) in enumerate(responses):
                for key, v in zip(ref, (i, row["id"], j, kind, total, total / tokens, tokens, False), strict=True):
                    ref[key].append(v)
    entry = tmp / "entry"
    entry.mkdir()
    pq.write_table(pa.table(ref), entry / "reference.parquet")
    write_json(entry / "manifest.json", {"kind": "unprior-reference", "format_version": 1,
                                         "key_inputs": {"pairs": sha256_file(root / "pairs.jsonl")}})
    return root / "pairs.jsonl", entry


def page_timings(index_html: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def timed(name, action) -> None:
            before = int(page.get_attribute("body", "data-renders") or 0)
            t0 = time.perf_counter()
            action()
            page.wait_for_function("n => Number(document.body.dataset.renders) > n && "
                                   "document.body.dataset.state === 'ready'", arg=before, timeout=300_000)
            out[name] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        page.goto(index_html.as_uri())
        page.wait_for_selector("body[data-state=ready]", timeout=300_000)
        out["open"] = round(time.perf_counter() - t0, 3)
        timed("kind filter", lambda: page.uncheck("#kinds input[value=error_injection]"))
        timed("margin range", lambda: page.fill("#margin-lo", "-1") or page.fill("#margin-hi", "0")
              or page.dispatch_event("#margin-hi", "change"))
        timed("sort by margin", lambda: page.select_option("#sort", "asc"))
        timed("next page", lambda: page.locator(".pager").first.locator("button[data-go=next]").click())
        timed("search (every chunk)", lambda: page.fill("#search", "zebra"))  # 250 ms of it is the debounce
        out["console errors"] = len(errors)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--weakened", type=int, default=1000, help="distinct weakening seeds (weakened thumbnails)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        pairs, entry = make_data(tmp, args.rows, args.images, args.weakened)
        made = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(tmp / "browse")))
        result = {
            "rows": args.rows, "negatives": sum(manifest["negatives"].values()), "data seconds": round(made, 1),
            "write seconds": round(time.perf_counter() - t0, 1), "thumbnails": manifest["thumbs"],
            "pairs MB": round(pairs.stat().st_size / 1e6, 1),
            "output MB": round(sum(f.stat().st_size for f in (tmp / "browse").rglob("*") if f.is_file()) / 1e6, 1),
            "index MB": round((tmp / "browse" / "data" / "index.js").stat().st_size / 1e6, 2),
            "chunks": manifest["chunks"],
        }
        if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
            result["page seconds"] = page_timings(tmp / "browse" / "index.html")
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
