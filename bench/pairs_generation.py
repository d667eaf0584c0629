"""Batched ``hf`` generation vs one prompt at a time (how BPO's official generation script runs), side by side.

Both modes call the same :func:`unprior.models.generate.generate` on the same model, prompts and greedy decoding;
the only difference is ``batch_size`` (1 vs ``--batch-size``). Repetitions alternate the two modes so machine load
affects both alike; the medians and their ratio are printed (and written as JSON with ``--json``).

    python bench/pairs_generation.py                       # tiny LLaVA (random weights), CPU, 1 thread
    python bench/pairs_generation.py --model DIR --device cuda --prompts 256 --batch-size 64

Without ``--model`` the model has the embedded default's shape (``unprior world base``'s ``BaseConfig``: image
size, patch = cell, widths and depths) with random weights and a tokenizer trained on the world's text. Random weights
rarely emit EOS, so both modes usually generate the full ``--max-new-tokens``; the token counts are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tiny_model():
    from unprior.models.tiny import build_tiny_llava
    from unprior.models.tokenizer import train_tokenizer
    from unprior.world.base import vocabulary_corpus
    from unprior.world.config import BaseConfig

    cfg = BaseConfig()
    m, image = cfg.model, cfg.world.image
    tokenizer = train_tokenizer(vocabulary_corpus() * 4, 400)
    return build_tiny_llava(tokenizer, image_size=image.size, patch_size=image.cell, vision_hidden=m.vision_hidden,
                            vision_layers=m.vision_layers, text_hidden=m.text_hidden, text_layers=m.text_layers,
                            text_heads=m.text_heads)


def _prompts(n: int, size: int, seed: int):
    import numpy as np
    from PIL import Image

    from unprior.models.generate import Prompt
    from unprior.world.spec import CATEGORY_NAMES

    rng = np.random.default_rng(seed)
    questions = ["Describe the image."] + [f"What color is the {c}?" for c in CATEGORY_NAMES]
    return [
        Prompt(questions[i % len(questions)], Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="a saved model dir (default: tiny random LLaVA built in memory)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    from unprior.models.generate import generate

    torch.set_num_threads(args.threads)
    if args.model:
        from unprior.models.families import load_model

        model, processor = load_model(args.model)
    else:
        model, processor = _tiny_model()
    model = model.to(args.device).eval()
    size = getattr(getattr(model.config, "vision_config", None), "image_size", 32)
    prompts = _prompts(args.prompts, size if isinstance(size, int) else 32, seed=0)
    tok = getattr(processor, "tokenizer", processor)
    kw = dict(max_new_tokens=args.max_new_tokens)

    def one_at_a_time() -> list[str]:
        return [generate(model, processor, [p], batch_size=1, **kw)[0] for p in prompts]

    def batched() -> list[str]:
        return generate(model, processor, prompts, batch_size=args.batch_size, **kw)

    generate(model, processor, prompts[:2], batch_size=2, **kw)  # warm-up
    times: dict[str, list[float]] = {"one_at_a_time": [], "batched": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, fn in (("one_at_a_time", one_at_a_time), ("batched", batched)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[name] = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = {k: sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in v) for k, v in outputs.items()}
    same = sum(a == b for a, b in zip(outputs["one_at_a_time"], outputs["batched"], strict=True))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "model": args.model or "tiny random LLaVA (world base size)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompts": args.prompts,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "prompts_per_second": {k: round(args.prompts / v, 2) for k, v in med.items()},
        "generated_tokens": tokens,
        "identical_outputs": f"{same}/{args.prompts}",
        "speedup": round(med["one_at_a_time"] / med["batched"], 2),
    }
    for k in ("one_at_a_time", "batched"):
        print(f"{k:>14}: {med[k]:7.3f} s median of {args.repeats}  ({result['prompts_per_second'][k]:.1f} prompts/s)")
    print(f"identical greedy outputs: {result['identical_outputs']}")
    print(f"speed-up (one-at-a-time / batched): {result['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
