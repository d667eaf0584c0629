"""Fixtures for the pairs tests: datasets built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import corrupt_png, huge_png_header, png_bytes, write_jsonl


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """An unprior-format root: 3 good rows and one broken row per failure mode."""
    root = tmp_path / "world"
    images = root / "images" / "train"
    images.mkdir(parents=True)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (images / f"{i:06d}.png").write_bytes(png_bytes(colour))
    (images / "huge.png").write_bytes(huge_png_header(10_000, 5_000))
    (images / "bomb.png").write_bytes(huge_png_header(100_000, 100_000))
    (images / "corrupt.png").write_bytes(corrupt_png())
    (tmp_path / "outside.png").write_bytes(png_bytes())

    def row(i: str, image: str = "images/train/000000.png", **kw: object) -> dict:
        return {
            "id": i,
            "image": image,
            "prompt": "What colour is the square?",
            "answer": "Red.",
            "task": "colour",
            "meta": {"k": 1},
            **kw,
        }

    rows: list[dict | str] = [
        row("good-0"),
        row("good-1", "images/train/000001.png", answer="Green.", rejected="Red."),
        row("good-2", "images/train/000002.png", prompt="<image>\nWhat colour?", answer="Blue."),
        row("missing", "images/train/nope.png"),
        row("escape", "../outside.png"),
        row("empty-answer", answer="   "),
        row("huge", "images/train/huge.png"),
        row("bomb", "images/train/bomb.png"),
        row("non-text", answer=["Red"]),
        row("corrupt", "images/train/corrupt.png"),
        "{not json",
        row("good-0"),
        {"id": "no-answer", "image": "images/train/000000.png", "prompt": "Q?"},
    ]
    write_jsonl(root / "train.jsonl", rows)
    (root / "manifest.json").write_text("{}")
    return root


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small synthetic world (unprior source format, ~70 train rows)."""
    from .tiny import build_tiny_world

    return build_tiny_world(tmp_path_factory.mktemp("tiny-world") / "world", n_train=12)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_world: Path) -> Path:
    """A random-weight tiny LLaVA with a tokenizer trained on the world's text, saved like a hub model."""
    from .tiny import build_tiny_model

    return build_tiny_model(tiny_world, tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Two shared CPU cores: keep torch to one thread in every pairs test."""


def pytest_collection_finish(session) -> None:
    """Start the `transformers serve` test server early, so its start-up overlaps with other tests."""
    if any("served_llm" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            return
        from .tiny import TinyServer

        TinyServer.start()


@pytest.fixture(scope="session")
def served_llm():
    """(base_url, model name) of `transformers serve` (the transformers[serving] extra) with a tiny text LLM."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from .tiny import TinyServer

    TinyServer.start()
    TinyServer.wait_ready()
    yield TinyServer.url, TinyServer.model
    TinyServer.stop()
