"""``unprior world build``: the seeded synthetic world, written in unprior's source-dataset format.

Layout of the output directory (the same format users feed to ``unprior pairs``)::

    manifest.json        world config, its hash, counts, format version (written last: marks the build complete)
    config.yaml          the resolved WorldConfig
    train.jsonl          rows {id, image, prompt, answer, task, meta}; ``image`` is relative to the root
    test_id.jsonl        in-distribution test: drawn like train
    test_cf.jsonl        counterfactual test: every object has a non-canonical colour, every partner is absent
    images/<split>/<n>.png

Tasks: ``describe`` (list every object with its colour, CHAIR-style), ``attribute`` ("What color is the X?"),
``exists`` ("Is there a X in the image?"; on test splits sampled POPE-style: random / popular / adversarial
negatives), and attribute questions in busy scenes (``meta.busy``), where an answer that lists everything is
vision-biased. Every row's ``meta.objects`` is the ground-truth object set. With ``phrasings`` ≥ 2 each answer
takes one of several equally valid templates of its task (:mod:`unprior.world.phrasings`), recorded in
``meta.phrasing``.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unprior.config import config_hash, dump_yaml, to_dict
from unprior.io import InputError, cache_root, is_complete, read_json, staged_dir, write_json, write_jsonl
from unprior.world.config import BaseConfig, WorldConfig
from unprior.world.phrasings import attribute_text, describe_text, exists_text
from unprior.world.render import Placed, render
from unprior.world.spec import (
    CATEGORY_NAMES,
    COLOUR_NAMES,
    PAIR_WEIGHTS,
    PAIRS,
    POPULARITY,
    article,
    canonical,
    partner,
)

FORMAT_VERSION = 1
SPLITS = ("train", "test_id", "test_cf")
DESCRIBE_PROMPT = "Describe the image."


def _colour(category: str, prior: float, rng: np.random.Generator, counterfactual: bool) -> str:
    canon = canonical(category)
    if not counterfactual and rng.random() < prior:
        return canon
    others = [c for c in COLOUR_NAMES if c != canon]
    return others[int(rng.integers(len(others)))]


def sample_scene(cfg: WorldConfig, rng: np.random.Generator, counterfactual: bool = False) -> list[Placed]:
    """Objects of one image: one or two partner groups; each group is the full pair with prob ``pair_strength``.

    Counterfactual scenes hold every group as a single member (the partner is absent) and draw every colour from
    the non-canonical ones. Objects are sorted in category order (the order descriptions use).
    """
    n_cells = (cfg.image.size // cfg.image.cell) ** 2
    n_groups = 2 if rng.random() < cfg.two_groups else 1
    n_groups = min(n_groups, len(PAIRS), cfg.image.max_objects)
    groups = rng.choice(len(PAIRS), size=n_groups, replace=False, p=PAIR_WEIGHTS)
    names: list[str] = []
    for g in groups:
        pair = list(PAIRS[int(g)])
        if counterfactual or rng.random() >= cfg.pair_strength:
            names.append(pair[int(rng.integers(2))])
        else:
            names += pair
    names = names[: cfg.image.max_objects]
    cells = rng.choice(n_cells, size=len(names), replace=False)
    objs = [
        Placed(n, _colour(n, cfg.prior_strength, rng, counterfactual), int(c))
        for n, c in zip(names, cells, strict=True)
    ]
    return sorted(objs, key=lambda o: CATEGORY_NAMES.index(o.category))


def describe(objects: list[Placed], phrasing: int = 0) -> str:
    """Every object with its colour, in the given (category) order: "A red apple and a yellow banana."."""
    return describe_text([(o.category, o.colour) for o in objects], phrasing)


def attribute_qa(category: str, colour: str, phrasing: int = 0) -> tuple[str, str]:
    return f"What color is the {category}?", attribute_text(category, colour, phrasing)


def exists_qa(category: str, present: bool, phrasing: int = 0) -> tuple[str, str]:
    return f"Is there {article(category)} {category} in the image?", exists_text(category, present, phrasing)


# ---------------------------------------------------------------- POPE-style negatives


def pope_negatives(present: set[str], setting: str, k: int, rng: np.random.Generator) -> list[str]:
    """Absent categories to ask about: random (uniform), popular (most frequent), adversarial (co-occurring first).

    As in POPE (Li et al. 2023): "popular" takes the top-k frequent absent objects, "adversarial" the top-k objects
    that co-occur most with the present ones; here that is first the absent partners of present objects.
    """
    absent = [c for c in CATEGORY_NAMES if c not in present]
    if setting == "random":
        order = list(rng.permutation(absent))
    elif setting == "popular":
        order = [c for c in POPULARITY if c in absent]
    elif setting == "adversarial":
        partners = [partner(c) for c in sorted(present) if partner(c) in absent]
        rest = [c for c in rng.permutation(absent) if c not in partners]
        order = list(dict.fromkeys([*partners, *rest]))
    else:
        raise ValueError(f"unknown POPE setting {setting!r}")
    return [str(c) for c in order[:k]]


def _obj_meta(objects: list[Placed]) -> list[dict[str, Any]]:
    return [{"category": o.category, "colour": o.colour, "cell": o.cell} for o in objects]


class _Phrasings:
    """Draws each row's phrasing (:mod:`unprior.world.phrasings`) from its own stream, so that with one phrasing
    nothing is drawn and the rows, their meta and every other stream are what they were before phrasings existed."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng

    def draw(self) -> tuple[int, dict[str, int]]:
        """(phrasing index, the meta that records it: empty with one phrasing)."""
        if self.n == 1:
            return 0, {}
        k = int(self.rng.integers(self.n))
        return k, {"phrasing": k, "phrasings": self.n}


