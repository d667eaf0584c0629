"""The embedded synthetic world (``unprior world build``): language prior, co-occurrence hallucination, capability.

One benchmark, ``world``, over a world directory's test splits (``test_id``: drawn like training; ``test_cf``:
every colour non-canonical, every partner absent). Each row is one item with its own prompt and image; the three
tasks are scored by :mod:`unprior.world.metrics`, the same functions as ``unprior world report``:

- **attribute** ("What color is the X?"): accuracy, and the prior-follow rate (the answer names the category's
  canonical colour). Counterfactual attribute accuracy is the language-prior measure (VLind-LP-like); ID accuracy is
  the capability a debiasing method must keep. Over-description on busy scenes measures the opposite (vision) bias.
- **exists** ("Is there a X in the image?"): POPE-style yes/no per sampling setting (random / popular /
  adversarial), parsed with the official POPE rule; the false-positive rate is the co-occurrence hallucination.
- **describe**: CHAIR-style object hallucination (CHAIR_i, CHAIR_s, recall) and the partner-hallucination rate
  (an absent partner of a present object is named).

Metric names are ``<split>_<metric>`` with ``id`` / ``cf`` for ``test_id`` / ``test_cf`` (other split names are
kept as they are); values are fractions in [0, 1], as in the world report. ``limit`` counts images per split.
The grounding frontier (:mod:`unprior.eval.frontier`) complements these greedy numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unprior.config import fail
from unprior.eval.common import get_field, image_file, load_json, load_records, require_dir
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register
from unprior.world.build import resolve_world
from unprior.world.config import BaseConfig
from unprior.world.metrics import PARSER_VERSION, parse_colour, parse_objects, parse_yes_no, split_metrics
from unprior.world.spec import canonical

SCORER_VERSION = "world-metrics-v1"
TASKS = ("attribute", "exists", "describe")
POPE_SETTINGS = ("random", "popular", "adversarial")

# (key in unprior.world.metrics' output, metric suffix, higher_is_better on ID, on CF, description)
_ATTRIBUTE = (
    ("accuracy", "attribute_accuracy", True, True, "attribute questions answered with the true colour"),
    ("accuracy_canonical", "attribute_accuracy_canonical", True, True, "attribute accuracy, canonical colours"),
    ("accuracy_noncanonical", "attribute_accuracy_noncanonical", True, True,
     "attribute accuracy, non-canonical colours"),
    ("prior_follow", "prior_follow", None, False, "attribute answers naming the canonical colour"),
    ("unparsed", "attribute_unparsed", False, False, "attribute answers without a colour word"),
    ("busy_overdescribe", "busy_overdescribe", False, False, "busy-scene attribute answers naming other objects"),
)
_POPE = (
    ("false_positive_rate", "fp", False, "'yes' to an absent object"),
    ("accuracy", "accuracy", True, "yes/no accuracy"),
    ("f1", "f1", True, "F1, 'yes' positive"),
    ("precision", "precision", True, "precision, 'yes' positive"),
    ("recall", "recall", True, "recall, 'yes' positive"),
    ("yes_ratio", "yes_ratio", None, "share of 'yes' answers"),
)
_DESCRIBE = (
    ("chair_i", "chair_i", False, False, "CHAIR_i: named objects that are absent"),
    ("chair_s", "chair_s", False, False, "CHAIR_s: descriptions naming an absent object"),
    ("recall", "describe_recall", True, True, "present objects that the description names"),
    ("colour_accuracy", "describe_colour_accuracy", True, True, "colours right on named present objects"),
    ("colour_prior_follow", "describe_colour_prior_follow", None, False,
     "canonical colours on named present objects"),
    ("partner_hallucination", "partner_hallucination", False, False, "absent partners of present objects named"),
)
HEADLINE = ("id_attribute_accuracy", "cf_attribute_accuracy", "cf_prior_follow", "cf_pope_adversarial_fp",
            "cf_chair_i", "cf_partner_hallucination")


def split_prefix(split: str) -> str:
    """Metric prefix of a split: ``test_id`` -> ``id``, ``test_cf`` -> ``cf``, anything else unchanged."""
    return split.removeprefix("test_")


def resolve_world_dir(world_dir: str) -> Path:
    """``world_dir``, or (when empty) the default world, built into the cache on first use."""
    if world_dir:
        return Path(world_dir).expanduser()
    return resolve_world(BaseConfig())


def flatten_split_metrics(split: str, m: dict[str, Any]) -> dict[str, float]:
    """``unprior.world.metrics.split_metrics`` output -> flat ``{<prefix>_<metric>: value}``, None values dropped."""
    p = split_prefix(split)
    out: dict[str, Any] = {}
    for key, name, *_ in _ATTRIBUTE:
        out[f"{p}_{name}"] = m.get("attribute", {}).get(key)
    for setting, values in m.get("pope", {}).items():
        for key, name, *_ in _POPE:
            out[f"{p}_pope_{setting}_{name}"] = values.get(key)
    for key, name, *_ in _DESCRIBE:
        out[f"{p}_{name}"] = m.get("describe", {}).get(key)
    return {k: float(v) for k, v in out.items() if v is not None}


def world_metrics(splits: Sequence[str]) -> list[Metric]:
    """Every metric the benchmark can report for ``splits``, in display order."""
    out = []
    for split in splits:
        p, cf = split_prefix(split), split != "test_id"
        out += [Metric(f"{p}_{name}", hib_cf if cf else hib_id, f"{desc} ({split}), fraction", 3)
                for _, name, hib_id, hib_cf, desc in _ATTRIBUTE]
        out += [Metric(f"{p}_pope_{s}_{name}", hib, f"POPE {s}: {desc} ({split}), fraction", 3)
                for s in POPE_SETTINGS for _, name, hib, desc in _POPE]
        out += [Metric(f"{p}_{name}", hib_cf if cf else hib_id, f"{desc} ({split}), fraction", 3)
                for _, name, hib_id, hib_cf, desc in _DESCRIBE]
    return out


@dataclass
class WorldOptions:
    world_dir: str = ""
    """World dataset directory (`unprior world build`); empty: the default world, built or reused from the cache."""
    splits: list[str] = field(default_factory=lambda: ["test_id", "test_cf"])
    """Splits to answer (`<split>.jsonl` in world_dir); test_id and test_cf give the id_* and cf_* metrics."""

    def validate(self) -> None:
        if not self.splits:
            fail("splits", "give at least one split, e.g. [test_id, test_cf]")
        if len(set(self.splits)) != len(self.splits):
            fail("splits", f"repeated split in {self.splits}")


def _check_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields scoring needs, with DataError naming the row when one is missing."""
    task = get_field(row, "task", where, str)
    if task not in TASKS:
        raise DataError(f"{where}: field 'task' should be one of {', '.join(TASKS)}, got {task!r}")
    meta = get_field(row, "meta", where, dict)
    get_field(meta, "objects", f"{where} meta", list)
    needs = {"attribute": ("target", "colour", "canonical"), "exists": ("label",), "describe": ()}[task]
    for key in needs:
        get_field(meta, key, f"{where} meta")
    return meta


