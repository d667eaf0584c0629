"""The memory plan (unprior/plan.py) against measured peaks: training steps of small random-weight LLaVA models on
the CPU, each in its own process, peak RSS minus the process's RSS before the model was built.

    nice -n 19 .venv/bin/python bench/plan_check.py [--out bench/results/plan_check.json]
    MALLOC_MMAP_THRESHOLD_=65536 nice -n 19 .venv/bin/python bench/plan_check.py   # RSS follows the live tensors

Each configuration runs two optimizer steps of the shared-prefix forward (unprior.forward.prefix.ResponseScorer) with
AdamW, as ``unprior train`` does, on a synthetic batch of its longest-row shape (docs/train.md, "Memory plan").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    hidden: int = 512
    layers: int = 8
    intermediate: int = 1376
    heads: int = 8
    kv_heads: int = 4
    vocab: int = 32000
    image_size: int = 336
    """CLIP at patch 14: (336/14)² = 576 image tokens, as LLaVA-1.5."""
    text: int = 40
    responses: int = 3
    response: int = 64
    batch: int = 2
    lora_rank: int = 32
    checkpointing: bool = False


CASES = [
    Case("lora", lora_rank=32),
    Case("lora, checkpointing", lora_rank=32, checkpointing=True),
    Case("full", lora_rank=0),
    Case("full, checkpointing", lora_rank=0, checkpointing=True),
    Case("lora, batch 4, K=4", lora_rank=32, batch=4, responses=5),
]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _build(case: Case):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(image_size=case.image_size, patch_size=14, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=1)
    text = LlamaConfig(vocab_size=case.vocab, hidden_size=case.hidden, intermediate_size=case.intermediate,
                       num_hidden_layers=case.layers, num_attention_heads=case.heads,
                       num_key_value_heads=case.kv_heads, max_position_embeddings=4096, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=case.vocab - 1,
                         image_seq_length=(case.image_size // 14) ** 2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(config), config


def _batch(case: Case):
    import torch

    image = (case.image_size // 14) ** 2
    text = torch.randint(10, 1000, (case.batch, case.text))
    ids = torch.cat([torch.full((case.batch, image), case.vocab - 1), text], 1)
    prompt = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "pixel_values": torch.randn(case.batch, 3, case.image_size, case.image_size)}
    n = case.batch * case.responses
    return dict(prompt=prompt, prompt_lens=torch.full((case.batch,), ids.shape[1]),
                response_ids=torch.randint(10, 1000, (n, case.response)),
                response_mask=torch.ones(n, case.response, dtype=torch.bool),
                row_of=torch.arange(case.batch).repeat_interleave(case.responses))


def _measure(case: Case, queue) -> None:
    import torch

    from unprior import plan
    from unprior.forward.prefix import ResponseScorer
    from unprior.train.config import TrainConfig
    from unprior.train.model import build_policy, optimizer_groups

    torch.set_num_threads(2)
    batch = _batch(case)
    base = _rss()
    model, config = _build(case)
    shape = plan.shape_of(model, config)
    cfg = TrainConfig(model="-", pairs="-", out="-", activation_checkpointing=case.checkpointing)
    cfg.lora.enabled, cfg.lora.r = case.lora_rank > 0, max(1, case.lora_rank)
    scorer = ResponseScorer(build_policy(model, cfg, lambda *_: None))
    optimizer = torch.optim.AdamW(optimizer_groups(scorer.named_parameters(), 0.0), lr=1e-5, fused=True)
    for _ in range(2):
        sums, counts = scorer(**batch)
        (-(sums / counts).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    row = plan.RowShape(prompt=batch["prompt_lens"][0].item(), image=(case.image_size // 14) ** 2,
                        responses=case.responses, response=case.response)
    run = plan.RunShape("fp32", case.lora_rank, case.checkpointing, "single", 1, case.batch)
    predicted = plan.train_plan(shape, row, run)
    queue.put({**asdict(case), "measured": peak, "planned": predicted.peak, "weights": predicted.weights,
               "gradients": predicted.gradients, "optimizer": predicted.optimizer,
               "activations": case.batch * predicted.per_row})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/plan_check.json")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    results = []
    for case in CASES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(case, queue))
        proc.start()
        result = queue.get()
        proc.join()
        results.append(result)
        error = result["planned"] / result["measured"] - 1
        print(f"{case.name:<28} measured {result['measured'] / 2**20:8.0f} MiB  planned "
              f"{result['planned'] / 2**20:8.0f} MiB  ({error:+.1%})", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
