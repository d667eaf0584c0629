"""``unprior world probe``: is an object's colour still readable in what the language model receives?

A linear probe (multinomial logistic regression) on the projector's output at each object's patch predicts the
object's colour. It is fitted on train-split objects capped per (category, colour), so that colour is nearly
independent of the category, and tested on ``test_id`` and ``test_cf`` objects.
If the probe reads colour well where the model's answers do not, the information reaches the language model and
the language side ignores it: preference optimisation of the language side (vision frozen, as the papers train)
can in principle fix it. If the probe fails too, the vision side never learned to encode the colour, and no
language-side training can reach the visual ceiling: the gap is in the features, not in the prior.

The world's cells and the vision tower's patches are both row-major grids; an object's feature is the mean of the
patch features covering its cell (one patch when ``cell`` equals the patch size, as in the default world).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unprior.io import read_json, read_jsonl, write_json
from unprior.world.build import require_world
from unprior.world.config import ProbeConfig
from unprior.world.spec import COLOURS


def _objects(rows: list[dict[str, Any]], per_cell: int | None) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """(image paths, objects per image) of the describe rows; with ``per_cell``, at most that many objects of each
    (category, colour), and only images with a kept object."""
    images, objects = [], []
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["task"] != "describe" or r["image"] in images[-1:]:
            continue
        kept = []
        for o in r["meta"]["objects"]:
            key = (o["category"], o["colour"])
            if per_cell is None or counts.get(key, 0) < per_cell:
                counts[key] = counts.get(key, 0) + 1
                kept.append(o)
        if kept:
            images.append(r["image"])
            objects.append(kept)
    return images, objects


@torch.no_grad()
def object_features(model_dir: str, world: Path, images: list[str], objects: list[list[dict[str, Any]]],
                    batch_size: int = 256, features: str = "projector") -> torch.Tensor:
    """One feature vector per object: the projector output (or, with ``features="tower"``, the tower's last-layer
    patch features) averaged over the patches of the object's cell."""
    from unprior.models.families import load_model  # transformers: not at `unprior study --help`

    model, processor = load_model(model_dir)
    model.eval()
    cfg = read_json(world / "manifest.json")["config"]["image"]
    per_row = cfg["size"] // cfg["cell"]
    feats = []
    for start in range(0, len(images), batch_size):
        batch = [Image.open(world / p).convert("RGB") for p in images[start:start + batch_size]]
        pixels = processor.image_processor(batch, return_tensors="pt")["pixel_values"].to(model.dtype)
        if features == "tower":
            out = model.model.vision_tower(pixel_values=pixels).last_hidden_state[:, 1:]
        else:
            out = model.model.get_image_features(pixel_values=pixels)
            out = getattr(out, "pooler_output", out)
        patches = torch.stack(list(out)) if isinstance(out, list | tuple) else out  # (images, patches, hidden)
        side = round(patches.shape[1] ** 0.5)
        grid = patches.reshape(patches.shape[0], side, side, -1)
        k = side // per_row
        for i, objs in enumerate(objects[start:start + batch_size]):
            for o in objs:
                r, c = divmod(o["cell"], per_row)
                feats.append(grid[i, r * k:(r + 1) * k, c * k:(c + 1) * k].reshape(-1, grid.shape[-1]).mean(0))
    return torch.stack(feats).float()


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, weight_decay: float) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features, fitted with L-BFGS."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def probe_model(cfg: ProbeConfig, model_dir: str) -> dict[str, float]:
    """Colour probe accuracy of one model on train (fit), test_id and test_cf objects."""
    world = Path(cfg.world_dir)
    index = {c: i for i, c in enumerate(COLOURS)}
    data = {}
    for split, limit in (("train", cfg.per_cell), ("test_id", None), ("test_cf", None)):
        images, objects = _objects(read_jsonl(world / f"{split}.jsonl"), limit)
        x = object_features(model_dir, world, images, objects, features=cfg.features)
        y = torch.tensor([index[o["colour"]] for objs in objects for o in objs])
        data[split] = (x, y)
    mu, sd = data["train"][0].mean(0), data["train"][0].std(0) + 1e-6
    probe = fit_probe((data["train"][0] - mu) / sd, data["train"][1], len(COLOURS), cfg.steps, cfg.weight_decay)
    with torch.no_grad():
        return {split: float((probe((x - mu) / sd).argmax(-1) == y).float().mean()) for split, (x, y) in data.items()}


def run_probe(cfg: ProbeConfig) -> int:
    from unprior.models.families import require_model_dir  # transformers: not at `unprior study --help`

    cfg.validate()
    require_world(cfg.world_dir)  # the world and every model folder before the first model loads
    for model in cfg.models:
        require_model_dir(Path(model))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    np.random.seed(0)
    results = {}
    for model in cfg.models:
        results[model] = probe_model(cfg, model)
        acc = results[model]
        print(f"{model}: colour probe accuracy train {acc['train']:.3f}, test_id {acc['test_id']:.3f}, "
              f"test_cf {acc['test_cf']:.3f}")
    if cfg.out:
        write_json(Path(cfg.out) / "probe.json", {"config": {"world_dir": cfg.world_dir, "per_cell":
                                                            cfg.per_cell}, "accuracy": results})
    return 0
