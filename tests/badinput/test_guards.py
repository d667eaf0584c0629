"""Bad numbers and dead endpoints through the CLI (issue 20 items 1 and 4, built by the numerics guards and the
endpoint fail-fast; docs/errors.md): non-finite values are failed work (exit 1) named by file, step or rows, a
changed config on resume is bad usage (exit 2) named by field; finished work is kept."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import GOOD, pairs_args, pairs_file, refused, score, snapshot, train


def _entry(ref: Path) -> Path:
    (entry,) = [p for p in ref.iterdir() if (p / "manifest.json").is_file()]
    return entry


def test_a_reference_entry_with_nan_is_refused_by_train(pairs, model, tmp_path, cli):
    """Table row 1: NaN and inf written into a finished entry; training refuses to start on it, naming the file
    and the rows (the entry is left as it is, for the user to look at)."""
    pairs = pairs_file(pairs.parent / "data", tmp_path / "ei.parquet", [f"images/{i}.png" for i, *_ in GOOD],
                       kinds=("error_injection",))
    assert score(cli, model, pairs, tmp_path).code == 0
    entry = _entry(tmp_path / "ref")
    table = pq.read_table(entry / "reference.parquet")
    sums = table["logp_sum"].to_numpy().copy()
    sums[[0, 3]] = [np.nan, np.inf]  # rows 0 and 1 (two responses per row)
    pq.write_table(table.set_column(table.schema.get_field_index("logp_sum"), "logp_sum", pa.array(sums)),
                   entry / "reference.parquet")
    before = snapshot(entry)
    refused(train(cli, model, pairs, tmp_path / "run"), 1, "reference.parquet", "r0", "r1", only_line=False)
    assert snapshot(entry) == before


def test_a_model_with_nan_weights_is_refused_by_train(pairs, model, tmp_path, cli):
    """Table rows 1-3 at the source: the starting model itself is broken; nothing is scored or trained."""
    import torch

    from unprior.models.families import load_model
    from unprior.models.tiny import save_model

    net, processor = load_model(model)
    with torch.no_grad():
        next(p for n, p in net.named_parameters() if "embed" in n).view(-1)[:3] = float("nan")
    save_model(net, processor, tmp_path / "nan-model")
    refused(train(cli, tmp_path / "nan-model", pairs, tmp_path / "run"), 1, "nan-model", "NaN or infinite",
            only_line=False)
    assert not (tmp_path / "run" / "model").exists()


def test_resume_with_another_config_names_the_field_and_keeps_the_checkpoints(pairs, model, tmp_path, cli):
    """Table row 15: the refusal names each changed field with its old and new value."""
    pairs = pairs_file(pairs.parent / "data", tmp_path / "ei.parquet", [f"images/{i}.png" for i, *_ in GOOD],
                       kinds=("error_injection",))
    out = tmp_path / "run"
    assert train(cli, model, pairs, out, "steps=2", "save_every=1").code == 0
    before = snapshot(out)
    refused(train(cli, model, pairs, out, "steps=2", "save_every=1", "resume=true", "lr=0.5"), 2,
            "different config", "lr: ", "0.5", only_line=False)
    assert snapshot(out) == before


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once the block ends


def test_pairs_with_a_dead_injector_endpoint_fails_fast_naming_it(source, tmp_path, cli):
    """Table row 14: connection refused is failed work, reported in seconds with the URL, not after minutes of
    retries."""
    url = _closed_port_url()
    args = [a for a in pairs_args(source, tmp_path / "pairs") if not a.startswith("strategies=")]
    start = time.perf_counter()
    result = cli(*args, "strategies=[error_injection]", "injector.model=m", f"injector.base_url={url}")
    refused(result, 1, url, "connection refused", only_line=False)
    assert time.perf_counter() - start < 30
    assert not list((tmp_path / "pairs").glob("shard-*/part-*.parquet"))


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_setting_is_refused_naming_the_field(value, pairs, model, tmp_path, cli):
    """Table row 12, for every non-finite spelling YAML has."""
    refused(train(cli, model, pairs, tmp_path / "run", f"lr={value}"), 2, "'lr'", "finite")
