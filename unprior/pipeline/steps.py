"""The pipeline's steps over a cache: world -> base (+ control beside) -> pairs -> score -> train -> eval.

Each step is a small function of the run's state (:class:`Demo`) that calls one stage's public API with a config
and leaves its output in the cache (keyed by everything that decides it). ``unprior demo`` runs them in order
(:mod:`unprior.demo`); ``unprior study`` runs them per seed and per arm (:mod:`unprior.study`). Each step imports
its stage itself: ``unprior demo --help`` loads this module.
"""

from __future__ import annotations

import copy
import multiprocessing
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unprior.config import config_hash, dump_yaml, to_dict
from unprior.io import cache_root, is_complete, read_json, read_jsonl, write_jsonl
from unprior.numerics import torch_threads
from unprior.pipeline.config import (
    DEMO_FORMAT_VERSION,
    LABELS,
    METHOD_OBJECTIVES,
    STRATEGIES,
    DemoConfig,
    PoolConfig,
    control_config,
    objective_for,
    train_config,
    train_key,
)
from unprior.score.config import ScoreConfig
from unprior.world.config import BaseConfig
from unprior.world.spec import canonical


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

    ctrl = _control(d)
    if d.cfg.base.recipe == "pretrained_vision" and not d.cfg.base_dir:
        from unprior.world.base import tower_for

        with torch_threads(d.cfg.threads):
            tower_for(d.cfg.base, d.world, log=d.log)  # shared with the control: trained once, before both
    if d.cfg.control and not d.cfg.world_dir and not _base_cached(ctrl):
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
    d.models["control"] = train_base(_control(d), log=d.log)


def _control(d: Demo) -> BaseConfig:
    """The control's config: the base's, with no colour prior, the demo's thread count and its own SFT budget."""
    ctrl = control_config(d.cfg.base, d.cfg.control_sft_steps)
    ctrl.threads = d.cfg.threads
    return ctrl


def select_pool(world: Path, pool: PoolConfig) -> list[dict[str, Any]]:
    """The pool's rows: the ``pool.tasks`` rows of ``pool.images`` train images, drawn with ``pool.seed``."""
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
    from unprior.pairs.config import BackendConfig, LoadConfig, PairsConfig

    p = d.cfg.pairs
    cfg = PairsConfig(source=str(pool_file), load=LoadConfig(format="unprior", image_root=str(d.world)), out=str(out),
                      strategies=list(STRATEGIES), generator=BackendConfig(model=str(d.models["base"]),
                                                                           batch_size=p.batch_size,
                                                                           max_batch_tokens=0),
                      part_size=1024, seed=d.cfg.pool.seed, progress=True)
    cfg.image_weakening.params = {"t": p.weakening_t}
    for section in (cfg.image_weakening, cfg.language_bias, cfg.vision_bias):
        section.decoding.max_new_tokens = p.max_new_tokens
    for section in (cfg.language_bias, cfg.vision_bias):
        section.decoding.num_beams = p.num_beams
    cfg.validate()
    return cfg


def step_pairs(d: Demo) -> None:
    from unprior.pairs.config import MergeConfig
    from unprior.pairs.merge import merge_pairs
    from unprior.pairs.run import run_pairs
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


def score_config(d: Demo) -> ScoreConfig:
    return ScoreConfig(model=str(d.models["base"]), pairs=str(d.pairs_file), max_length=d.cfg.train.max_length,
                       batch_size=d.cfg.train.score_batch_size, threads=d.cfg.threads)


def step_score(d: Demo) -> None:
    from unprior.score.reference import ensure_reference

    cfg = score_config(d)
    d.reference = ensure_reference(cfg, log=d.log)  # a cache hit when complete
    for name in ("noise_report.json", "noise_sum.png", "noise_mean.png"):
        shutil.copy2(d.reference / name, d.out / name)
    dump_yaml(cfg, d.out / "configs" / "score.yaml")


def demo_train_config(d: Demo, method: str, out: Path):
    """``unprior train``'s config of one method: the demo's ``train`` section, the method's objective, model, pairs."""
    t = d.cfg.train
    objective = objective_for(METHOD_OBJECTIVES[method], t.beta, t.sft_weight)
    return train_config(t, objective, model=str(d.models["base"]), pairs=str(d.pairs_file), out=str(out),
                        threads=d.cfg.threads)


def step_train(d: Demo) -> None:
    from unprior.train.trainer import setup, train

    d.cached["train"] = True
    for method in d.cfg.methods:
        cfg = demo_train_config(d, method, Path())
        key = train_key(to_dict(cfg), version=DEMO_FORMAT_VERSION, pairs=d.pairs_dir.name if d.pairs_dir else "")
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
    from unprior.eval.config import EvalConfig, FrontierConfig
    from unprior.eval.frontier import run_frontier
    from unprior.eval.generation import make_generate_fn
    from unprior.eval.runner import run_eval
    from unprior.score.reference import model_fingerprint

    key = config_hash({"version": DEMO_FORMAT_VERSION, "model": model_fingerprint(str(model)),
                       "world": _world_hash(world), "limit": limit})
    root = demo_cache("eval", key)
    world_cfg = EvalConfig(benchmark="world", options={"world_dir": str(world)}, out=str(root / "world"),
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
            run_frontier(FrontierConfig(model=str(model), world_dir=str(world), out=str(front_dir),
                                        label=label, limit=limit))
        entry["frontier"] = read_json(front_dir / "results.json")
        entry["dirs"]["frontier"] = str(front_dir)
    return entry, cached


def step_eval(d: Demo) -> None:
    assert d.world is not None
    d.cached["eval"] = True
    order = [m for m in LABELS if m in d.models]  # base, control, then the trained methods, whatever ran first
    for method, model in ((m, d.models[m]) for m in order):
        entry, cached = evaluate_model(d.world, model, LABELS[method], limit=d.cfg.limit or None,
                                       batch_size=d.cfg.eval_batch_size, frontier=d.cfg.frontier,
                                       console=d.console, log=d.log)
        d.cached["eval"] &= cached
        d.evals[method] = entry

