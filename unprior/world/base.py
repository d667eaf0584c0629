"""``unprior world base``: train the tiny biased base VLM the way real MLLMs acquire their bias.

1. A byte-level BPE tokenizer is trained on the world's text (every category, colour and template phrase).
2. A tiny LLaVA is built from configs (random weights).
3. Text-only "pretraining": the world's questions and answers with the image removed. This corpus states the priors
   at the world's frequencies (apples are red 95 % of the time; bananas come with apples), as pretraining text
   states "bears are brown" for a real LLM.
4. A short multimodal SFT on the train split. The step count is fixed: the prior fades with longer training
   (docs/world.md, "What the design runs showed", item 2), so more steps give a less biased base.

The result is saved with ``save_pretrained`` (safetensors) and cached under ``$UNPRIOR_CACHE/base/<hash>``, keyed
by everything that changes the weights, so the demo and the tests reuse it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from transformers import CLIPVisionModel

from unprior.config import config_hash, describe_changes, dump_yaml, from_dict, to_dict
from unprior.io import (
    cache_root,
    damaged_files,
    file_digests,
    is_complete,
    read_json,
    read_jsonl,
    staged_dir,
    write_json,
    write_jsonl,
)
from unprior.models.sft import Encoded, encode_rows, sft
from unprior.models.tiny import build_tiny_llava, save_model
from unprior.models.tokenizer import train_tokenizer
from unprior.numerics import numerics_signature, torch_threads
from unprior.world.build import DESCRIBE_PROMPT, attribute_qa, describe, exists_qa, resolve_world
from unprior.world.config import BaseConfig, WorldConfig
from unprior.world.render import Placed
from unprior.world.spec import CATEGORY_NAMES, COLOUR_NAMES
from unprior.world.vision import pretrained_tower

BASE_FORMAT_VERSION = 1


def vocabulary_corpus() -> list[str]:
    """Every phrase the world can produce (each category in each colour), so no test word is out of vocabulary."""
    lines = [DESCRIBE_PROMPT]
    for cat in CATEGORY_NAMES:
        for present in (True, False):
            lines += list(exists_qa(cat, present))
        for col in COLOUR_NAMES:
            lines += list(attribute_qa(cat, col))
            lines.append(describe([Placed(cat, col, 0), Placed(cat, col, 1)]))
    return lines


def load_images(root: Path, rels: list[str]) -> np.ndarray:
    """(N, H, W, 3) uint8 stack of the PNGs at ``rels`` under ``root``."""
    return np.stack([np.asarray(Image.open(root / r).convert("RGB")) for r in rels])


def load_split(root: Path, split: str) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    """Rows of a split, its distinct image paths, and each row's index into them."""
    rows = list(read_jsonl(root / f"{split}.jsonl"))
    paths: dict[str, int] = {}
    index = [paths.setdefault(r["image"], len(paths)) for r in rows]
    return rows, list(paths), index


def base_key(cfg: BaseConfig, world_hash: str) -> str:
    """Cache key of a base model: the world, the training fields, and the numerics it trains with.

    The thread count and the CPU kernel paths (AVX2 or AVX-512 in ATen, MKL and oneDNN) change the float
    summation order and so the weights (a 1-thread and a 2-thread base differ by 0.04 in CF accuracy; AVX2 and
    AVX-512 kernels by 0.28 in POPE accuracy on the test suite's base), so a model trained with other numerics is
    not reused (:func:`unprior.numerics.numerics_signature`). ``threads = 0`` counts as torch's current default.
    """
    numerics = numerics_signature(cfg.threads or torch.get_num_threads())
    return config_hash(_key_inputs(to_dict(cfg), world_hash, numerics, BASE_FORMAT_VERSION))


def _key_inputs(config: dict[str, Any], world_hash: str, numerics: dict[str, Any], version: int) -> dict[str, Any]:
    """What :func:`base_key` hashes, from a config dict (the training fields only)."""
    train = {k: v for k, v in config.items() if k not in ("world", "world_dir", "out", "overwrite", "threads")}
    return {"world": world_hash, "train": train, "numerics": numerics, "version": version}


