"""Tiny world + tiny model builders for the pairs tests (also used by the kill-and-resume subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def build_tiny_world(out: Path, n_train: int = 12) -> Path:
    from unprior.world.build import build_world
    from unprior.world.config import WorldConfig

    return build_world(WorldConfig(out=str(out), n_train=n_train, n_test=1))


def build_tiny_model(world: Path, out: Path) -> Path:
    from unprior.models.tiny import build_tiny_llava, save_model
    from unprior.models.tokenizer import train_tokenizer
    from unprior.world.base import vocabulary_corpus

    rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    corpus = [r["prompt"] for r in rows] + [r["answer"] for r in rows] + vocabulary_corpus()
    model, processor = build_tiny_llava(train_tokenizer(corpus, 400), vision_hidden=32, text_hidden=64)
    save_model(model, processor, out)
    return out


def build_tiny_text_llm(out: Path) -> Path:
    """A random-weight tiny Llama causal LM with the house tokenizer and chat template (for `transformers serve`)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unprior.models.tokenizer import train_tokenizer

    tok = train_tokenizer(["The red apple is next to a yellow banana.", "No, there is no pig."] * 20, 300)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def pairs_args(world: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """key=value overrides for a fast run on the tiny world and model."""
    return [
        f"source={world}",
        f"out={out}",
        f"generator.model={model}",
        "generator.batch_size=8",
        "image_weakening.decoding.max_new_tokens=6",
        "language_bias.decoding.max_new_tokens=6",
        "vision_bias.decoding.max_new_tokens=6",
        "progress=false",
        *extra,
    ]


def run_config(world: Path, model: Path, out: Path, *extra: str) -> Any:
    from unprior.config import load_config
    from unprior.pairs.config import PairsConfig

    return load_config(PairsConfig, None, pairs_args(world, model, out, *extra))


class TinyServer:
    """`transformers serve` with a tiny text LLM, in a subprocess that builds the model first.

    Started once per session, as early as collection (see conftest.py), so its ~5-8 s start-up overlaps with other
    tests; stopped at session end (or at exit when no test used it).
    """

    proc: Any = None
    url: str = ""
    model: str = ""
    log: Path | None = None

    @classmethod
    def start(cls) -> None:
        if cls.proc is not None:
            return
        import atexit
        import os
        import socket
        import subprocess
        import sys
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="unprior-serve-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cls.url, cls.model, cls.log = f"http://127.0.0.1:{port}/v1", str(work / "llm"), work / "serve.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(cls.log, "w") as log:
            cmd = [sys.executable, __file__, "serve", cls.model, str(port)]
            cls.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        atexit.register(cls.stop)

    @classmethod
    def wait_ready(cls, timeout: float = 90.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        health = cls.url.removesuffix("/v1") + "/health"
        while True:  # /v1/models may answer 500 offline (transformers serve, seen offline): wait on /health
            try:
                with urllib.request.urlopen(health, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if cls.proc.poll() is not None or time.monotonic() > deadline:
                tail = cls.log.read_text()[-3000:] if cls.log else ""
                raise RuntimeError(f"transformers serve did not start:\n{tail}")
            time.sleep(0.2)

    @classmethod
    def stop(cls) -> None:
        import subprocess

        if cls.proc is None:
            return
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        cls.proc = None


def _serve(model_dir: str, port: str) -> None:
    import sys

    from transformers.cli.transformers import main

    build_tiny_text_llm(Path(model_dir))
    sys.argv = ["transformers", "serve", model_dir, "--host", "127.0.0.1", "--port", port]
    main()


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["serve"]:
        _serve(*sys.argv[2:4])