@register
class World(Benchmark):
    name = "world"
    version = "world-v1"
    parser_version = PARSER_VERSION
    scorer_version = SCORER_VERSION
    max_new_tokens = 32
    Options = WorldOptions

    def root(self) -> Path:
        return require_dir(resolve_world_dir(self.options.world_dir), "options.world_dir (world dataset)")

    def load(self) -> list[Item]:
        root = self.root()
        items: list[Item] = []
        for split in self.options.splits:
            for where, row in load_records(root / f"{split}.jsonl", f"options.splits: {split}"):
                meta = _check_row(row, where)
                image = image_file(root, get_field(row, "image", where, str), where, check=False)
                target = {"split": split, "task": row["task"], "meta": meta,
                          "reference": get_field(row, "answer", where, str)}
                items.append(Item(str(get_field(row, "id", where, str)), get_field(row, "prompt", where, str),
                                  image, target, where=where))
        return items

    def head(self, items: list[Item], limit: int) -> list[Item]:
        """The rows of the first ``limit`` images of each split."""
        keep: dict[str, list[Path | None]] = {}
        for it in items:
            images = keep.setdefault(it.target["split"], [])
            if it.image not in images and len(images) < limit:
                images.append(it.image)
        return [it for it in items if it.image in keep[it.target["split"]]]

    def metrics(self) -> list[Metric]:
        return world_metrics(self.options.splits)

    def headline(self) -> list[str]:
        return list(HEADLINE)

    def parse(self, item: Item, answer: str) -> Any:
        task = item.target["task"]
        if task == "attribute":
            return parse_colour(answer)
        if task == "exists":
            return parse_yes_no(answer)
        return [list(pair) for pair in parse_objects(answer)]

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        task, meta = item.target["task"], item.target["meta"]
        out: dict[str, Any] = {"split": item.target["split"], "task": task}
        if task == "attribute":
            out.update(correct=parsed == meta["colour"], prior_follow=parsed == canonical(meta["target"]))
        elif task == "exists":
            out.update(label=meta["label"], correct=parsed == meta["label"])
        else:
            present = {o["category"] for o in meta["objects"]}
            out["hallucinated"] = sorted({cat for _, cat in parsed if cat not in present})
        return out

    def score_all(self, items: Sequence[Item], answers: Sequence[str], workdir: Path) -> list[dict[str, Any]]:
        """Per-item records; each keeps its raw ``answer``, which the split-level metrics are computed from."""
        scores = super().score_all(items, answers, workdir)
        for s, answer in zip(scores, answers, strict=True):
            s["answer"] = answer
        return scores

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for split in self.options.splits:
            pairs = [(it, s) for it, s in zip(items, scores, strict=True) if it.target["split"] == split]
            if not pairs:
                continue
            rows = [{"task": it.target["task"], "meta": it.target["meta"]} for it, _ in pairs]
            out.update(flatten_split_metrics(split, split_metrics(rows, [s["answer"] for _, s in pairs])))
        return out

    def provenance(self) -> dict[str, Any]:
        root = self.root()
        manifest = load_json(root / "manifest.json", "options.world_dir manifest") if (
            root / "manifest.json").is_file() else {}
        return {"world_dir": str(root), "world_hash": manifest.get("config_hash"),
                "world_format_version": manifest.get("format_version"), "yes_no_parser": "pope_original",
                "values": "fractions"}
