"""Checkpoints that are either complete or invisible, and the final model.

A checkpoint is written by every process into ``checkpoints/.step-NNNNNNN.partial`` through
``accelerator.save_state`` (model, optimizer, scheduler, every process's RNG states; DDP, FSDP and DeepSpeed each
handled by accelerate), then the main process writes ``trainer_state.json`` and, last, ``manifest.json``, and renames
the directory to ``checkpoints/step-NNNNNNN``. A kill at any moment leaves either a ``.partial`` directory (ignored
and removed by the next save) or a complete checkpoint: only directories named ``step-*`` *with* a manifest are
resumed from. The data position needs no file of its own: the row order is a function of the seed and the step
(:class:`unprior.train.data.Order`).

Only trainable parameters go into the model file (LoRA adapters, or the fine-tuned weights), so a LoRA checkpoint
does not repeat the frozen base; loading takes the rest from the starting model.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel

from unprior.io import MANIFEST, is_complete, read_json, staged_dir, write_json

CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"step-(\d{7})")
CHECKPOINT_FORMAT_VERSION = 1


def trainable_only(models: list, weights: list[dict[str, Any]], output_dir: str) -> None:
    """``accelerator.save_state`` pre-hook: keep only parameters that require grad in each saved model state."""
    for model, state in zip(models, weights, strict=False):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for name in [k for k in state if k not in trainable]:
            del state[name]


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.fullmatch(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: p.name)


def save_checkpoint(accelerator, out: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint after ``step`` optimizer steps; every process must call this.

    Args:
        accelerator: The run's accelerator (its prepared model, optimizer and scheduler are saved).
        out: The run's output directory.
        step: Optimizer steps done.
        state: JSON-able trainer state (step, config hash, ...), written by the main process.
        keep: Keep only the newest ``keep`` checkpoints (0: all).

    Returns:
        The complete checkpoint directory.
    """
    root = Path(out) / CHECKPOINTS
    final = root / f"step-{step:07d}"
    partial = root / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(partial / "trainer_state.json", state)
        write_json(partial / MANIFEST, {"kind": "unprior-checkpoint", "format_version": CHECKPOINT_FORMAT_VERSION,
                                        "step": step})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in checkpoint_dirs(out)[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> dict[str, Any]:
    """Restore model (trainable part), optimizer, scheduler and RNG states; return the trainer state."""
    accelerator.load_state(str(path), strict=False)
    return read_json(path / "trainer_state.json")


def save_final_model(accelerator, scorer, processor, out: str | Path, *, merge_lora: bool,
                     extra_files: dict[str, Any]) -> Path:
    """Save the trained model as a normal transformers model directory ``out/model`` (with its processor).

    With LoRA, the directory holds the PEFT adapter (``adapter_config.json``; load with ``PeftModel``), or with
    ``merge_lora`` the merged plain model. ``extra_files`` are written as JSON beside it; ``manifest.json`` last.
    """
    target = Path(out) / "model"
    model = accelerator.unwrap_model(scorer).model
    state = accelerator.get_state_dict(scorer)
    if accelerator.is_main_process:
        with staged_dir(target, overwrite=True) as tmp:
            if isinstance(model, PeftModel) and merge_lora:
                model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
            else:
                state = {k.removeprefix("model."): v for k, v in state.items()}
                model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            processor.save_pretrained(tmp)
            for name, content in extra_files.items():
                write_json(tmp / name, content)
            write_json(tmp / MANIFEST, {"kind": "unprior-model", "lora": isinstance(model, PeftModel),
                                        "merged": merge_lora})
    accelerator.wait_for_everyone()
    return target
