"""``unprior demo`` (what ``make demo`` runs): the embedded default end to end on a laptop CPU, no downloads.

The pipeline is a list of steps (:data:`STEPS`); each calls one stage's public API with a config and leaves its
output in the cache (keyed by everything that decides it) or in the report folder:

1. ``world``    build (or reuse) the synthetic world (``unprior world build``);
2. ``base``     train (or reuse) the biased base model (``unprior world base``);
3. ``control``  train (or reuse) the no-colour-prior control on the same images: the visual ceiling;
4. ``pairs``    bootstrap negatives for a pool of train-split images with all four strategies: BPO's image weakening
                and rule-based error injection, NaPO's language- and vision-biased answers (``unprior pairs`` +
                ``pairs merge``);
5. ``score``    reference log-probs and the noise report (``unprior score``);
6. ``train``    (a) DPO on BPO's pairs, (b) the NaPO objective on NaPO's pairs, (c) SFT on the chosen answers only,
                (a) and (b) with the SFT anchor (``unprior train``);
7. ``eval``     every model on the world benchmark, greedy, and on the grounding frontier (``unprior eval run``,
                ``unprior eval frontier``);
8. ``report``   a table in the style of NaPO Table 1 and the report folder: ``report.md``, ``results.json``, PNGs,
                and the resolved config of every stage (``configs/``), so each step can be rerun by hand.

A second run finds every output complete (a ``manifest.json`` or ``summary.json`` written last) and only rewrites
the report.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unprior.config import check_range, config_hash, dump_yaml, fail, to_dict
from unprior.io import cache_root, is_complete, read_json, read_jsonl, write_json, write_jsonl
from unprior.world.config import BaseConfig

NO_PRIOR = 1 / 8
"""Colour prior strength of the control world: every colour equally likely (8 colours)."""
DEMO_FORMAT_VERSION = 1
TASKS = ("describe", "attribute", "exists")
METHODS = ("sft", "dpo", "napo")
STRATEGIES = ["image_weakening", "rules", "language_bias", "vision_bias"]
"""All four negative strategies: BPO's two (rules is the offline error injection) and NaPO's two."""

LABELS = {"base": "base", "control": "control", "sft": "SFT", "dpo": "DPO (BPO pairs)", "napo": "NaPO"}
DESCRIPTIONS = {
    "base": "the biased base model (text-only prior pretraining, then a short multimodal SFT)",
    "control": "the same model trained on the same images with every colour equally likely: the visual ceiling",
    "sft": "SFT on the chosen (ground-truth) answers of the pairs only, same rows, steps and lr: the papers' baseline",
    "dpo": "DPO on BPO's pairs (image-weakened and rule-based error-injected negatives), plus the SFT anchor",
    "napo": "the NaPO objective (Eq. 14: DPO on the error-injected pair, NaPO loss with dynamic q on the language- "
            "and vision-biased answers, dynamic γ) on NaPO's pairs, plus the SFT anchor",
}
COLUMNS = [
    ("world/id_attribute_accuracy", "ID attr acc"),
    ("world/cf_attribute_accuracy", "CF attr acc"),
    ("world/cf_prior_follow", "CF prior-follow"),
    ("world_frontier/cf_at_id_0.90", "CF@ID≥0.90"),
    ("world/cf_pope_adversarial_fp", "CF POPE adv FP"),
    ("world/cf_chair_i", "CF CHAIR_i"),
    ("world/cf_partner_hallucination", "CF partner hall."),
]
"""Table columns: ``benchmark/metric`` (as ``unprior eval compare`` names them) and a short title."""


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class PoolConfig:
    """The images the pairs are built from: a subset of the world's train split (the base model's own pool)."""

    images: int = 1600
    """Train-split images in the pool (their describe and attribute rows become pairs: about 4 rows each)."""
    tasks: list[str] = field(default_factory=lambda: ["describe", "attribute"])
    """Row tasks taken from each pool image: describe, attribute, exists."""
    noncanonical_share: float | None = 0.5
    """Share of pool images holding at least one object in a non-canonical colour. null: images drawn uniformly,
    as in training (about 12 % hold one). The pool's balance, not the loss, is what moves counterfactual accuracy on
    this organism (world-prototype-2.md; docs/demo.md has the natural pool's numbers)."""
    seed: int = 0
    """Seed of the image draw."""

    def validate(self) -> None:
        check_range(self, "images", 1, 10_000_000)
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            fail("tasks", f"choose among {', '.join(TASKS)}; got {self.tasks}")
        if self.noncanonical_share is not None:
            check_range(self, "noncanonical_share", 0.0, 1.0)


@dataclass
class DemoPairsConfig:
    """How the negatives are generated by the base model (the rest is ``unprior pairs``' defaults)."""

    max_new_tokens: int = 32
    """Answer budget of every generating strategy (world answers are under 30 tokens)."""
    weakening_t: int = 900
    """Diffusion step of BPO's image weakening (BPO: 900)."""
    num_beams: int = 3
    """Beams of NaPO's language- and vision-biased answers (NaPO: 3)."""
    batch_size: int = 128
    """Prompts per generate call."""

    def validate(self) -> None:
        check_range(self, "max_new_tokens", 1, 4096)
        check_range(self, "weakening_t", 0, 999)
        check_range(self, "num_beams", 1, 16)
        check_range(self, "batch_size", 1, 100_000)


@dataclass
class DemoTrainConfig:
    """The optimisation shared by the three trained methods (full fine-tuning; the vision side stays frozen)."""

    steps: int = 300
    """Optimizer steps of each method."""
    batch_size: int = 32
    """Rows per step (each with its chosen answer and one negative per objective kind)."""
    lr: float = 2e-4
    """Peak AdamW learning rate (warm-up, then cosine decay). 5e-5 to 2e-4 is the usable range at this model size
    with the SFT anchor (world-prototype.md §4); 1e-4 gave the same picture, slightly weaker (docs/demo.md)."""
    warmup_ratio: float = 0.05
    """Share of the steps with a linear warm-up."""
    beta: float = 0.1
    """β of every pairwise term (both papers: 0.1)."""
    sft_weight: float = 1.0
    """Weight of the SFT anchor in DPO and NaPO (the SFT baseline always has weight 1 and nothing else). Without
    it every pairwise loss breaks the tiny model's output format (world-prototype*.md)."""
    max_length: int = 128
    """Most tokens of prompt + response (the world's prompts have 4-16 image tokens)."""
    train_vision: bool = False
    """Also train the vision tower and projector. Both papers freeze them; in this world the base's tower encodes
    non-canonical colours poorly, and training it roughly doubles every method's gain (docs/experiments.md §5, §7:
    with ``steps=900`` NaPO closes 75 % of the gap to the control)."""
    seed: int = 0
    """Seed of the row order."""

    def validate(self) -> None:
        check_range(self, "steps", 1, 10_000_000)
        check_range(self, "batch_size", 1, 100_000)
        check_range(self, "lr", 0.0, 1.0)
        check_range(self, "warmup_ratio", 0.0, 1.0)
        check_range(self, "beta", 1e-6, 1e6)
        check_range(self, "sft_weight", 0.0, 1e6)
        check_range(self, "max_length", 8, 1_000_000)


@dataclass
class DemoConfig:
    """The demo pipeline on the embedded default."""

    base: BaseConfig = field(default_factory=BaseConfig)
    """The biased base model (and, through ``base.world``, the world)."""
    world_dir: str = ""
    """Use this existing world directory instead of building ``base.world`` (the control is then skipped: its world
    is derived from ``base.world``)."""
    base_dir: str = ""
    """Use this existing base model directory instead of training ``base``."""
    control: bool = True
    """Also train the no-colour-prior control on the same images (the visual ceiling)."""
    pool: PoolConfig = field(default_factory=PoolConfig)
    pairs: DemoPairsConfig = field(default_factory=DemoPairsConfig)
    train: DemoTrainConfig = field(default_factory=DemoTrainConfig)
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Trained methods: sft, dpo (DPO on BPO's pairs), napo (the NaPO objective on NaPO's pairs)."""
    frontier: bool = True
    """Also measure the grounding frontier (CF accuracy at matched ID accuracy) of every model."""
    limit: int = 0
    """Evaluate on the first N images of each test split only (0: all)."""
    eval_batch_size: int = 64
    """Prompts per generate call in the evaluation."""
    out: str = "runs/demo"
    """Report folder (rewritten by every run; the trained models and eval runs stay in the cache)."""
    threads: int = 1
    """torch threads per process (0: torch's default). One is the robust choice on a small shared machine: with two
    threads torch spin-waits whenever another process wants a core, 5-10x slower; the base and the control train
    side by side in two processes instead."""

    def validate(self) -> None:
        check_range(self, "limit", 0, 10_000_000)
        check_range(self, "eval_batch_size", 1, 100_000)
        check_range(self, "threads", 0, 1024)
        if not self.out:
            fail("out", "set the report folder")
        for m in self.methods:
            if m not in METHODS:
                fail("methods", f"unknown method {m!r}; known: {', '.join(METHODS)}")


def control_config(base: BaseConfig) -> BaseConfig:
    """The same world and training with the colour prior removed (same seed: same layouts and shapes)."""
    ctrl = copy.deepcopy(base)
    ctrl.world.prior_strength = NO_PRIOR
    ctrl.world.out = ""
    ctrl.world_dir = ""
    ctrl.out = ""
    return ctrl


def objective_for(method: str, train: DemoTrainConfig):
    """The objective of a trained method: a preset of ``unprior.losses`` plus the SFT anchor.

    SFT is the trainer with only the anchor: one pairwise kind kept at weight 0 (the trainer needs a kind to pick
    its rows), so SFT sees exactly the rows, order, steps and learning rate of the other two.
    """
    from unprior.losses import KindConfig, ObjectiveConfig, objective_preset

    if method == "sft":
        return ObjectiveConfig(kinds={"error_injection": KindConfig(loss="dpo", weight=0.0)}, gamma="fixed",
                               beta=train.beta, sft_weight=1.0)
    objective = objective_preset({"dpo": "bpo", "napo": "napo"}[method])
    objective.beta = train.beta
    objective.sft_weight = train.sft_weight
    return objective


# ------------------------------------------------------------------------------------------------------ the run


@dataclass
class Demo:
    """State shared by the steps: the config, where things are, and what was measured."""

    cfg: DemoConfig
    console: Any
    out: Path
    world: Path | None = None
    models: dict[str, Path] = field(default_factory=dict)
    """Method key (base, control, sft, dpo, napo) -> model directory."""
    pairs_dir: Path | None = None
    pairs_summary: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None
    train_dirs: dict[str, Path] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Method key -> {"world": results.json dict, "frontier": results.json dict, "dirs": {...}}."""
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    """Step -> whether everything it needed was found in the cache."""
    background: Any = None
    """A process pool for work running beside the steps (the control's training)."""
    pending: dict[str, Any] = field(default_factory=dict)
    """That work's async results, by name."""

    def log(self, message: str) -> None:
        self.console.print(message)

    @property
    def pairs_file(self) -> Path:
        assert self.pairs_dir is not None
        return self.pairs_dir / "pairs.parquet"


def _world_hash(world: Path) -> str:
    return read_json(world / "manifest.json")["config_hash"]


def demo_cache(*parts: str) -> Path:
    return cache_root().joinpath("demo", *parts)


def step_world(d: Demo) -> None:
    from unprior.world.build import build_world, world_dir_for

    world = d.cfg.base.world
    target = Path(d.cfg.world_dir) if d.cfg.world_dir else world_dir_for(world)
    d.cached["world"] = is_complete(target)
    if d.cfg.world_dir or (world.out and d.cached["world"] and not world.overwrite):
        d.world = target  # an existing world (build_world itself refuses a non-empty ``out``)
    else:
        d.world = build_world(world)  # reuses a complete build in the cache
    d.log(f"world: {d.world}")


def _base_cached(cfg: BaseConfig) -> bool:
    from unprior.world.base import base_dir_for
    from unprior.world.build import world_dir_for

    world = Path(cfg.world_dir) if cfg.world_dir else world_dir_for(cfg.world)
    return is_complete(world) and is_complete(base_dir_for(cfg, world))


def train_control_process(cfg: BaseConfig) -> str:
    """Train (or reuse) the control in a separate process; its log lines are prefixed ``[control]``."""
    from unprior.world.base import train_base

    return str(train_base(cfg, log=lambda message: print(f"[control] {message}", flush=True)))


def step_base(d: Demo) -> None:
    """The biased base; the control (when asked for and not cached) trains meanwhile in a second process."""
    from unprior.world.base import train_base

    ctrl = control_config(d.cfg.base)
    ctrl.threads = d.cfg.threads
    if d.cfg.control and not d.cfg.world_dir and not _base_cached(ctrl):
        import multiprocessing

        d.background = multiprocessing.get_context("spawn").Pool(1)
        d.pending["control"] = d.background.apply_async(train_control_process, (ctrl,))
        d.log("control: training in a second process (log lines prefixed [control])")
    if d.cfg.base_dir:
        d.models["base"] = Path(d.cfg.base_dir)
        d.cached["base"] = True
        d.log(f"base model: using {d.models['base']}")
        return
    base = copy.deepcopy(d.cfg.base)
    base.world_dir = str(d.world)
    base.threads = d.cfg.threads
    d.cached["base"] = _base_cached(base)
    d.models["base"] = train_base(base, log=d.log)  # reuses a finished model cached under the same key


def step_control(d: Demo) -> None:
    """Wait for the control started by ``step_base`` (or reuse the cached one)."""
    from unprior.world.base import train_base

    if not d.cfg.control:
        d.log("control: off")
        return
    if d.cfg.world_dir:
        d.log("control: skipped (world_dir is given; the control's world is derived from base.world)")
        return
    if "control" in d.pending:
        d.cached["control"] = False
        d.models["control"] = Path(d.pending.pop("control").get())
        d.background.close()
        d.log(f"control: {d.models['control']}")
        return
    d.cached["control"] = True
    d.models["control"] = train_base(control_config(d.cfg.base), log=d.log)


def select_pool(world: Path, pool: PoolConfig) -> list[dict[str, Any]]:
    """The pool's rows: the ``pool.tasks`` rows of ``pool.images`` train images, drawn with ``pool.seed``."""
    import numpy as np

    from unprior.world.spec import canonical

    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in read_jsonl(world / "train.jsonl"):
        if r["task"] in pool.tasks:
            by_image.setdefault(r["image"], []).append(r)
    images = sorted(by_image)
    rng = np.random.default_rng(pool.seed)
    if pool.noncanonical_share is None:
        chosen = list(rng.permutation(images)[: pool.images])
    else:
        odd = [i for i in images if any(o["colour"] != canonical(o["category"])
                                        for o in by_image[i][0]["meta"]["objects"])]
        plain = sorted(set(images) - set(odd))
        n_odd = min(len(odd), round(pool.images * pool.noncanonical_share))
        n_plain = min(len(plain), pool.images - n_odd)
        chosen = list(rng.permutation(odd)[:n_odd]) + list(rng.permutation(plain)[:n_plain])
    return [r for image in sorted(chosen) for r in by_image[image]]


def pairs_config(d: Demo, pool_file: Path, out: Path):
    """``unprior pairs`` config: all four strategies, the base model as the generator."""
    from unprior.pairs.config import BackendConfig, LoadConfig
    from unprior.pairs.run import PairsConfig

    p = d.cfg.pairs
    cfg = PairsConfig(source=str(pool_file), load=LoadConfig(format="unprior", root=str(d.world)), out=str(out),
                      strategies=list(STRATEGIES), generator=BackendConfig(model=str(d.models["base"]),
                                                                           batch_size=p.batch_size),
                      part_size=1024, seed=d.cfg.pool.seed, progress=True)
    cfg.image_weakening.params = {"t": p.weakening_t}
    for section in (cfg.image_weakening, cfg.language_bias, cfg.vision_bias):
        section.decoding.max_new_tokens = p.max_new_tokens
    for section in (cfg.language_bias, cfg.vision_bias):
        section.decoding.num_beams = p.num_beams
    cfg.validate()
    return cfg


def step_pairs(d: Demo) -> None:
    from unprior.pairs.run import MergeConfig, merge_pairs, run_pairs
    from unprior.score.reference import model_fingerprint

    assert d.world is not None
    key = config_hash({"version": DEMO_FORMAT_VERSION, "world": _world_hash(d.world),
                       "base": model_fingerprint(str(d.models["base"])), "pool": to_dict(d.cfg.pool),
                       "pairs": to_dict(d.cfg.pairs)})
    d.pairs_dir = demo_cache("pairs", key)
    summary_file = d.pairs_dir / "summary.json"
    cfg = pairs_config(d, d.pairs_dir / "pool.jsonl", d.pairs_dir)
    d.cached["pairs"] = summary_file.is_file() and d.pairs_file.is_file()
    if d.cached["pairs"]:
        d.log(f"pairs: reusing {d.pairs_file}")
    else:
        if not (d.pairs_dir / "pool.jsonl").is_file():
            rows = select_pool(d.world, d.cfg.pool)
            write_jsonl(d.pairs_dir / "pool.jsonl", rows)
        d.log(f"pairs: pool of {d.cfg.pool.images} train images -> {d.pairs_dir}")
        run_pairs(cfg)  # resumable: a killed demo continues with the parts not yet written
        merge_pairs(MergeConfig(out=str(d.pairs_dir)))  # summary.json, written last, marks the pairs complete
    d.pairs_summary = read_json(summary_file)
    dump_yaml(cfg, d.out / "configs" / "pairs.yaml")


def score_config(d: Demo):
    from unprior.score.config import ScoreConfig

    return ScoreConfig(model=str(d.models["base"]), pairs=str(d.pairs_file), max_length=d.cfg.train.max_length,
                       batch_size=64, threads=d.cfg.threads)


def step_score(d: Demo) -> None:
    from unprior.score.reference import ensure_reference

    cfg = score_config(d)
    d.reference = ensure_reference(cfg, log=d.log)  # a cache hit when complete
    for name in ("noise_report.json", "noise_sum.png", "noise_mean.png"):
        shutil.copy2(d.reference / name, d.out / name)
    dump_yaml(cfg, d.out / "configs" / "score.yaml")


def train_config(d: Demo, method: str, out: Path):
    from unprior.train.config import LoraSettings, TrainConfig

    t = d.cfg.train
    return TrainConfig(model=str(d.models["base"]), pairs=str(d.pairs_file), out=str(out), resume=True,
                       objective=objective_for(method, t), max_length=t.max_length, batch_size=t.batch_size,
                       max_steps=t.steps, lr=t.lr, warmup_ratio=t.warmup_ratio, lora=LoraSettings(enabled=False),
                       train_vision=t.train_vision, seed=t.seed, log_every=5, score_batch_size=64,
                       threads=d.cfg.threads)


def step_train(d: Demo) -> None:
    from unprior.train.trainer import setup, train

    d.cached["train"] = True
    for method in d.cfg.methods:
        cfg = train_config(d, method, Path())
        key = config_hash({"version": DEMO_FORMAT_VERSION, "pairs": d.pairs_dir.name if d.pairs_dir else "",
                           "train": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "threads")}})
        out = demo_cache("train", f"{method}-{key}")
        cfg.out = str(out)
        d.train_dirs[method] = out
        dump_yaml(cfg, d.out / "configs" / f"train_{method}.yaml")
        if is_complete(out / "model"):
            d.log(f"{LABELS[method]}: reusing {out / 'model'}")
        else:
            d.cached["train"] = False
            d.console.rule(f"train {LABELS[method]}", style="dim")
            train(setup(cfg))  # resume=true: continues a killed run's newest checkpoint, else starts afresh
        d.models[method] = out / "model"