def _rows_for_image(
    split: str, idx: int, image: str, objects: list[Placed], cfg: WorldConfig, rng: np.random.Generator,
    phrasings: _Phrasings,
) -> Iterator[dict[str, Any]]:
    present = {o.category for o in objects}
    meta = {"objects": _obj_meta(objects), "split": split}
    busy = len(objects) >= 3

    def row(task: str, k: int, qa: tuple[str, str], phrased: dict[str, int], **extra: Any) -> dict[str, Any]:
        return {
            "id": f"{split}-{idx:06d}-{task}-{k}",
            "image": image,
            "prompt": qa[0],
            "answer": qa[1],
            "task": task,
            "meta": {**meta, **extra, **phrased},
        }

    p, phrased = phrasings.draw()
    yield row("describe", 0, (DESCRIBE_PROMPT, describe(objects, p)), phrased)
    for k, o in enumerate(objects):
        p, phrased = phrasings.draw()
        yield row("attribute", k, attribute_qa(o.category, o.colour, p), phrased, target=o.category,
                  colour=o.colour, canonical=o.colour == canonical(o.category), busy=busy)
    if split == "train":
        pos = objects[int(rng.integers(len(objects)))].category
        neg = pope_negatives(present, str(rng.choice(["random", "adversarial"])), 1, rng)
        for k, (cat, label) in enumerate([(pos, True), *((n, False) for n in neg)]):
            p, phrased = phrasings.draw()
            yield row("exists", k, exists_qa(cat, label, p), phrased, target=cat, label="yes" if label else "no")
        return
    k = 0
    for setting in ("random", "popular", "adversarial"):
        pos = [o.category for o in objects]
        pos = [str(c) for c in rng.permutation(pos)][: cfg.pope_per_image]
        negs = pope_negatives(present, setting, len(pos), rng)
        for cat, label in [*((c, True) for c in pos), *((c, False) for c in negs)]:
            p, phrased = phrasings.draw()
            yield row("exists", k, exists_qa(cat, label, p), phrased, target=cat, label="yes" if label else "no",
                      pope=setting)
            k += 1


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def generate_split(cfg: WorldConfig, split: str, root: Path) -> tuple[list[dict[str, Any]], Counter]:
    """Render one split's images under ``root/images/<split>`` and return its rows and counters."""
    n = cfg.n_train if split == "train" else cfg.n_test
    seed = [cfg.seed, SPLITS.index(split)]
    scene_rng = np.random.default_rng([*seed, 0])
    pixel_rng = np.random.default_rng([*seed, 1])
    text_rng = np.random.default_rng([*seed, 2])
    phrasings = _Phrasings(cfg.phrasings, np.random.default_rng([*seed, 3]))
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    rows, stats = [], Counter()
    for idx in range(n):
        objects = sample_scene(cfg, scene_rng, counterfactual=split == "test_cf")
        arr = render(objects, cfg.image, pixel_rng)
        rel = f"images/{split}/{idx:06d}.png"
        (root / rel).write_bytes(_png(arr))
        for o in objects:
            stats["objects"] += 1
            stats["canonical"] += o.colour == canonical(o.category)
        stats["partner_present"] += sum(partner(o.category) in {p.category for p in objects} for o in objects)
        rows += list(_rows_for_image(split, idx, rel, objects, cfg, text_rng, phrasings))
    stats["images"] = n
    stats["rows"] = len(rows)
    return rows, stats


