"""``unprior pairs browse``: the output folder, the index and chunks, thumbnails, path safety, scores, the CLI, and
the size and time of a 100k-row browser. The page itself is tested in Chromium (test_browse_chromium.py)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from unprior.cli import main
from unprior.io import OutputExistsError
from unprior.pairs.browse import BrowseConfig, write_browser
from unprior.perturb import perturb_image

from .browse_helpers import (
    CHOSEN_LOGP,
    CHOSEN_TOKENS,
    NEGATIVE_TOKENS,
    UNSCORED_ROW,
    kinds_of,
    make_jsonl_pairs,
    make_pairs,
    make_score,
    margin,
    read_index,
)

N = 60


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Path, Path]:
    pairs = make_pairs(tmp_path, N)
    return pairs, make_score(pairs, N, tmp_path / "entry")


def read_chunks(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "data").glob("chunk-*.js")):
        text = path.read_text()
        rows += json.loads(text[text.index(",") + 1:].rstrip().removesuffix(");"))
    return rows


def test_output_folder_index_and_chunks(scored, tmp_path):
    pairs, entry = scored
    out = tmp_path / "browse"
    manifest = write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(out), chunk_size=16))
    for name in ("index.html", "browse.js", "view.js", "browse.css", "data/index.js", "manifest.json", "config.yaml"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "data").glob("chunk-*.js")) == [f"chunk-{k:05d}.js" for k in range(4)]
    assert manifest["rows"] == N and manifest["chunks"] == 4
    index = read_index(out)
    assert index["kinds"] == ["image_weakening", "error_injection", "language_bias", "vision_bias"]
    assert index["neg_count"] == [len(kinds_of(i)) for i in range(N)]
    assert index["kind_counts"] == {"error_injection": 60, "language_bias": 30, "image_weakening": 20,
                                    "vision_bias": 12}
    expected_sum = [None if i == UNSCORED_ROW else margin(i, j) for i in range(N) for j in range(len(kinds_of(i)))]
    assert index["margin_sum"] == expected_sum
    # m_μ = chosen / 5 tokens - negative / 4 tokens, with negative = chosen - m_Σ
    j0 = [round(CHOSEN_LOGP / CHOSEN_TOKENS - (CHOSEN_LOGP - margin(i, 0)) / NEGATIVE_TOKENS, 4) for i in range(3)]
    assert [index["margin_mean"][sum(index["neg_count"][:i])] for i in range(3)] == j0
    rows = read_chunks(out)
    assert [r["row"] for r in rows] == list(range(N))
    assert rows[0]["chosen_logp"] == [CHOSEN_LOGP, CHOSEN_TOKENS]
    assert rows[UNSCORED_ROW]["score_note"] == "not scored: prompt_too_long"
    assert rows[UNSCORED_ROW]["negatives"][0].get("margin_sum") is None
    assert rows[3]["negatives"][1]["provenance"]["perturbation"] == "diffusion_noise"


def test_every_file_stays_inside_the_output_folder(scored, tmp_path):
    pairs, entry = scored
    out = tmp_path / "browse"
    write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(out)))
    for path in out.rglob("*"):
        assert path.resolve().is_relative_to(out.resolve()) and not path.is_symlink(), path
    for rec in read_chunks(out):
        srcs = [rec["image"]["src"]] + [n["weakened"]["src"] for n in rec["negatives"] if "weakened" in n]
        for src in srcs:
            assert src.startswith("thumbs/") and (out / src).is_file(), src


def test_weakened_thumbnail_is_the_regenerated_image(scored, tmp_path):
    pairs, entry = scored
    out = tmp_path / "browse"
    manifest = write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(out)))
    assert manifest["thumbs"] == {"written": 3, "weakened": 20}  # one per image, one per weakening seed
    rec = read_chunks(out)[3]
    weak = next(n for n in rec["negatives"] if n["kind"] == "image_weakening")["weakened"]
    original = Image.open(tmp_path / "data" / "images" / "0.png").convert("RGB")
    expected = perturb_image(original, "diffusion_noise", {"t": 500}, seed=3)
    assert Image.open(out / weak["src"]).tobytes() == expected.tobytes()  # 32 px: a lossless PNG, not resized
    assert "regenerated from the provenance" in weak["note"]
    assert Image.open(out / rec["image"]["src"]).tobytes() == original.tobytes()


def test_thumbnails_are_resized_copies_and_originals_untouched(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    big = root / "images" / "big.jpg"
    Image.new("RGB", (1000, 600), (10, 120, 200)).save(big, quality=95)
    before = (hashlib.sha256(big.read_bytes()).hexdigest(), big.stat().st_mtime_ns)
    row = {"id": "a", "image": "images/big.jpg", "prompt": "Q?", "chosen": "A.",
           "negatives": [{"text": "B.", "kind": "original", "provenance": {}}], "meta": {}}
    (root / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "browse"
    write_browser(BrowseConfig(pairs=str(root / "pairs.jsonl"), out=str(out), thumb_size=128))
    src = read_chunks(out)[0]["image"]["src"]
    with Image.open(out / src) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (128, 77)
    assert (hashlib.sha256(big.read_bytes()).hexdigest(), big.stat().st_mtime_ns) == before


def test_images_outside_the_root_are_not_shown(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    os.symlink(secret, root / "images" / "link.png")
    negatives = [{"text": "B.", "kind": "original", "provenance": {}}]
    images = ["../secret.png", str(secret), "images/link.png", "images/missing.png"]
    rows = [{"id": f"r{i}", "image": im, "prompt": "Q?", "chosen": "A.", "negatives": negatives, "meta": {}}
            for i, im in enumerate(images)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "browse"
    manifest = write_browser(BrowseConfig(pairs=str(root / "pairs.jsonl"), out=str(out)))
    notes = [r["image"]["note"] for r in read_chunks(out)]
    assert [n.split(":")[0] for n in notes] == ["image_outside_root"] * 3 + ["missing_image"]
    assert all(r["image"]["src"] is None for r in read_chunks(out))
    assert manifest["image_problems"] == 4 and not (out / "thumbs").exists()


def test_scores_of_another_pairs_file_are_refused(scored, tmp_path):
    pairs, entry = scored
    make_pairs(tmp_path, N - 1)  # rewrites pairs.parquet with other rows
    with pytest.raises(ValueError, match="scored another pairs file"):
        write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(tmp_path / "browse")))
    with pytest.raises(FileNotFoundError, match="not a complete reference entry"):
        write_browser(BrowseConfig(pairs=str(pairs), score=str(tmp_path), out=str(tmp_path / "browse")))


def test_overwrite_replaces_only_an_earlier_browse_output(scored, tmp_path):
    pairs, _ = scored
    out = tmp_path / "browse"
    write_browser(BrowseConfig(pairs=str(pairs), out=str(out)))
    with pytest.raises(OutputExistsError):
        write_browser(BrowseConfig(pairs=str(pairs), out=str(out)))
    write_browser(BrowseConfig(pairs=str(pairs), out=str(out), overwrite=True, title="again"))
    assert read_index(out)["title"] == "again"
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not an unprior pairs browse output"):
        write_browser(BrowseConfig(pairs=str(pairs), out=str(foreign), overwrite=True))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_without_scores_or_thumbnails(tmp_path):
    pairs = make_jsonl_pairs(tmp_path, 12)
    out = tmp_path / "browse"
    write_browser(BrowseConfig(pairs=str(pairs), out=str(out), thumbs=False))
    index = read_index(out)
    assert index["score"] is None and "margin_sum" not in index and not index["weakened"]
    rec = read_chunks(out)[0]
    assert rec["image"] == {"src": None, "note": "thumbnails were not written (thumbs=false)"}
    assert "chosen_logp" not in rec and "weakened" not in rec["negatives"][2]  # image_weakening
    assert not (out / "thumbs").exists()


def test_cli(scored, tmp_path, capsys):
    pairs, entry = scored
    out = tmp_path / "browse"
    assert main(["pairs", "browse", f"pairs={pairs}", f"score={entry}", f"out={out}", "page_size=10"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert read_index(out)["page_size"] == 10
    assert main(["pairs", "browse", "--help"]) == 0
    assert "chunk_size = 256" in capsys.readouterr().out
    assert main(["pairs", "browse", f"pairs={pairs}"]) == 2  # no out


def test_100k_rows_stay_small_and_fast(tmp_path):
    """100k rows (233k negatives) with scores: the index the page opens with stays a few MB, every chunk small."""
    n = 100_000
    pairs = make_jsonl_pairs(tmp_path, n)
    entry = make_score(pairs, n, tmp_path / "entry")
    out = tmp_path / "browse"
    t0 = time.perf_counter()
    manifest = write_browser(BrowseConfig(pairs=str(pairs), score=str(entry), out=str(out)))
    seconds = time.perf_counter() - t0
    assert manifest["rows"] == n and manifest["chunks"] == 391
    assert seconds < 60, seconds  # about 7 s on one core of the 2-core machine
    assert (out / "data" / "index.js").stat().st_size < 4_000_000
    assert max(p.stat().st_size for p in (out / "data").glob("chunk-*.js")) < 400_000
    assert read_index(out)["neg_count"][:6] == [len(kinds_of(i)) for i in range(6)]
