"""Generation throughput of ``unprior pairs`` at SmolVLM-256M's size: one ``generate`` call per sample (how the
official BPO and NaPO scripts generate) against unprior's batches, per strategy, side by side in one run.

    nice -n 19 .venv/bin/python bench/generation.py --images 8 [--splitting off] [--json out.json]

Both modes run the real strategies (``unprior.pairs.strategies``) through the ``hf`` backend on the same random-weight
SmolVLM-256M-Instruct architecture (bench/real_models.py) and photos (bench/real_sizes.py); the only difference is
the backend's batching (``batch_size=1`` vs ``batch_size``, ``max_batch_tokens``). Rows/s, generated tokens/s and
vision-tower passes (tiles encoded) per strategy and mode are printed with their ratio. The strategies alternate
modes, and which goes first, so that machine load affects both alike. Random weights emit EOS at random, so the
answers' lengths vary; tokens/s counts what was generated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from real_sizes import photos  # bench/ is sys.path[0] when this script runs, as for the other bench scripts

STRATEGIES = ("image_weakening", "language_bias", "vision_bias")


def run_strategy(name: str, backend, samples, images) -> tuple[float, list[str]]:
    from unprior.pairs.config import BiasConfig, ImageWeakeningConfig
    from unprior.pairs.strategies import STRATEGIES as ALL
    from unprior.pairs.strategies import StrategyContext

    cfg = ImageWeakeningConfig() if name == "image_weakening" else BiasConfig()
    cfg.validate()
    cfg.decoding.max_new_tokens = backend.max_new_tokens
    start = time.perf_counter()
    negatives = ALL[name].run(samples, images, cfg, StrategyContext(generator=backend))
    return time.perf_counter() - start, [n.text for row in negatives for n in row]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--splitting", choices=["on", "off"], default="off")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-batch-tokens", type=int, default=32_768)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import torch
    from real_models import build_smolvlm_256m

    from unprior.formats.pairs import Sample
    from unprior.models.backends import Decoding
    from unprior.models.backends.hf import HFBackend
    from unprior.models.generate import Prompt

    torch.set_num_threads(args.threads)
    model, processor = build_smolvlm_256m(splitting=args.splitting == "on")
    images = photos(args.images)
    questions = ["Is there a person in the image?", "Describe the image.", "What colour is the background?"]
    samples = [Sample(id=f"p{i}", image=f"photo{i}.jpg", prompt=questions[i % 3], answer="Yes.")
               for i in range(args.images)]
    tiles: list[int] = []
    model.model.vision_model.register_forward_hook(lambda m, i, o: tiles.append(o.last_hidden_state.shape[0]))
    modes = {"one_at_a_time": dict(batch_size=1, max_batch_tokens=0),
             "batched": dict(batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)}
    tok = processor.tokenizer
    result: dict = {"images": args.images, "splitting": args.splitting, "max_new_tokens": args.max_new_tokens,
                    "threads": args.threads, "strategies": {}}
    warm = HFBackend(model, processor, batch_size=1)
    warm.generate(  # the first calls of a process are slower (allocator, kernels): not charged to either mode
        [Prompt("Warm up.", images[0])], Decoding(max_new_tokens=2))
    for k, name in enumerate(STRATEGIES):
        row = {}
        for mode, kw in sorted(modes.items(), reverse=k % 2 == 1):  # which mode goes first alternates
            backend = HFBackend(model, processor, name_or_path="smolvlm-256m-random", **kw)
            backend.max_new_tokens = args.max_new_tokens  # type: ignore[attr-defined]
            tiles.clear()
            seconds, texts = run_strategy(name, backend, samples, images)
            generated = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
            row[mode] = {"seconds": round(seconds, 1), "rows_per_s": round(len(samples) / seconds, 3),
                         "tokens_per_s": round(generated / seconds, 2), "tiles_encoded": sum(tiles)}
        row["speedup"] = round(row["one_at_a_time"]["seconds"] / row["batched"]["seconds"], 2)
        result["strategies"][name] = row
        print(f"{name:>16}: one at a time {row['one_at_a_time']['seconds']:7.1f} s "
              f"({row['one_at_a_time']['rows_per_s']:.3f} rows/s, {row['one_at_a_time']['tokens_per_s']:.1f} tok/s, "
              f"{row['one_at_a_time']['tiles_encoded']} tiles)  batched {row['batched']['seconds']:7.1f} s "
              f"({row['batched']['rows_per_s']:.3f} rows/s, {row['batched']['tokens_per_s']:.1f} tok/s, "
              f"{row['batched']['tiles_encoded']} tiles)  x{row['speedup']:.2f}", flush=True)
    total = {m: sum(r[m]["seconds"] for r in result["strategies"].values()) for m in modes}
    result["speedup_all"] = round(total["one_at_a_time"] / total["batched"], 2)
    print(f"all strategies: one at a time {total['one_at_a_time']:.1f} s, batched {total['batched']:.1f} s: "
          f"x{result['speedup_all']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