def evaluate_model(world: Path, model: Path, label: str, *, limit: int | None, batch_size: int, frontier: bool,
                   console: Any = None, log: Callable[[str], None] = print) -> tuple[dict[str, Any], bool]:
    """One model on the world benchmark (and the grounding frontier), cached by model files, world and ``limit``.

    Returns ``({"world": results, "frontier": results, "dirs": {...}}, whether everything came from the cache)``.
    """
    from unprior.eval.config import EvalConfig
    from unprior.eval.frontier import FrontierConfig, run_frontier
    from unprior.eval.generation import make_generate_fn
    from unprior.eval.runner import run_eval
    from unprior.score.reference import model_fingerprint

    key = config_hash({"version": DEMO_FORMAT_VERSION, "model": model_fingerprint(str(model)),
                       "world": _world_hash(world), "limit": limit})
    root = demo_cache("eval", key)
    world_cfg = EvalConfig(benchmark="world", options={"world_dir": str(world)}, out_dir=str(root / "world"),
                           label=label, model=str(model), batch_size=batch_size, limit=limit)
    cached = (root / "world" / "results.json").is_file()
    log(f"{label}: world benchmark{' (answers cached)' if cached else ''} -> {root / 'world'}")
    # Answers already in samples.jsonl are reused (the model is then never loaded); scoring is redone.
    results = run_eval(world_cfg, make_generate_fn(world_cfg), console=console)
    entry: dict[str, Any] = {"world": results, "dirs": {"world": str(root / "world")}}
    if frontier:
        front_dir = root / "frontier"
        if not (front_dir / "results.json").is_file():
            cached = False
            run_frontier(FrontierConfig(model=str(model), world_dir=str(world), out_dir=str(front_dir),
                                        label=label, limit=limit))
        entry["frontier"] = read_json(front_dir / "results.json")
        entry["dirs"]["frontier"] = str(front_dir)
    return entry, cached