def _key_changes(manifest: dict[str, Any], cfg: BaseConfig, world_hash: str) -> str:
    """The key inputs that differ between a saved base's manifest and ``cfg`` (field: old -> new)."""
    old = _key_inputs(manifest.get("config", {}), manifest.get("world_hash", ""), manifest.get("numerics", {}),
                      manifest.get("format_version", 0))
    new = _key_inputs(to_dict(cfg), world_hash, numerics_signature(cfg.threads or torch.get_num_threads()),
                      BASE_FORMAT_VERSION)
    return describe_changes(old, new)


def base_dir_for(cfg: BaseConfig, world: Path) -> Path:
    if cfg.out:
        return Path(cfg.out)
    return cache_root() / "base" / base_key(cfg, read_json(world / "manifest.json")["config_hash"])


def train_base(cfg: BaseConfig, log=print) -> Path:
    """Build the world if needed, train the base model, save it atomically; reuse a finished cached model.

    Trains with ``cfg.threads`` torch threads and restores the caller's count afterwards.
    """
    with torch_threads(cfg.threads):
        return _train_base(cfg, log)


def _train_base(cfg: BaseConfig, log) -> Path:
    world = resolve_world(cfg)
    out = base_dir_for(cfg, world)
    key = base_key(cfg, read_json(world / "manifest.json")["config_hash"])
    if is_complete(out) and not cfg.overwrite:
        manifest = read_json(out / "manifest.json")
        if manifest.get("key") != key:
            changes = _key_changes(manifest, cfg, read_json(world / "manifest.json")["config_hash"])
            raise FileExistsError(f"{out} holds a base model trained with another config or other numerics "
                                  f"({changes}); pass overwrite=true to retrain it there")
        damaged = damaged_files(out, manifest.get("files", {})) if "files" in manifest else ["manifest.json"]
        if not damaged:
            log(f"base model: reusing {out}")
            return out
        log(f"base model: {out} is damaged ({', '.join(damaged)} missing or changed); training it again")
    t0 = time.perf_counter()
    rows, paths, index = load_split(world, "train")
    prompts, answers = [r["prompt"] for r in rows], [r["answer"] for r in rows]
    tokenizer = train_tokenizer([*prompts[:20000], *answers[:20000], *vocabulary_corpus()], cfg.model.vocab_size)
    images = load_images(world, paths)
    m = cfg.model
    model, processor = build_tiny_llava(tokenizer, image_size=images.shape[1], patch_size=_cell(world),
                                        vision_hidden=m.vision_hidden, vision_layers=m.vision_layers,
                                        text_hidden=m.text_hidden, text_layers=m.text_layers, text_heads=m.text_heads,
                                        seed=cfg.seed)
    data = Phases(text_only=encode_rows(processor, prompts, answers, [-1] * len(rows), None),
                  multimodal=encode_rows(processor, prompts, answers, index, images),
                  captions=[i for i, r in enumerate(rows) if r["task"] == "describe"],
                  pad_id=tokenizer.pad_token_id, world=world)  # fmt: skip
    log(f"base model: {sum(p.numel() for p in model.parameters()):,} parameters, {len(rows):,} rows, "
        f"{len(paths):,} images, recipe {cfg.recipe} (setup {time.perf_counter() - t0:.1f}s)")
    history = RECIPES[cfg.recipe](cfg, model, data, log)
    with staged_dir(out, overwrite=True) as tmp:
        save_model(model, processor, tmp)
        dump_yaml(cfg, tmp / "base_config.yaml")
        write_jsonl(tmp / "train_log.jsonl", history)
        files = file_digests(tmp, [p.name for p in tmp.iterdir() if p.is_file()])
        write_json(tmp / "manifest.json", {
            "kind": "unprior-base",
            "format_version": BASE_FORMAT_VERSION,
            "world": str(world),
            "world_hash": read_json(world / "manifest.json")["config_hash"],
            "key": key,
            "config": to_dict(cfg),
            "numerics": numerics_signature(cfg.threads or torch.get_num_threads()),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "files": files,
        })
    log(f"base model: saved to {out} ({time.perf_counter() - t0:.0f}s)")
    return out


