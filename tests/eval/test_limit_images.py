"""Every benchmark checks only the images a run uses: ``load`` leaves existence to ``check_images``, which the runner
calls after ``limit`` (``unprior.eval.runner._prepare``), so a quick run never fails on an image it would not read
(issue 21 item 3, for POPE first; docs/errors.md)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from unprior.eval.common import check_images
from unprior.eval.registry import DataError, make_benchmark
from unprior.io import read_jsonl

from .helpers import touch_images, write_json, write_jsonl
from .test_amber import _amber_data
from .test_mmhal import _mmhal_data
from .test_vlind import _vlind_data


def _amber(tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    data, images = _amber_data(tmp)
    return {"data_dir": str(data), "image_root": str(images)}


def _mmhal(tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    template, images, _ = _mmhal_data(tmp)
    return {"template": str(template), "image_root": str(images), "judge": {"base_url": "http://127.0.0.1:9"}}


def _vlind(tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    data, images = _vlind_data(tmp)
    return {"data": str(data), "image_root": str(images)}


def _chair(tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    images = touch_images(tmp / "photos", ["a.jpg", "b.jpg"])
    gt = write_json(tmp / "gt.json", {"a.jpg": ["dog"], "b.jpg": ["cat"]})
    questions = write_jsonl(tmp / "q.jsonl", [{"image": "a.jpg"}, {"image": "b.jpg"}])
    return {"questions": str(questions), "image_root": str(images), "ground_truth": str(gt)}


def _world(tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Two rows of the tiny world's test_id split with different images (and their images)."""
    world = request.getfixturevalue("tiny_world")
    rows, seen = [], set()
    for row in read_jsonl(world / "test_id.jsonl"):
        if row["image"] not in seen:
            rows.append(row)
            seen.add(row["image"])
        if len(rows) == 2:
            break
    root = tmp / "world"
    for row in rows:
        (root / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(world / row["image"], root / row["image"])
    (root / "test_id.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"world_dir": str(root), "splits": ["test_id"]}


BENCHMARKS: dict[str, Callable[[Path, pytest.FixtureRequest], dict[str, Any]]] = {
    "amber": _amber, "mmhal": _mmhal, "vlind": _vlind, "chair": _chair, "world": _world}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_a_missing_image_beyond_the_limit_does_not_stop_a_run(name, tmp_path, request):
    options = BENCHMARKS[name](tmp_path, request)
    items = make_benchmark(name, options).load()
    last = items[-1].image
    assert last is not None and items[0].image != last
    last.unlink()
    bench = make_benchmark(name, options)
    items = bench.load()  # loads: existence is not checked here
    check_images(bench.head(items, 1))  # a run with limit=1 never reads the missing image
    first_use = next(it for it in items if it.image == last)
    assert first_use.where  # the data file and row, for the message
    with pytest.raises(DataError, match=rf"{re.escape(first_use.where)}: image not found: .*{re.escape(last.name)}"):
        check_images(items)