def step_eval(d: Demo) -> None:
    assert d.world is not None
    d.cached["eval"] = True
    for method, model in d.models.items():
        entry, cached = evaluate_model(d.world, model, LABELS[method], limit=d.cfg.limit or None,
                                       batch_size=d.cfg.eval_batch_size, frontier=d.cfg.frontier,
                                       console=d.console, log=d.log)
        d.cached["eval"] &= cached
        d.evals[method] = entry


# ------------------------------------------------------------------------------------------------------ report


def results_table(d: Demo) -> tuple[list[str], list[Any], list[list[float | None]]]:
    """(method keys, compare columns, values) of the table, from the eval runs' results (``eval compare``'s table)."""
    from unprior.eval.compare import compare_table

    runs = []
    for e in d.evals.values():
        runs.append({**e["world"], "_path": e["dirs"]["world"]})
        if "frontier" in e:
            runs.append({**e["frontier"], "_path": e["dirs"]["frontier"]})
    metrics = [c for c, _ in COLUMNS if d.cfg.frontier or not c.startswith("world_frontier/")]
    labels, cols, values = compare_table(runs, metrics)
    order = sorted(range(len(cols)), key=lambda j: metrics.index(f"{cols[j].benchmark}/{cols[j].metric}"))
    keys = {LABELS[m]: m for m in d.evals}
    return [keys[label] for label in labels], [cols[j] for j in order], [[row[j] for j in order] for row in values]