@dataclass
class Phases:
    """What the recipes train on: the train split encoded without and with its images."""

    text_only: Encoded
    multimodal: Encoded
    captions: list[int]
    """Rows of ``multimodal`` that are describe rows (image captions: the alignment data)."""
    pad_id: int
    world: Path


def joint_recipe(cfg: BaseConfig, model, data: Phases, log) -> list[dict[str, Any]]:
    """The first organism: text-only pretraining, then multimodal SFT of every weight, the tower from scratch."""
    history = _phase(cfg, model, data.text_only, cfg.pretrain_steps, "pretrain", data.pad_id, log)
    return history + _phase(cfg, model, data.multimodal, cfg.sft_steps, "sft", data.pad_id, log)


def pretrained_vision_recipe(cfg: BaseConfig, model, data: Phases, log) -> list[dict[str, Any]]:
    """Built like LLaVA: (a) a tower pretrained on pictures alone, frozen from then on; (b) the language model on
    text (the prior); (c) the projector aligned on captions, everything else frozen; (d) multimodal SFT of the
    projector and the language model."""
    tower = tower_for(cfg, data.world, log)

    model.model.vision_tower.load_state_dict(CLIPVisionModel.from_pretrained(tower).state_dict())
    parts = {"tower": model.model.vision_tower, "projector": model.model.multi_modal_projector,
             "lm": [model.model.language_model, model.lm_head]}  # fmt: skip
    history = []
    for name, enc, steps, trained in (
        ("pretrain", data.text_only, cfg.pretrain_steps, ("lm",)),
        ("align", _subset(data.multimodal, data.captions), cfg.align_steps, ("projector",)),
        ("sft", data.multimodal, cfg.sft_steps, ("projector", "lm")),
    ):
        _train_only(parts, trained)
        history += _phase(cfg, model, enc, steps, name, data.pad_id, log)
    _train_only(parts, ("tower", "projector", "lm"))
    return history


def tower_for(cfg: BaseConfig, world: Path | None = None, log=print) -> Path:
    """The pretrained tower of a ``pretrained_vision`` base (trained now unless cached). The base and its no-prior
    control share it: callers that train both in parallel get it first, so it is trained once."""
    world = world or resolve_world(cfg)
    return pretrained_tower(_world_config(world), cfg.vision, _tower_shape(cfg, world),
                            cfg.threads or torch.get_num_threads(), log)  # fmt: skip


RECIPES = {"joint": joint_recipe, "pretrained_vision": pretrained_vision_recipe}
"""``BaseConfig.recipe`` -> how the base is trained."""


def _train_only(parts: dict[str, Any], names: tuple[str, ...]) -> None:
    for name, modules in parts.items():
        for module in modules if isinstance(modules, list) else [modules]:
            module.requires_grad_(name in names)


def _subset(enc: Encoded, rows: list[int]) -> Encoded:
    return Encoded([enc.ids[i] for i in rows], [enc.prompt_lens[i] for i in rows],
                   [enc.image_index[i] for i in rows], enc.pixels)  # fmt: skip


def _world_config(world: Path):
    return from_dict(WorldConfig, read_json(world / "manifest.json")["config"])


def _tower_shape(cfg: BaseConfig, world: Path) -> dict[str, int]:
    image = read_json(world / "manifest.json")["config"]["image"]
    return {"image_size": image["size"], "patch_size": image["cell"], "hidden": cfg.model.vision_hidden,
            "layers": cfg.model.vision_layers}


def _cell(world: Path) -> int:
    return int(read_json(world / "manifest.json")["config"]["image"]["cell"])


def _phase(cfg: BaseConfig, model, enc: Encoded, steps: int, name: str, pad_id: int, log) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def on_step(step: int, loss: float) -> None:
        history.append({"phase": name, "step": step, "loss": round(loss, 5)})
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  {name} step {step + 1}/{steps} loss {loss:.4f} ({time.perf_counter() - t0:.0f}s)")

    sft(model, enc, steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup_steps,
        seed=cfg.seed + (0 if name == "pretrain" else 1), pad_id=pad_id, on_step=on_step)
    return history


def run_base(cfg: BaseConfig) -> int:
    console = Console()
    train_base(cfg, log=console.print)
    return 0
