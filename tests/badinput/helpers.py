"""Builders and assertions of the bad-input corpus (tests/badinput)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unprior.io import sha256_dir


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def refused(result: Result, code: int, *needles: str, only_line: bool = True) -> None:
    """Exit ``code`` with no traceback; the last stderr line (the only one unless a model printed warnings before)
    is ``unprior <command>: ...`` and holds every needle."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err
    assert result.lines, "nothing on stderr"
    if only_line:
        assert len(result.lines) == 1, result.lines
    last = result.lines[-1]
    assert last.startswith("unprior "), last
    for needle in needles:
        assert needle in last, (needle, last)


def rejected(path: Path) -> list[dict]:
    """The rows of a stage's ``rejected.jsonl``."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def snapshot(path: Path) -> str:
    """Hash of every file under ``path`` (finished work must not change when a later run is refused)."""
    return sha256_dir(path)


GOOD = [("g0", (200, 0, 0), "A red square.", "A blue square."),
        ("g1", (0, 200, 0), "A green square.", "A red square."),
        ("g2", (0, 0, 200), "A blue square.", "A green square.")]


def source_row(i: str, image: str, answer: object = "A red square.", rejected: object = "A blue square.") -> dict:
    return {"id": i, "image": image, "prompt": "What is in the image?", "answer": answer, "rejected": rejected}


def write_rows(path: Path, rows: list[dict | bytes]) -> None:
    """JSON lines; a bytes row is written verbatim (malformed lines, bytes that are not UTF-8)."""
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))


def pairs_args(source: Path, out: Path, *extra: str) -> list[str]:
    return ["pairs", f"source={source}", f"out={out}", "strategies=[original]", "progress=false", *extra]


def pairs_file(root: Path, out: Path, paths: list[str], kinds: tuple[str, ...] = ("original",)) -> Path:
    """A pairs file whose rows store ``paths`` as they are (relative to ``root``, unchecked: ``../x.png`` too)."""
    from unprior.formats.pairs import Negative, PairRow, UnusableImage, write_pairs

    rows = [PairRow(f"r{i}", UnusableImage(p, "", ""), "What is in the image?", GOOD[i % 3][2],
                    [Negative(GOOD[i % 3][3], kind) for kind in kinds]) for i, p in enumerate(paths)]
    write_pairs(rows, out, image_root=root)
    return out


def drop_column(path: Path, column: str, out: Path) -> Path:
    """A copy of a pairs parquet file without ``column`` (its unprior metadata kept)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(table.drop_columns([column]).replace_schema_metadata(table.schema.metadata), out)
    return out


def truncate(path: Path, out: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` share of a file's bytes (a copy cut short, as a killed download leaves it)."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def score(cli, model: Path, pairs: Path | str, tmp_path: Path, *extra: str):
    return cli("score", f"model={model}", f"pairs={pairs}", "max_length=96", f"reference_dir={tmp_path / 'ref'}",
               *extra)


def train(cli, model: Path, pairs: Path | str, out: Path, *extra: str):
    return cli("train", f"model={model}", f"pairs={pairs}", f"out={out}", "max_length=96", "steps=1",
               "batch_size=2", "lora.r=4", f"reference_dir={out.parent / 'ref'}", *extra)