def world_dir_for(cfg: WorldConfig) -> Path:
    return Path(cfg.out) if cfg.out else cache_root() / "worlds" / config_hash(_content(cfg))


def _content(cfg: WorldConfig) -> dict[str, Any]:
    """The part of the config that decides the data (not where it is written).

    ``phrasings`` enters only when it is not 1, so worlds built before the field existed keep their hash (and their
    cached builds and base models stay valid): with one phrasing the data is byte for byte what it was.
    """
    d = to_dict(cfg)
    d.pop("out")
    d.pop("overwrite")
    if d.get("phrasings") == 1:
        d.pop("phrasings")
    return d


def _same_world(out: Path, cfg: WorldConfig) -> bool:
    return read_json(out / "manifest.json").get("config_hash") == config_hash(_content(cfg))


def require_world(path: str | Path, field: str = "world_dir") -> Path:
    """``path`` as a world directory, or InputError in one line naming ``field``, the folder and the fix: it must be
    a finished ``unprior world build`` (a ``manifest.json`` with the world's config, and every split; docs/errors.md).
    """
    root = Path(path)
    fix = f"pass a folder written by `unprior world build out=...` as {field}"
    if not root.is_dir():
        raise InputError(f"{field}={path}: no such folder; {fix}")
    try:
        manifest = read_json(root / "manifest.json")
    except FileNotFoundError:
        raise InputError(f"{field}={path}: not a world (no manifest.json; an unfinished build?); {fix}") from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{field}={path}: manifest.json is damaged (not JSON); rebuild it with `unprior world "
                         f"build out={path} overwrite=true`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) or "config_hash" not in manifest:
        raise InputError(f"{field}={path}: manifest.json is not a world's (no config or config_hash); {fix}")
    missing = [f"{split}.jsonl" for split in SPLITS if not (root / f"{split}.jsonl").is_file()]
    if missing:
        raise InputError(f"{field}={path}: {', '.join(missing)} missing (an incomplete copy?); {fix}")
    return root


def resolve_world(cfg: BaseConfig) -> Path:
    """``cfg.world_dir`` (refused unless it is a finished world) or ``cfg.world`` built (or reused)."""
    return require_world(cfg.world_dir) if cfg.world_dir else build_world(cfg.world)


def build_world(cfg: WorldConfig) -> Path:
    """Build the world into ``cfg.out`` (or the cache) atomically; return its directory.

    A complete build of the same content is reused, in the cache or in ``cfg.out``; a different world in ``cfg.out``
    is refused unless ``overwrite`` is set.
    """
    out = world_dir_for(cfg)
    if is_complete(out) and not cfg.overwrite and _same_world(out, cfg):
        return out
    with staged_dir(out, overwrite=cfg.overwrite or not cfg.out) as tmp:
        counts = {}
        for split in SPLITS:
            rows, stats = generate_split(cfg, split, tmp)
            write_jsonl(tmp / f"{split}.jsonl", rows)
            counts[split] = {
                "images": stats["images"],
                "rows": stats["rows"],
                "canonical_share": round(stats["canonical"] / max(stats["objects"], 1), 4),
                "partner_present_share": round(stats["partner_present"] / max(stats["objects"], 1), 4),
            }
        dump_yaml(cfg, tmp / "config.yaml")
        write_json(
            tmp / "manifest.json",
            {
                "kind": "unprior-world",
                "format_version": FORMAT_VERSION,
                "config": to_dict(cfg),
                "config_hash": config_hash(_content(cfg)),
                "splits": counts,
                "categories": list(CATEGORY_NAMES),
                "colours": list(COLOUR_NAMES),
                "canonical": {c: canonical(c) for c in CATEGORY_NAMES},
                "partners": {c: partner(c) for c in CATEGORY_NAMES},
            },
        )
    return out


def run_build(cfg: WorldConfig) -> int:
    from rich.console import Console  # not at `unprior demo --help`

    out = build_world(cfg)
    console = Console()
    man = read_json(out / "manifest.json")
    console.print(f"[bold]world[/] {man['config_hash']} -> {out}")
    for split, c in man["splits"].items():
        console.print(f"  {split:8s} {c['images']:6d} images {c['rows']:7d} rows  canonical colour "
                      f"{c['canonical_share']:.3f}  partner present {c['partner_present_share']:.3f}")
    return 0
