"""Running a study: prepare each seed (base, pairs, scores, noised pairs), then every arm x seed unit in
parallel worker processes, each result written as soon as it is done (a killed study resumes). The stages are
imported inside the functions that run them: ``unprior study --help`` loads this module.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unprior.config import config_hash, dump_yaml, from_dict, rename_keys, to_dict
from unprior.io import is_complete, read_json, read_jsonl, write_json
from unprior.numerics import torch_threads
from unprior.pipeline.config import METRICS, DemoConfig, control_config, train_config, train_key
from unprior.study.config import STUDY_FORMAT_VERSION, ArmConfig, StudyConfig, objective_for_arm
from unprior.study.summary import write_summary
from unprior.train.config import TrainConfig
from unprior.world.config import ProbeConfig


def _demo_for(cfg: StudyConfig, seed: int, share: float | None) -> DemoConfig:
    d = copy.deepcopy(cfg.demo)
    if cfg.vary_base:
        d.base.seed = seed
    d.pool.seed, d.train.seed, d.pool.noncanonical_share = seed, seed, share
    d.control, d.threads = False, cfg.threads
    return d


def _noise_tag(rate: float, kinds: list[str], mode: str = "rewrite") -> str:
    """Folder name of a noised pairs file (``rewrite`` keeps the first study's names, so its caches stay valid)."""
    return f"noise-{rate:g}-{'+'.join(sorted(kinds))}" + ("" if mode == "rewrite" else f"-{mode}")


def noise_key(rate: float, mode: str) -> str:
    """Key of a pool's pairs files: ``"clean"`` or ``"<mode>:<rate>"``."""
    return "clean" if rate == 0 else f"{mode}:{rate:g}"


def prepare_seed(cfg: StudyConfig, seed: int) -> dict[str, Any]:
    """World, base model, pairs and reference scores (clean and noised) of one seed; cached like the demo's."""
    from rich.console import Console

    from unprior.pairs.noise import NoiseConfig, inject_noise
    from unprior.pipeline.steps import Demo, demo_cache, score_config, step_base, step_pairs, step_score, step_world
    from unprior.score.reference import ensure_reference

    out: dict[str, Any] = {"seed": seed, "pairs": {}}
    used = {(a.pool, a.noise, a.noise_mode) for a in cfg.arms.values()}
    for pool in sorted({p for p, _, _ in used}):
        dcfg = _demo_for(cfg, seed, cfg.pools[pool])
        d = Demo(dcfg, Console(file=sys.stdout, width=120), demo_cache("study-prep", f"s{seed}-{pool}"))
        (d.out / "configs").mkdir(parents=True, exist_ok=True)
        step_world(d)
        step_base(d)
        step_pairs(d)
        step_score(d)
        out["world"], out["base"] = str(d.world), str(d.models["base"])
        files = {"clean": str(d.pairs_file)}
        for rate, mode in sorted((r, m) for p, r, m in used if p == pool and r > 0):
            noisy = d.pairs_file.parent / f"{_noise_tag(rate, cfg.noise_kinds, mode)}-s{seed}" / "pairs.parquet"
            if not noisy.is_file():
                inject_noise(NoiseConfig(pairs=str(d.pairs_file), out=str(noisy), rate=rate, mode=mode,
                                         kinds=list(cfg.noise_kinds), seed=seed))
            score = score_config(d)
            score.pairs = str(noisy)
            ensure_reference(score, log=print)
            files[noise_key(rate, mode)] = str(noisy)
        out["pairs"][pool] = files
    return out


def prepare_control(cfg: StudyConfig, seed: int | None = None) -> str:
    """The no-prior control (the visual ceiling) of ``demo.base``, with ``base.seed = seed`` when given."""
    from unprior.world.base import train_base

    base = copy.deepcopy(cfg.demo.base)
    if seed is not None:
        base.seed = seed
    ctrl = control_config(base, cfg.demo.control_sft_steps)
    ctrl.threads = cfg.threads
    return str(train_base(ctrl))


@dataclass
class Unit:
    """One arm on one seed (or a baseline model to evaluate): everything a worker process needs."""

    name: str
    arm: str
    seed: int
    world: str
    model: str
    """The model to train from (an arm) or to evaluate (a baseline)."""
    pairs: str = ""
    train: dict[str, Any] | None = None
    """The TrainConfig as a dict; None for a baseline (evaluate ``model`` only)."""
    eval_batch_size: int = 64
    limit: int = 0
    threads: int = 1
    probe: bool = False

    @property
    def key(self) -> str:
        return config_hash({"version": STUDY_FORMAT_VERSION, "world": self.world, "model": self.model,
                            "pairs": self.pairs, "train": self.train, "limit": self.limit,
                            **({"probe": True} if self.probe else {})})


def train_config_for(cfg: StudyConfig, arm: ArmConfig, seed: int, model: str, pairs: str) -> dict[str, Any]:
    """The arm's ``unprior train`` config (the demo's ``train`` section, the arm's objective and overrides), a dict."""
    t = cfg.demo.train
    objective = objective_for_arm(arm, t.beta, t.sft_weight)
    train = train_config(t, objective, model=model, pairs=pairs, out="", seed=seed, threads=cfg.threads)
    overrides = rename_keys(TrainConfig, arm.train, prefix="train.")  # an old key overrides its new name
    data = to_dict(from_dict(TrainConfig, {**to_dict(train), **overrides, "out": "(set per unit)"}))
    return {**data, "out": ""}


def _train_dir(train: dict[str, Any], arm: str) -> Path:
    """The trained model's cache folder; any arm with the same train config reuses it."""
    from unprior.pipeline.steps import demo_cache

    key = train_key(train, version=STUDY_FORMAT_VERSION)
    found = sorted(demo_cache("train").glob(f"*-study-{key}"))
    return found[0] if found else demo_cache("train", f"{arm}-study-{key}")


def _late_mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over the last quarter of the logged steps (q and γ settle there)."""
    values = [r[key] for r in rows if key in r]
    tail = values[-max(1, len(values) // 4):]
    return sum(tail) / len(tail) if tail else None


def run_unit(unit: Unit, log_dir: str) -> dict[str, Any]:
    """Train (unless cached) and evaluate one unit; its output goes to ``<log_dir>/<name>.log``."""
    from unprior.pipeline.steps import evaluate_model
    from unprior.world.probe import probe_model

    if unit.threads:
        torch.set_num_threads(unit.threads)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(Path(log_dir) / f"{unit.name}.log", "w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        from rich.console import Console

        console = Console(file=log, width=120)
        model, train_info = Path(unit.model), {}
        if unit.train is not None:
            model, train_info = _train(unit, console)
        entry, _ = evaluate_model(Path(unit.world), model, unit.name, limit=unit.limit or None,
                                  batch_size=unit.eval_batch_size, frontier=True, console=console, log=console.print)
    metrics = {short: entry[run]["metrics"].get(metric) for short, (run, metric, _, _) in METRICS.items()}
    if unit.probe or unit.arm in ("base", "control"):  # the baselines always: the tower probe is the study's
        acc = probe_model(ProbeConfig(models=[str(model)], world_dir=unit.world), str(model))
        metrics["probe_cf"], metrics["probe_id"] = acc["test_cf"], acc["test_id"]
        if unit.arm in ("base", "control"):  # the tower itself (the same tower in every arm of the seed)
            acc = probe_model(ProbeConfig(models=[str(model)], world_dir=unit.world, features="tower"), str(model))
            metrics["tower_probe_cf"], metrics["tower_probe_id"] = acc["test_cf"], acc["test_id"]
    return {"name": unit.name, "arm": unit.arm, "seed": unit.seed, "key": unit.key, "model": str(model),
            "pairs": unit.pairs, "metrics": metrics, "train": train_info, "eval_dirs": entry["dirs"],
            "seconds": round(time.perf_counter() - start, 1)}


def _train(unit: Unit, console: Any) -> tuple[Path, dict[str, Any]]:
    from unprior.train.trainer import setup, train

    assert unit.train is not None
    out = _train_dir(unit.train, unit.arm)
    cfg = from_dict(TrainConfig, {**unit.train, "out": str(out)})
    if not is_complete(out / "model"):
        train(setup(cfg))
    dump_yaml(cfg, out / "study_train.yaml")
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r] if (out / "metrics.jsonl").is_file() else []
    keys = sorted({k for r in rows for k in r if k.startswith(("q/", "gamma/"))})
    return out / "model", {"dir": str(out), "late": {k: _late_mean(rows, k) for k in keys}}


def plan_units(cfg: StudyConfig, prepared: dict[int, dict[str, Any]], controls: dict[int, str]) -> list[Unit]:
    """Every unit of the study: baselines first (base per seed, the control once or per seed), then arm × seed."""
    common = {"eval_batch_size": cfg.demo.eval_batch_size, "limit": cfg.demo.limit, "threads": cfg.threads,
              "probe": cfg.probe}
    units = []
    if cfg.baselines:
        for seed, p in prepared.items():
            units.append(Unit(f"base-s{seed}", "base", seed, p["world"], p["base"], **common))
        for seed, control in controls.items():
            name = f"control-s{seed}" if cfg.control_per_seed else "control"
            units.append(Unit(name, "control", seed, prepared[seed]["world"], control, **common))
    for name, arm in cfg.arms.items():
        for seed in cfg.seeds:
            p = prepared[seed]
            pairs = p["pairs"][arm.pool][noise_key(arm.noise, arm.noise_mode)]
            train = train_config_for(cfg, arm, seed, p["base"], pairs)
            units.append(Unit(f"{name}-s{seed}", name, seed, p["world"], p["base"], pairs, train, **common))
    return units


def _init_worker(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def _result_file(out: Path, unit: Unit) -> Path:
    return out / "runs" / f"{unit.name}.json"


def _done(out: Path, unit: Unit) -> bool:
    path = _result_file(out, unit)
    return path.is_file() and read_json(path).get("key") == unit.key


def _safe_unit(unit: Unit, log_dir: str) -> dict[str, Any]:
    try:
        return run_unit(unit, log_dir)
    except Exception:  # reported by the parent with the unit's name; the other units go on
        return {"name": unit.name, "error": traceback.format_exc()}


def run_study(cfg: StudyConfig) -> int:
    """Prepare the seeds, run the missing units (``workers`` at a time), write the summary."""
    from unprior.pipeline.steps import demo_cache

    out = Path(cfg.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml")
    log_dir = str(demo_cache("study-logs", out.name))
    t0 = time.perf_counter()
    print(f"study {out}: {len(cfg.arms)} arms × {len(cfg.seeds)} seeds; worker logs in {log_dir}", flush=True)
    if cfg.demo.base.recipe == "pretrained_vision" and not cfg.demo.base_dir:
        from unprior.world.base import tower_for

        with torch_threads(cfg.threads):
            tower_for(cfg.demo.base)  # one tower for every seed's base and control: trained before they start
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg.threads,)) as pool:
        # The control's world is derived from demo.base.world: none when the study runs on a given world_dir.
        with_control = cfg.baselines and not cfg.demo.world_dir
        control_seeds = (cfg.seeds if cfg.control_per_seed else cfg.seeds[:1]) if with_control else []
        control_jobs = {s: pool.apply_async(prepare_control, (cfg, s if cfg.control_per_seed else None))
                        for s in control_seeds}  # fmt: skip
        jobs = {s: pool.apply_async(prepare_seed, (cfg, s)) for s in cfg.seeds}
        prepared = {s: job.get() for s, job in jobs.items()}
        print(f"prepared {len(prepared)} seeds in {time.perf_counter() - t0:.0f}s", flush=True)
        units = plan_units(cfg, prepared, {s: job.get() for s, job in control_jobs.items()})
        todo = [u for u in units if not _done(out, u)]
        print(f"{len(units)} units, {len(units) - len(todo)} already done", flush=True)
        failed = []
        for k, result in enumerate(pool.imap_unordered(_run_packed, [(u, log_dir) for u in todo]), 1):
            if "error" in result:
                failed.append(result["name"])
                print(f"[{k}/{len(todo)}] {result['name']} FAILED:\n{result['error']}", flush=True)
                continue
            write_json(out / "runs" / f"{result['name']}.json", result)
            m = result["metrics"]
            print(f"[{k}/{len(todo)}] {result['name']}: CF {m['cf']:.3f} ID {m['id']:.3f} frontier "
                  f"{m['frontier']:.3f} ({result['seconds']:.0f}s; {time.perf_counter() - t0:.0f}s in)", flush=True)
    write_summary(cfg, [read_json(_result_file(out, u)) for u in units if _result_file(out, u).is_file()], out)
    print(f"summary: {out / 'summary.md'} ({time.perf_counter() - t0:.0f}s)", flush=True)
    if failed:
        print(f"{len(failed)} units failed: {', '.join(failed)} (rerun the same command to retry them)")
        return 1
    return 0


def _run_packed(args: tuple[Unit, str]) -> dict[str, Any]:
    return _safe_unit(*args)


