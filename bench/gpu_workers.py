"""The processes bench/gpu_bench.py starts: build the model and data, fill the reference cache, train one side.

Each is ``python bench/gpu_workers.py WORKER --json ARGS`` (the training sides under ``accelerate launch``) and ends
with one ``RESULT {json}`` line on the main process. Both training sides run the same recipe: LoRA r 32 / α 256 /
dropout 0.05 on every linear layer of the language model (BPO's placement; the vision side frozen), bf16, activation
checkpointing, AdamW lr 1e-5, cosine, clipping 1.0, DPO with β 0.1 (unprior: weight 1/K on each of K kinds, the mean
over the same R·K pairs TRL gets as rows). TRL runs as shipped on a GPU (fused LM head, Triton); its reference is
the model with the adapter disabled, run every step. unprior reads the reference from the cache ``score`` filled.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shapes

LORA = {"r": 32, "alpha": 256, "dropout": 0.05}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build(args: dict[str, Any]) -> dict:
    """The random-weight model (on the GPU, bf16, or fp32 on CPU), the training pairs and a pairs-stage source."""
    start = time.perf_counter()
    shape = shapes.preset(args["shape"], negatives=args["negatives"])
    dtype = "bfloat16" if _device() == "cuda" else "float32"
    root = Path(args["work"])
    model, pairs = shapes.build(shape, root, args["rows"], device=_device(), dtype=dtype)
    source = write_source(pairs, root / "source", args["prompts"])
    return {"seconds": time.perf_counter() - start, "model": str(model), "pairs": str(pairs), "source": str(source),
            "lengths": mean_lengths(model, pairs)}


def mean_lengths(model: Path, pairs: Path) -> dict[str, float]:
    """Mean prompt tokens (image tokens included) and mean response tokens, as unprior encodes them."""
    from unprior.formats.pairs import read_pairs
    from unprior.forward.batch import RowEncoder
    from unprior.models.families import load_processor

    rows = read_pairs(pairs)
    encoded, _ = RowEncoder(load_processor(model), 4096).encode(list(enumerate(rows)))
    answers = [len(r) for row in encoded.responses for r in row]
    return {"prompt": float(encoded.prompt_lens.float().mean()), "answer": sum(answers) / len(answers)}


def write_source(pairs: Path, root: Path, n: int) -> Path:
    """``n`` samples in the ``unprior`` source format (``train.jsonl`` + ``images/``) from the pairs' rows."""
    from unprior.formats.pairs import read_pairs

    rows = read_pairs(pairs)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        row = rows[i % len(rows)]
        (root / "images" / f"{i}.png").write_bytes(row.image)
        sample = {"id": f"s{i}", "image": f"images/{i}.png", "prompt": row.prompt, "answer": row.chosen}
        lines.append(json.dumps(sample))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def score(args: dict[str, Any]) -> dict:
    """Fill the reference cache on the GPU (``unprior score`` runs where the model is and collates on the CPU; the
    scorer here moves each batch to the model's device)."""
    import unprior.score.reference as reference
    from unprior.models.families import load_model
    from unprior.score.config import ScoreConfig

    class DeviceScorer(reference.ResponseScorer):
        def forward(self, prompt, prompt_lens, response_ids, response_mask, row_of):
            device = next(self.parameters()).device
            prompt = {k: v.to(device) for k, v in prompt.items()}
            moved = (t.to(device) for t in (prompt_lens, response_ids, response_mask, row_of))
            sums, counts = super().forward(prompt, *moved)
            return sums.cpu(), counts.cpu()

    reference.ResponseScorer = DeviceScorer
    start = time.perf_counter()
    dtype = "bfloat16" if _device() == "cuda" else "float32"
    cfg = ScoreConfig(model=args["model"], pairs=args["pairs"], max_length=4096, dtype=dtype, batch_size=2,
                      method="prefix", reference_dir=args["reference"])
    import torch

    model, processor = load_model(cfg.model, dtype=getattr(torch, dtype))
    with torch.no_grad():
        reference.ensure_reference(cfg, log=lambda _: None, model=model.to(_device()).eval(), processor=processor)
    return {"seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------------- training


class Meter:
    """Step times and GPU memory: static after loading, peak during training, peak of the process."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.memory: dict[str, float] = {}

    def loaded(self) -> None:
        import torch

        if torch.cuda.is_available():
            self.memory["loaded_gib"] = torch.cuda.memory_allocated() / 2**30
            self.memory["load_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()

    def step(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def result(self, losses: list[float]) -> dict:
        import torch

        if torch.cuda.is_available():
            self.memory["train_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return {"stamps": self.stamps, "losses": losses, "memory": self.memory}


def train_trl(args: dict[str, Any]) -> dict:
    import geometry
    import torch
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForImageTextToText, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from unprior.models.families import load_processor
    from unprior.train.model import lora_targets

    meter, losses = Meter(), []
    with torch.device("meta"):  # module names only: the same LoRA targets as unprior's
        skeleton = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(args["model"]))
    targets = lora_targets(skeleton)

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            meter.loaded()

        def on_step_end(self, *_, **__):
            meter.step()

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    gpu = _device() == "cuda"
    config = DPOConfig(
        output_dir=str(Path(args["work"]) / "trl-out"), per_device_train_batch_size=args["rows_per_step"] *
        args["negatives"], max_steps=args["steps"], learning_rate=1e-5, lr_scheduler_type="cosine", warmup_steps=0,
        max_grad_norm=1.0, beta=0.1, loss_type=["sigmoid"], bf16=gpu, use_cpu=not gpu, activation_checkpointing=True,
        report_to="none", save_strategy="no", logging_steps=1, dataloader_num_workers=0, seed=0, max_length=None,
        model_init_kwargs={"dtype": "bfloat16" if gpu else "float32"},
    )
    peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules=targets,
                      bias="none")
    trainer = DPOTrainer(model=args["model"], args=config, train_dataset=geometry.trl_dataset(Path(args["pairs"])),
                         processing_class=load_processor(args["model"]), peft_config=peft, callbacks=[Clock()])
    trainer.train()
    return meter.result(losses) | {"main": trainer.accelerator.is_main_process}


def train_unprior(args: dict[str, Any]) -> dict:
    import geometry

    import unprior.train.trainer as trainer
    from unprior.train.config import LoraSettings, TrainConfig

    meter = Meter()
    out = Path(args["work"]) / "unprior-out"
    cfg = TrainConfig(
        model=args["model"], pairs=args["pairs"], out=str(out), overwrite=True,
        objective=geometry.objective(args["negatives"]), max_length=4096, batch_size=args["rows_per_step"],
        steps=args["steps"], lr=1e-5, warmup_ratio=0.0, max_grad_norm=1.0,
        dtype="bfloat16" if _device() == "cuda" else "float32", activation_checkpointing=True,
        lora=LoraSettings(enabled=True, r=LORA["r"], alpha=LORA["alpha"], dropout=LORA["dropout"]), method="prefix",
        reference_dir=args["reference"],
    )
    cfg.validate()
    run = trainer.setup(cfg)
    meter.loaded()
    log_metrics = trainer._log_metrics

    def logged(*a, **k):  # right after each optimizer step
        meter.step()
        return log_metrics(*a, **k)

    trainer._log_metrics = logged
    trainer.train(run)
    losses = [m["loss"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    return meter.result(losses) | {"main": run.accelerator.is_main_process}


WORKERS = {"build": build, "score": score, "trl": train_trl, "unprior": train_unprior}


def main(argv: list[str]) -> None:
    name, args = argv[0], json.loads(argv[argv.index("--json") + 1])
    result = WORKERS[name](args)
    if result.pop("main", True):
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