def _title(col) -> str:
    return dict(COLUMNS)[f"{col.benchmark}/{col.metric}"]


def _best(values: list[float | None], higher: bool | None) -> float | None:
    present = [v for v in values if v is not None]
    if higher is None or not present:
        return None
    return max(present) if higher else min(present)


def print_table(d: Demo, methods: list[str], cols, values) -> None:
    from rich.table import Table

    table = Table(title="unprior demo: the embedded world (test_cf: non-canonical colours, absent partners)")
    table.add_column("method", no_wrap=True)
    for c in cols:
        table.add_column(_title(c) + {True: " ↑", False: " ↓", None: ""}[c.higher_is_better], justify="right")
    trained = [i for i, m in enumerate(methods) if m != "control"]  # the ceiling does not compete
    for i, m in enumerate(methods):
        cells = []
        for j, c in enumerate(cols):
            v = values[i][j]
            best = _best([values[k][j] for k in trained], c.higher_is_better)
            text = "-" if v is None else f"{v:.3f}"
            cells.append(f"[bold]{text}[/bold]" if v is not None and v == best and m != "control" else text)
        table.add_row(LABELS[m], *cells, style="dim" if m == "control" else None)
    console = d.console
    if not console.is_terminal and console.width < 140:  # a log file or pipe: no need to wrap at 80 columns
        from rich.console import Console

        console = Console(file=console.file, width=140)
    console.print(table)


