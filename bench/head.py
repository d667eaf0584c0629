"""The LM head + log-softmax alone: ``unprior.forward.logps.head_logps`` against the plain path (the head called as a
module, ``log_softmax`` + gather, logits kept for backward), for a trainable and a frozen (LoRA) head.

    python bench/head.py [--rows 450] [--width 256] [--vocab 151936] [--repeats 3]

Defaults: the Qwen2-VL preset's response rows per step at K = 2 (bench/shapes.py) and its vocabulary. One torch
thread; each case runs ``--repeats`` times and the median is printed, with the bytes autograd keeps for backward
(``saved_tensors_hooks``) and the ratios head_logps / plain measured side by side in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unprior.forward.logps import head_logps, plain_head_logps


def measure(fn, args: argparse.Namespace, frozen: bool) -> dict[str, float]:
    """Median forward and backward seconds of ``fn`` and the MB autograd saved for backward."""
    torch.manual_seed(0)
    head = torch.nn.Linear(args.width, args.vocab, bias=False).requires_grad_(not frozen)
    hidden = torch.randn(args.rows, args.width, requires_grad=True)
    targets, upstream = torch.randint(0, args.vocab, (args.rows,)), torch.randn(args.rows)
    runs, saved = [], []
    for _ in range(args.repeats):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            start = time.perf_counter()
            out = fn(head, hidden, targets)
        middle = time.perf_counter()
        (out * upstream).sum().backward()
        runs.append((middle - start, time.perf_counter() - middle))
        hidden.grad, head.weight.grad = None, None
    return {"forward": statistics.median(r[0] for r in runs), "backward": statistics.median(r[1] for r in runs),
            "saved_mb": sum(saved) / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=450)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{args.rows} rows × width {args.width} × vocabulary {args.vocab:,}, 1 torch thread, median of "
          f"{args.repeats}")
    print("| head | path | forward ms | backward ms | total ms | saved for backward (MB) | total × plain |")
    print("|---|---|---|---|---|---|---|")
    for frozen in (False, True):
        base = measure(plain_head_logps, args, frozen)
        ours = measure(head_logps, args, frozen)
        for name, r in (("plain", base), ("head_logps", ours)):
            total = r["forward"] + r["backward"]
            ratio = total / (base["forward"] + base["backward"])
            print(f"| {'frozen' if frozen else 'trainable'} | {name} | {1e3 * r['forward']:.0f} | "
                  f"{1e3 * r['backward']:.0f} | {1e3 * total:.0f} | {r['saved_mb']:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
