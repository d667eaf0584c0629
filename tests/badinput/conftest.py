"""The bad-input corpus (docs/errors.md): every stage given the inputs users get wrong.

Each case asserts the exit code (2: bad usage, 1: failed work, 0: the bad row dropped), that the one line on stderr
names the file / row / field, and that work already finished is untouched. Inputs are built in tmp_path in
milliseconds; the stages run in-process through ``unprior.cli.main``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pairs.helpers import huge_png_header, png_bytes

from unprior.cli import main

from .helpers import GOOD, Result, pairs_file, source_row, write_rows


@pytest.fixture
def cli(capsys):
    """``cli("pairs", "source=...")`` -> Result of ``unprior.cli.main`` with what it printed."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """An unprior-format dataset root: three good rows with their own rejected answers (strategy ``original`` needs
    no model), images under ``images/``, and ``outside.png`` beside the root."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for i, colour, _, _ in GOOD:
        (root / "images" / f"{i}.png").write_bytes(png_bytes(colour))
    (tmp_path / "outside.png").write_bytes(png_bytes())
    write_rows(root / "train.jsonl", [source_row(i, f"images/{i}.png", a, r) for i, _, a, r in GOOD])
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An image root: g0..g2.png, a 12000² PNG header (a 17 KB file that decodes into gigabytes), an outward
    symlink, and outside.png beside the root."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for i, colour, _, _ in GOOD:
        (root / "images" / f"{i}.png").write_bytes(png_bytes(colour, (16, 16)))
    (root / "images" / "huge.png").write_bytes(huge_png_header(12_000, 12_000))
    (tmp_path / "outside.png").write_bytes(png_bytes())
    (root / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    return root


@pytest.fixture
def pairs(data: Path, tmp_path: Path) -> Path:
    return pairs_file(data, tmp_path / "pairs.parquet", [f"images/{i}.png" for i, *_ in GOOD])


@pytest.fixture
def model(family_model) -> Path:
    return family_model("llava")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Two shared cores: one torch thread in every case."""