def markdown_table(methods: list[str], cols, values) -> str:
    head = ["method", *(_title(c) + {True: " ↑", False: " ↓", None: ""}[c.higher_is_better] for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    trained = [i for i, m in enumerate(methods) if m != "control"]
    for i, m in enumerate(methods):
        cells = [LABELS[m]]
        for j, c in enumerate(cols):
            v = values[i][j]
            best = _best([values[k][j] for k in trained], c.higher_is_better)
            text = "-" if v is None else f"{v:.3f}"
            cells.append(f"**{text}**" if v is not None and v == best and m != "control" else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_q_gamma(metrics_file: Path, out_png: Path) -> Path | None:
    """q per NaPO kind and γ per kind against the step, from the trainer's ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_jsonl(metrics_file) if "loss" in r]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, prefix, title in ((axes[0], "q/", "dynamic q (Eq. 12)"), (axes[1], "gamma/", "γ per kind (Eq. 13)")):
        for key in sorted({k for r in rows for k in r if k.startswith(prefix)}):
            ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r],
                    label=key.removeprefix(prefix))
        ax.set(xlabel="step", title=title, ylim=(0, 1.05))
        ax.legend(fontsize=8)
    fig.suptitle("NaPO training: q and γ per negative kind", fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=130)
    plt.close(fig)
    return out_png


def _noise_lines(d: Demo) -> list[str]:
    report = read_json(d.out / "noise_report.json")
    lines = ["| negative kind | n | reference prefers the negative (Σ) | (μ) | mean margin Σ | mean margin μ | "
             "q from reference (Σ / μ) |", "|---|---|---|---|---|---|---|"]
    for kind, s in report["kinds"].items():
        lines.append(f"| {kind} | {s['n']} | {s['sum']['share_negative']:.3f} | {s['mean']['share_negative']:.3f} | "
                     f"{s['sum']['mean']:.2f} | {s['mean']['mean']:.3f} | {s['sum']['q_from_reference']:.3f} / "
                     f"{s['mean']['q_from_reference']:.3f} |")
    return lines


def write_markdown(d: Demo, methods: list[str], cols, values, figures: dict[str, str]) -> None:
    counts = d.pairs_summary.get("counts", {})
    t, p, pool = d.cfg.train, d.cfg.pairs, d.cfg.pool
    share = "drawn uniformly" if pool.noncanonical_share is None else \
        f"{pool.noncanonical_share:.0%} of them holding a non-canonical colour"
    lines = [
        "# unprior demo report",
        "",
        "The embedded world: a tiny LLaVA with a built-in colour and co-occurrence prior, debiased with "
        "bootstrapped preference pairs (BPO, NaPO) and compared with SFT. Greedy decoding on the world's test "
        "splits; `test_cf` holds only non-canonical colours and no co-occurrence partners. CF@ID≥0.90 is the "
        "best counterfactual accuracy reachable with a decode-time bias on the canonical colour while "
        "in-distribution accuracy stays ≥ 0.90 (the grounding frontier, docs/eval.md). Bold: best among the "
        "trained methods and the base (the control is the visual ceiling, not a competitor).",
        "",
        markdown_table(methods, cols, values),
        "",
        "## Methods",
        "",
        *(f"- **{LABELS[m]}**: {DESCRIPTIONS[m]}." for m in methods),
        "",
        f"All three trained methods start from the base, fine-tune every language-side weight ("
        f"{'the vision tower and projector too' if t.train_vision else 'vision tower and projector frozen'}) for "
        f"{t.steps} steps of {t.batch_size} rows at lr {t.lr:g} (warm-up "
        f"{t.warmup_ratio:.0%}, cosine), β {t.beta:g}, on the same rows in the same order. "
        f"**SFT anchor:** DPO and NaPO add the length-normalised NLL of the chosen answer with weight "
        f"{t.sft_weight:g} (RPO-style, in neither paper): without it every pairwise loss breaks this tiny model's "
        "output format (world-prototype*.md). SFT is that term alone, so the pairwise terms' own effect is the "
        "difference to SFT.",
        "",
        "## Pairs",
        "",
        f"Pool: {pool.images} train-split images ({share}), their {' and '.join(pool.tasks)} rows; chosen = the "
        f"ground-truth answer. Negatives from the base model itself: image weakening (diffusion noise t = "
        f"{p.weakening_t}, T = 0.2), rule-based error injection (one common-but-wrong edit from the pool's own "
        f"statistics), language-biased answers (no image) and vision-biased answers (no question), "
        f"{p.num_beams} beams. BPO's pairs = image_weakening + error_injection; NaPO's pairs = error_injection "
        "(the original-pair role) + language_bias + vision_bias. Negatives equal to the chosen answer are dropped.",
        "",
        f"Rows: {d.pairs_summary.get('rows', 0)}; negatives kept per kind: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.get("kept", {}).items()))
        + "; negatives dropped by the filters (kind/reason): "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.get("filters", {}).get("dropped_by_kind", {}).items())),
        "",
        "## Noise report (reference margins, NaPO Fig. 4)",
        "",
        *_noise_lines(d),
        "",
        *(f"![{name}]({file})" for name, file in figures.items()),
        "",
        "## Reproduce",
        "",
        "```bash",
        "unprior demo " + (f"--config {d.cfg.out}/configs/demo.yaml" if d.cfg.out else ""),
        "# or stage by stage, with the resolved configs written beside this report:",
        f"unprior pairs --config {d.out}/configs/pairs.yaml && unprior pairs merge out={d.pairs_dir}",
        f"unprior score --config {d.out}/configs/score.yaml",
        *(f"unprior train --config {d.out}/configs/train_{m}.yaml" for m in d.cfg.methods),
        *(f"unprior eval run benchmark=world model={d.models[m]} label='{LABELS[m]}' "
          f"options.world_dir={d.world} out_dir=runs/eval/{m}-world" for m in methods),
        *(f"unprior eval frontier model={d.models[m]} world_dir={d.world} out_dir=runs/eval/{m}-frontier"
          for m in methods if d.cfg.frontier),
        "```",
        "",
        "## Time",
        "",
        "| step | seconds | from cache |",
        "|---|---|---|",
        *(f"| {k} | {v:.0f} | {'yes' if d.cached.get(k) else 'no'} |" for k, v in d.seconds.items()),
        "",
    ]
    (d.out / "report.md").write_text("\n".join(lines))


def step_report(d: Demo) -> None:
    from unprior.eval.compare import bar_chart

    methods, cols, values = results_table(d)
    print_table(d, methods, cols, values)
    figures = {}
    bar_chart([LABELS[m] for m in methods], cols, values, d.out / "metrics.png")
    figures["metric per method"] = "metrics.png"
    figures["reference margins per negative kind (summed)"] = "noise_sum.png"
    figures["reference margins per negative kind (per token)"] = "noise_mean.png"
    if "napo" in d.train_dirs and plot_q_gamma(d.train_dirs["napo"] / "metrics.jsonl", d.out / "napo_q_gamma.png"):
        figures["NaPO: q and γ over training"] = "napo_q_gamma.png"
    table = {m: {_title(c): values[i][j] for j, c in enumerate(cols)} for i, m in enumerate(methods)}
    write_json(d.out / "results.json", {
        "table": table,
        "columns": {_title(c): {"benchmark": c.benchmark, "metric": c.metric,
                                "higher_is_better": c.higher_is_better} for c in cols},
        "methods": {m: {"label": LABELS[m], "description": DESCRIPTIONS[m], "model": str(d.models[m]),
                        "world": d.evals[m]["world"]["metrics"],
                        "frontier": d.evals[m].get("frontier", {}).get("metrics"),
                        "eval_dirs": d.evals[m]["dirs"],
                        "train_dir": str(d.train_dirs[m]) if m in d.train_dirs else None} for m in methods},
        "world": str(d.world),
        "pairs": {"file": str(d.pairs_file), "summary": d.pairs_summary},
        "reference": str(d.reference),
        "noise_report": read_json(d.out / "noise_report.json"),
        "seconds": d.seconds,
        "cached": d.cached,
        "config": to_dict(d.cfg),
    })
    write_markdown(d, methods, cols, values, figures)
    d.log(f"report: {d.out / 'report.md'} (results.json, {', '.join(sorted(figures.values()))})")


STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("world", step_world),
    ("base", step_base),
    ("control", step_control),
    ("pairs", step_pairs),
    ("score", step_score),
    ("train", step_train),
    ("eval", step_eval),
    ("report", step_report),
]
"""The pipeline, in order; each step reads what the earlier ones left in :class:`Demo`."""


def run_demo(cfg: DemoConfig, console: Any = None) -> int:
    """Run :data:`STEPS` in order; progress and the table go to ``console`` (default: a rich Console on stdout)."""
    import torch
    from rich.console import Console

    console = console or Console()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "configs" / "demo.yaml")
    d = Demo(cfg, console, out)
    t0 = time.perf_counter()
    try:
        for k, (name, step) in enumerate(STEPS, 1):
            console.rule(f"[bold]{k}/{len(STEPS)} {name}[/bold]  ({time.perf_counter() - t0:.0f}s)")
            start = time.perf_counter()
            step(d)
            d.seconds[name] = round(time.perf_counter() - start, 1)
    finally:
        if d.background is not None:
            d.background.terminate()  # a failed step does not leave the control training on
    d.seconds["total"] = round(time.perf_counter() - t0, 1)
    write_json(out / "timings.json", {"seconds": d.seconds, "cached": d.cached})
    console.print(f"done in {d.seconds['total']:.0f}s; report folder: {out}")
    return 0
