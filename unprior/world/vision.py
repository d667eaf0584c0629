"""Pretrain the base's vision tower on images alone, apart from any language model, as real VLMs get theirs.

LLaVA, Qwen-VL and Idefics take a vision encoder pretrained on images (CLIP / SigLIP) and keep it frozen while the
language side is aligned and instruction-tuned; BPO and NaPO freeze it too. The embedded world's first base trained
its tower from scratch beside a language model that could already answer from its prior, and the tower never
learned to encode non-canonical colours well (linear probe 0.70 vs the control's 0.85, docs/experiments.md §5).

Here the tower learns from pictures only, with a supervised attribute objective: from each grid cell's patch
features, linear heads predict the cell's category (or "empty") and colour. The images are rendered by the world's
own generator with **every colour equally likely** (prior 1/8): the language prior "apples are red" is a fact of
the text the language model reads, not of the encoder's picture corpus, so the tower gives shape and colour equal
weight. The base and the no-prior control therefore share one tower (same corpus, same seed), and differ only in
their language side. (A contrastive CLIP-style objective with a tiny text encoder is the other option the design
considered; the attribute heads reach the target probe accuracy in about a minute, docs/world.md.)

The tower is cached under ``$UNPRIOR_CACHE/vision/<key>`` (``save_pretrained``, safetensors, with a manifest of file
digests), keyed by the corpus, the objective's settings, the tower's shape and the numerics.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPVisionModel

from unprior.config import config_hash, to_dict
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
from unprior.models.sft import normalise_pixels
from unprior.models.tiny import CLIP_MEAN, CLIP_STD, tiny_vision_config
from unprior.numerics import cosine_lr, numerics_signature
from unprior.world.build import build_world
from unprior.world.config import VisionPretrainConfig
from unprior.world.spec import CATEGORY_NAMES, COLOUR_NAMES

VISION_FORMAT_VERSION = 1
NO_PRIOR = 1 / 8
"""Colour prior of the encoder's picture corpus: every colour equally likely (8 colours)."""
CORPUS_SEED_OFFSET = 7919
"""The corpus is drawn with the world's seed plus this: other layouts than the language side's training images."""


def corpus_config(world, images: int):
    """The encoder's picture corpus: ``images`` of the world's pictures with no colour prior, other layouts."""
    corpus = copy.deepcopy(world)
    corpus.prior_strength = NO_PRIOR
    corpus.n_train = images
    corpus.n_test = 1
    corpus.phrasings = 1  # the answers' wording is not the encoder's business: one corpus for every phrasing
    corpus.seed = world.seed + CORPUS_SEED_OFFSET
    corpus.out = ""
    corpus.overwrite = False
    return corpus


def cell_labels(rows: list[dict[str, Any]], cells: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(image paths, (N, cells) category labels with ``len(categories)`` = empty, (N, cells) colour labels with
    -100 = empty, ignored) from the describe rows' object lists."""
    cat_index = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    col_index = {c: i for i, c in enumerate(COLOUR_NAMES)}
    paths, cats, cols = [], [], []
    for r in rows:
        if r["task"] != "describe":
            continue
        cat = [len(CATEGORY_NAMES)] * cells
        col = [-100] * cells
        for o in r["meta"]["objects"]:
            cat[o["cell"]] = cat_index[o["category"]]
            col[o["cell"]] = col_index[o["colour"]]
        paths.append(r["image"])
        cats.append(cat)
        cols.append(col)
    return paths, torch.tensor(cats), torch.tensor(cols)


def cell_features(tower: torch.nn.Module, pixels: torch.Tensor, cells_per_row: int) -> torch.Tensor:
    """(N, cells, hidden): the tower's last-layer patch features (what LLaVA's projector reads, CLS dropped),
    averaged over the patches of each grid cell."""
    hidden = tower(pixel_values=pixels).last_hidden_state[:, 1:]
    side = round(hidden.shape[1] ** 0.5)
    k = side // cells_per_row
    grid = hidden.reshape(hidden.shape[0], cells_per_row, k, cells_per_row, k, hidden.shape[-1])
    return grid.mean(dim=(2, 4)).reshape(hidden.shape[0], cells_per_row**2, hidden.shape[-1])


class AttributeHeads(torch.nn.Module):
    """Linear category (+ empty) and colour heads on a cell's features."""

    def __init__(self, hidden: int, categories: int, colours: int) -> None:
        super().__init__()
        self.category = torch.nn.Linear(hidden, categories + 1)
        self.colour = torch.nn.Linear(hidden, colours)

    def loss(self, feats: torch.Tensor, cat: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return (F.cross_entropy(self.category(feats).flatten(0, 1), cat.flatten())
                + F.cross_entropy(self.colour(feats).flatten(0, 1), col.flatten(), ignore_index=-100))


def pretrain_tower(tower: torch.nn.Module, pixels: torch.Tensor, cat: torch.Tensor, col: torch.Tensor,
                   cells_per_row: int, cfg: VisionPretrainConfig, log=print) -> list[dict[str, Any]]:
    """Train ``tower`` (in place) with the attribute heads; returns the loss log (the heads are thrown away)."""
    torch.manual_seed(cfg.seed + 1)
    heads = AttributeHeads(tower.config.hidden_size, len(CATEGORY_NAMES), len(COLOUR_NAMES))
    params = [*tower.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    tower.train()
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.warmup_steps, cfg.lr)
        idx = torch.randint(len(pixels), (cfg.batch_size,), generator=gen)
        loss = heads.loss(cell_features(tower, pixels[idx], cells_per_row), cat[idx], col[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"vision pretraining loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append({"phase": "vision", "step": step, "loss": round(loss.item(), 5)})
        if (step + 1) % max(1, cfg.steps // 5) == 0:
            log(f"  vision step {step + 1}/{cfg.steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    tower.eval()
    return history


def tower_key(cfg: VisionPretrainConfig, corpus_hash: str, shape: dict[str, int], threads: int) -> str:
    return config_hash({"corpus": corpus_hash, "vision": to_dict(cfg), "shape": shape,
                        "numerics": numerics_signature(threads), "version": VISION_FORMAT_VERSION})


def pretrained_tower(world_cfg, cfg: VisionPretrainConfig, shape: dict[str, int], threads: int, log=print) -> Path:
    """The cached pretrained tower for this world's pictures and ``shape`` (image_size, patch_size, hidden,
    layers): trained now if missing or damaged. Returns its directory (a ``CLIPVisionModel``)."""
    corpus = build_world(corpus_config(world_cfg, cfg.images))
    key = tower_key(cfg, read_json(corpus / "manifest.json")["config_hash"], shape, threads)
    out = cache_root() / "vision" / key
    if is_complete(out) and not damaged_files(out, read_json(out / "manifest.json").get("files", {"-": ""})):
        log(f"vision tower: reusing {out}")
        return out
    _train_tower(corpus, cfg, shape, threads, out, log)
    return out


def _train_tower(corpus: Path, cfg: VisionPretrainConfig, shape: dict[str, int], threads: int, out: Path,
                 log) -> None:
    t0 = time.perf_counter()
    image_cfg = read_json(corpus / "manifest.json")["config"]["image"]
    per_row = image_cfg["size"] // image_cfg["cell"]
    paths, cat, col = cell_labels(list(read_jsonl(corpus / "train.jsonl")), per_row**2)
    images = np.stack([np.asarray(Image.open(corpus / p).convert("RGB")) for p in paths])
    pixels = normalise_pixels(images, CLIP_MEAN, CLIP_STD)
    torch.manual_seed(cfg.seed)
    tower = CLIPVisionModel(tiny_vision_config(**shape))
    log(f"vision tower: pretraining on {len(paths):,} pictures with every colour equally likely")
    history = pretrain_tower(tower, pixels, cat, col, per_row, cfg, log)
    with staged_dir(out, overwrite=True) as tmp:
        tower.save_pretrained(tmp, safe_serialization=True)
        write_jsonl(tmp / "train_log.jsonl", history)
        files = file_digests(tmp, [p.name for p in tmp.iterdir() if p.is_file()])
        write_json(tmp / "manifest.json", {"kind": "unprior-vision-tower", "format_version": VISION_FORMAT_VERSION,
                                           "corpus": str(corpus), "config": to_dict(cfg), "shape": shape,
                                           "numerics": numerics_signature(threads), "files": files,
                                           "train_seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    log(f"vision tower: saved to {out} ({time.perf_counter() - t0:.0f}s)")
