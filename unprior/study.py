"""``unprior study``: a multi-seed experiment grid on the embedded world, with mean ± std tables.

A study is a set of *arms* (an objective, the pool its pairs come from, a share of planted noisy negatives) run on
every seed. One seed fixes everything random that the demo fixes with one number: the base model's training
(``base.seed``; the world stays the same, so the test sets do), the pool's image draw, the pair generation, the
planted noise, and the trainer's row order. The steps are the demo's (``unprior.demo``) and share its cache:

1. *prepare* each seed (in parallel): the base model, then per pool the pairs and their reference scores
   (``unprior pairs`` / ``score``), then per noise rate the noised pairs (``unprior pairs noise``) and their scores;
2. *run* every arm × seed unit (in parallel, ``workers`` processes with ``threads`` torch threads each): train
   (``unprior train``, cached by the whole train config) and evaluate on the world benchmark and the grounding
   frontier (``unprior eval run`` / ``eval frontier``, cached by the model's files); the base of every seed and the
   no-prior control (the visual ceiling) are evaluated too;
3. *summarise*: ``summary.md`` and ``summary.json`` with mean ± sample std over seeds of every metric, the share of
   the base→ceiling frontier gap each arm closes, the in-distribution cost, paired differences between arms
   (``compare``), and a noise-level × objective pivot when arms differ in noise.

Each finished unit is written at once to ``<out>/runs/<arm>-s<seed>.json`` (with the key of everything that decided
it), so a killed study resumes with the units still missing; the summary is rewritten from those files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unprior.config import check_range, config_hash, dump_yaml, fail, to_dict
from unprior.demo import DemoConfig
from unprior.io import is_complete, read_json, read_jsonl, write_json
from unprior.losses.config import ObjectiveConfig

STUDY_FORMAT_VERSION = 1
METRICS = {
    "id": ("world", "id_attribute_accuracy", "ID attr acc", True),
    "cf": ("world", "cf_attribute_accuracy", "CF attr acc", True),
    "prior_follow": ("world", "cf_prior_follow", "CF prior-follow", False),
    "frontier": ("frontier", "cf_at_id_0.90", "CF@ID≥0.90", True),
    "pope_adv_fp": ("world", "cf_pope_adversarial_fp", "CF POPE adv FP", False),
    "pope_adv_f1": ("world", "cf_pope_adversarial_f1", "CF POPE adv F1", True),
    "chair_i": ("world", "cf_chair_i", "CF CHAIR_i", False),
    "partner_hall": ("world", "cf_partner_hallucination", "CF partner hall.", False),
}
"""Short name -> (eval run, metric, column title, higher is better)."""
PROBE = {"probe_cf": ("colour probe, CF objects", True), "probe_id": ("colour probe, ID objects", True)}
"""With ``probe: true``: a linear colour probe on the model's image features (``unprior world probe``)."""
DERIVED = {"gap_closed": ("frontier gap closed", True), "id_cost": ("ID cost", False)}
"""Per-seed derived numbers: (frontier − base frontier) / (ceiling − base frontier); base ID − ID."""


@dataclass
class ArmConfig:
    """One arm of a study: an objective trained on one pool's pairs, with or without planted noise."""

    objective: str = "napo"
    """"sft" (the chosen answers only, as in the demo) or a preset of ``unprior.losses`` (dpo, bpo, napo, ...)."""
    set: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides of the objective, e.g. ``{"gamma": "fixed", "kinds.language_bias.loss": "dpo"}``."""
    drop: list[str] = field(default_factory=list)
    """Negative kinds removed from the objective (NaPO Table 2's "w/o VB data": ``[vision_bias]``)."""
    pool: str = "balanced"
    """Which of the study's ``pools`` the pairs come from."""
    noise: float = 0.0
    """Share of the ``noise_kinds`` negatives replaced by correct rewrites (``unprior pairs noise``)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Overrides of the arm's ``unprior train`` config, e.g. ``{train_vision: true}`` or ``{max_steps: 600}``."""
    group: str = ""
    """Row of the noise pivot table (arms differing only in ``noise`` share a group). Empty: the arm's name."""
    label: str = ""
    """Row title in the tables. Empty: the arm's name."""

    def validate(self) -> None:
        check_range(self, "noise", 0.0, 0.999)
        from unprior.train.config import TrainConfig

        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in self.train:
            if key not in known or key in ("model", "pairs", "out", "objective", "seed"):
                fail("train", f"{key!r} cannot be overridden per arm; allowed: "
                     f"{', '.join(sorted(known - {'model', 'pairs', 'out', 'objective', 'seed'}))}")


@dataclass
class StudyConfig:
    """A grid of arms × seeds on the embedded world, at the demo's settings unless ``demo.*`` says otherwise."""

    demo: DemoConfig = field(default_factory=DemoConfig)
    """World, base model, pool size, pair generation, training and evaluation settings (``unprior demo``'s); its
    ``pool.noncanonical_share``, ``pool.seed``, ``train.seed`` and ``base.seed`` are set per pool and seed."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds; each is a separately trained base model, pool draw, pair set, noise draw and training order."""
    vary_base: bool = True
    """Train a base model per seed (``base.seed = seed``); false keeps ``demo.base.seed`` for every seed."""
    pools: dict[str, float | None] = field(default_factory=lambda: {"balanced": 0.5, "natural": None})
    """Pool name -> its share of images holding a non-canonical colour (null: drawn as in training)."""
    noise_kinds: list[str] = field(default_factory=lambda: ["language_bias", "vision_bias"])
    """Kinds that receive planted noise (NaPO's biased kinds; the original pair stays clean, as the paper assumes)."""
    arms: dict[str, ArmConfig] = field(default_factory=dict)
    """Arm name -> arm."""
    compare: list[list[str]] = field(default_factory=list)
    """Pairs ``[a, b]`` of arms whose per-seed difference a − b is reported (mean ± std and wins)."""
    probe: bool = False
    """Also fit a linear colour probe on every model's image features (``unprior world probe``): does the colour
    reach the language model at all?"""
    baselines: bool = True
    """Evaluate each seed's base model and the no-prior control (needed for the gap and the ID cost)."""
    workers: int = 2
    """Processes running units side by side."""
    threads: int = 1
    """torch threads per process (one: see ``unprior demo``'s ``threads``)."""
    out: str = "experiments/results/study"
    """Study folder: ``runs/<arm>-s<seed>.json`` per unit, ``summary.md``, ``summary.json``, ``config.yaml``."""
    title: str = ""
    """Heading of summary.md."""

    def validate(self) -> None:
        if not self.seeds:
            fail("seeds", "give at least one seed")
        if not self.arms:
            fail("arms", "give at least one arm")
        check_range(self, "workers", 1, 256)
        check_range(self, "threads", 0, 1024)
        for name, arm in self.arms.items():
            if arm.pool not in self.pools:
                fail(f"arms.{name}.pool", f"unknown pool {arm.pool!r}; the study's pools: {', '.join(self.pools)}")
            objective_for_arm(arm, self.demo.train.beta, self.demo.train.sft_weight)  # fails early on a typo
        for pair in self.compare:
            if len(pair) != 2 or any(a not in self.arms for a in pair):
                fail("compare", f"each entry is [arm, arm] of known arms; got {pair}")


# --------------------------------------------------------------------------------------------------- objectives


def objective_for_arm(arm: ArmConfig, beta: float, sft_weight: float) -> ObjectiveConfig:
    """The arm's objective: the demo's method or a loss preset, with ``set`` applied and ``drop`` kinds removed."""
    from unprior.config import ConfigError, _set_dotted, from_dict
    from unprior.demo import DemoTrainConfig, objective_for
    from unprior.losses import objective_preset

    if arm.objective == "sft":
        base = objective_for("sft", DemoTrainConfig(beta=beta))
    else:
        base = objective_preset(arm.objective)
        base.beta, base.sft_weight = beta, sft_weight
    data = to_dict(base)
    for key, value in arm.set.items():
        _set_dotted(data, key, value)
    for kind in arm.drop:
        if kind not in data["kinds"]:
            raise ConfigError(f"drop: the objective has no kind {kind!r} (it has {', '.join(data['kinds'])})")
        del data["kinds"][kind]
    return from_dict(ObjectiveConfig, data, prefix="objective.")


# ------------------------------------------------------------------------------------------------------ prepare


def _demo_for(cfg: StudyConfig, seed: int, share: float | None) -> DemoConfig:
    d = copy.deepcopy(cfg.demo)
    if cfg.vary_base:
        d.base.seed = seed
    d.pool.seed, d.train.seed, d.pool.noncanonical_share = seed, seed, share
    d.control, d.threads = False, cfg.threads
    return d


def _noise_tag(rate: float, kinds: list[str]) -> str:
    return f"noise-{rate:g}-{'+'.join(sorted(kinds))}"


def prepare_seed(cfg: StudyConfig, seed: int) -> dict[str, Any]:
    """World, base model, pairs and reference scores (clean and noised) of one seed; cached like the demo's."""
    from rich.console import Console

    from unprior.demo import Demo, demo_cache, score_config, step_base, step_pairs, step_score, step_world
    from unprior.pairs.noise import NoiseConfig, inject_noise
    from unprior.score.reference import ensure_reference

    out: dict[str, Any] = {"seed": seed, "pairs": {}}
    used = {(a.pool, a.noise) for a in cfg.arms.values()}
    for pool in sorted({p for p, _ in used}):
        dcfg = _demo_for(cfg, seed, cfg.pools[pool])
        d = Demo(dcfg, Console(file=sys.stdout, width=120), demo_cache("study-prep", f"s{seed}-{pool}"))
        (d.out / "configs").mkdir(parents=True, exist_ok=True)
        step_world(d)
        step_base(d)
        step_pairs(d)
        step_score(d)
        out["world"], out["base"] = str(d.world), str(d.models["base"])
        files = {0.0: str(d.pairs_file)}
        for rate in sorted(r for p, r in used if p == pool and r > 0):
            noisy = d.pairs_file.parent / f"{_noise_tag(rate, cfg.noise_kinds)}-s{seed}" / "pairs.parquet"
            if not noisy.is_file():
                inject_noise(NoiseConfig(pairs=str(d.pairs_file), out=str(noisy), rate=rate,
                                         kinds=list(cfg.noise_kinds), seed=seed))
            score = score_config(d)
            score.pairs = str(noisy)
            ensure_reference(score, log=print)
            files[rate] = str(noisy)
        out["pairs"][pool] = files
    return out


def prepare_control(cfg: StudyConfig) -> str:
    """The no-prior control of ``demo.base`` (seed as given there): the visual ceiling."""
    from unprior.demo import control_config
    from unprior.world.base import train_base

    ctrl = control_config(cfg.demo.base)
    ctrl.threads = cfg.threads
    return str(train_base(ctrl))


# ---------------------------------------------------------------------------------------------------------- units


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
    """The arm's ``unprior train`` config (the demo's settings, the arm's objective), as a dict."""
    from unprior.train.config import LoraSettings, TrainConfig

    t = cfg.demo.train
    train = TrainConfig(model=model, pairs=pairs, out="", resume=True,
                        objective=objective_for_arm(arm, t.beta, t.sft_weight), max_length=t.max_length,
                        batch_size=t.batch_size, max_steps=t.steps, lr=t.lr, warmup_ratio=t.warmup_ratio,
                        lora=LoraSettings(enabled=False), seed=seed, log_every=5, score_batch_size=64,
                        threads=cfg.threads)
    if not arm.train:
        return to_dict(train)
    from unprior.config import from_dict

    data = to_dict(from_dict(TrainConfig, {**to_dict(train), **arm.train, "out": "(set per unit)"}))
    return {**data, "out": ""}


def _train_dir(train: dict[str, Any], arm: str) -> Path:
    """The trained model's cache folder; any arm with the same train config reuses it."""
    from unprior.demo import demo_cache

    key = config_hash({"version": STUDY_FORMAT_VERSION, "train": {k: v for k, v in train.items()
                                                                   if k not in ("out", "threads")}})
    found = sorted(demo_cache("train").glob(f"*-study-{key}"))
    return found[0] if found else demo_cache("train", f"{arm}-study-{key}")


def _late_mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over the last quarter of the logged steps (q and γ settle there)."""
    values = [r[key] for r in rows if key in r]
    tail = values[-max(1, len(values) // 4):]
    return sum(tail) / len(tail) if tail else None


def run_unit(unit: Unit, log_dir: str) -> dict[str, Any]:
    """Train (unless cached) and evaluate one unit; its output goes to ``<log_dir>/<name>.log``."""
    import contextlib

    import torch

    from unprior.demo import evaluate_model

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
    if unit.probe:
        from unprior.world.probe import ProbeConfig, probe_model

        acc = probe_model(ProbeConfig(models=[str(model)], world_dir=unit.world), str(model))
        metrics["probe_cf"], metrics["probe_id"] = acc["test_cf"], acc["test_id"]
    return {"name": unit.name, "arm": unit.arm, "seed": unit.seed, "key": unit.key, "model": str(model),
            "pairs": unit.pairs, "metrics": metrics, "train": train_info, "eval_dirs": entry["dirs"],
            "seconds": round(time.perf_counter() - start, 1)}


def _train(unit: Unit, console: Any) -> tuple[Path, dict[str, Any]]:
    from unprior.config import from_dict
    from unprior.train.config import TrainConfig
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


# ------------------------------------------------------------------------------------------------------ the study


def plan_units(cfg: StudyConfig, prepared: dict[int, dict[str, Any]], control: str | None) -> list[Unit]:
    """Every unit of the study: baselines first (base per seed, control once), then arm × seed."""
    common = {"eval_batch_size": cfg.demo.eval_batch_size, "limit": cfg.demo.limit, "threads": cfg.threads,
              "probe": cfg.probe}
    units = []
    if cfg.baselines:
        for seed, p in prepared.items():
            units.append(Unit(f"base-s{seed}", "base", seed, p["world"], p["base"], **common))
        if control is not None:
            first = prepared[cfg.seeds[0]]
            units.append(Unit("control", "control", cfg.seeds[0], first["world"], control, **common))
    for name, arm in cfg.arms.items():
        for seed in cfg.seeds:
            p = prepared[seed]
            pairs = p["pairs"][arm.pool][arm.noise]
            train = train_config_for(cfg, arm, seed, p["base"], pairs)
            units.append(Unit(f"{name}-s{seed}", name, seed, p["world"], p["base"], pairs, train, **common))
    return units


def _init_worker(threads: int) -> None:
    import torch

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
    import multiprocessing

    from unprior.demo import demo_cache

    out = Path(cfg.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml")
    log_dir = str(demo_cache("study-logs", out.name))
    t0 = time.perf_counter()
    print(f"study {out}: {len(cfg.arms)} arms × {len(cfg.seeds)} seeds; worker logs in {log_dir}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg.threads,)) as pool:
        # The control's world is derived from demo.base.world: none when the study runs on a given world_dir.
        with_control = cfg.baselines and not cfg.demo.world_dir
        control = pool.apply_async(prepare_control, (cfg,)) if with_control else None
        jobs = {s: pool.apply_async(prepare_seed, (cfg, s)) for s in cfg.seeds}
        prepared = {s: job.get() for s, job in jobs.items()}
        print(f"prepared {len(prepared)} seeds in {time.perf_counter() - t0:.0f}s", flush=True)
        units = plan_units(cfg, prepared, control.get() if control is not None else None)
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


# -------------------------------------------------------------------------------------------------------- summary


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def derive(results: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Arm -> seed -> metrics, with the frontier gap closed and the ID cost against that seed's base."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by.setdefault(r["arm"], {})[r["seed"]] = dict(r["metrics"])
    bases, ceiling = by.get("base", {}), next(iter(by.get("control", {}).values()), {}).get("frontier")
    for arm, seeds in by.items():
        for seed, m in seeds.items():
            base = bases.get(seed)
            if base is None or arm in ("base", "control"):
                continue
            if ceiling is not None and ceiling != base["frontier"]:
                m["gap_closed"] = (m["frontier"] - base["frontier"]) / (ceiling - base["frontier"])
            m["id_cost"] = base["id"] - m["id"]
    return by


def write_summary(cfg: StudyConfig, results: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """``summary.md`` and ``summary.json`` from the unit results."""
    by = derive(results)
    order = [a for a in ("base", "control") if a in by] + [a for a in cfg.arms if a in by]
    probed = any("probe_cf" in m for seeds in by.values() for m in seeds.values())
    columns = {**{k: (v[2], v[3]) for k, v in METRICS.items()}, **(PROBE if probed else {}), **DERIVED}
    table = {arm: {k: [by[arm][s][k] for s in sorted(by[arm]) if by[arm][s].get(k) is not None] for k in columns}
             for arm in order}
    label = {a: (cfg.arms[a].label or a) if a in cfg.arms else a for a in order}
    lines = [f"# {cfg.title or out.name}", "",
             f"Mean ± sample std over seeds {', '.join(map(str, cfg.seeds))} (n per row in the last column). "
             "Arrows: which direction is better. Gap closed: (frontier − base frontier) / (ceiling − base "
             "frontier) per seed, ceiling = the no-prior control. ID cost: base ID accuracy − ID accuracy.", "",
             "| arm | " + " | ".join(f"{t} {'↑' if hi else '↓'}" for t, hi in columns.values()) + " | n |",
             "|---|" + "---|" * (len(columns) + 1)]
    for arm in order:
        n = len(by[arm])
        lines.append(f"| {label[arm]} | " + " | ".join(_fmt(table[arm][k]) for k in columns) + f" | {n} |")
    comparisons = _comparisons(cfg, by)
    if comparisons:
        lines += ["", "## Paired differences (same seed: same base, pool, pairs and row order)", "",
                  "| a − b | CF attr acc | CF@ID≥0.90 | ID attr acc | CF POPE adv FP | a better on CF (seeds) |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['a']} − {c['b']} | {_fmt(c['cf'])} | {_fmt(c['frontier'])} | {_fmt(c['id'])} | "
                         f"{_fmt(c['pope_adv_fp'])} | {c['wins_cf']}/{len(c['cf'])} |")
    pivot = _noise_pivot(cfg, by)
    if pivot:
        rates = sorted({r for g in pivot.values() for r in g})
        for key, title in (("cf", "CF attr acc"), ("frontier", "CF@ID≥0.90"), ("id", "ID attr acc")):
            lines += ["", f"## {title} by share of noisy negatives", "",
                      "| objective | " + " | ".join(f"{r:.0%}" for r in rates) + " |",
                      "|---|" + "---|" * len(rates)]
            for group, cells in pivot.items():
                lines.append(f"| {group} | " + " | ".join(_fmt(cells[r][key]) if r in cells else "-"
                                                           for r in rates) + " |")
    if pivot and plot_noise(pivot, out / "noise.png"):
        lines += ["", "![CF accuracy and frontier by share of noisy negatives](noise.png)"]
    late = _late_table(cfg, results)
    if late:
        lines += ["", "## q and γ at the end of training (mean of the last quarter of logged steps, over seeds)", "",
                  *late]
    lines += ["", "## Reproduce", "", "```bash", f"unprior study --config {out / 'config.yaml'}", "```", ""]
    (out / "summary.md").write_text("\n".join(lines))
    summary = {"columns": {k: {"title": t, "higher_is_better": hi} for k, (t, hi) in columns.items()},
               "arms": {a: {"label": label[a], "seeds": {str(s): m for s, m in by[a].items()},
                            "mean": {k: mean_std(v)[0] for k, v in table[a].items() if v},
                            "std": {k: mean_std(v)[1] for k, v in table[a].items() if v}} for a in order},
               "comparisons": comparisons, "noise_pivot": {g: {str(r): v for r, v in c.items()}
                                                           for g, c in pivot.items()}}
    write_json(out / "summary.json", summary)
    return summary


def _comparisons(cfg: StudyConfig, by: dict[str, dict[int, dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for a, b in cfg.compare:
        seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
        if not seeds:
            continue
        diff = {k: [by[a][s][k] - by[b][s][k] for s in seeds] for k in ("cf", "frontier", "id", "pope_adv_fp")}
        rows.append({"a": a, "b": b, "seeds": seeds, **diff, "wins_cf": sum(d > 0 for d in diff["cf"])})
    return rows


def _noise_pivot(cfg: StudyConfig, by: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[float, Any]]:
    """Group -> noise rate -> metric -> per-seed values, for the groups with more than one rate."""
    pivot: dict[str, dict[float, Any]] = {}
    for name, arm in cfg.arms.items():
        if name in by:
            seeds = by[name].values()
            pivot.setdefault(arm.group or name, {})[arm.noise] = {
                k: [m[k] for m in seeds if m.get(k) is not None] for k in ("cf", "frontier", "id")}
    return {group: cells for group, cells in pivot.items() if len(cells) > 1}  # only groups with several rates


def plot_noise(pivot: dict[str, dict[float, Any]], png: Path) -> Path | None:
    """CF accuracy and frontier against the noise rate, one line per objective, mean ± std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "cf", "CF attribute accuracy"), (axes[1], "frontier", "CF@ID≥0.90")):
        for k, (group, cells) in enumerate(pivot.items()):
            rates = sorted(r for r in cells if cells[r][key])
            stats = [mean_std(cells[r][key]) for r in rates]
            shift = (k - (len(pivot) - 1) / 2) * 0.004  # side by side, so the error bars stay readable
            ax.errorbar([100 * (r + shift) for r in rates], [m for m, _ in stats], yerr=[s for _, s in stats],
                        marker="o", capsize=3, label=group)
        ax.set(xlabel="noisy negatives (% of the biased kinds)", title=title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def _late_table(cfg: StudyConfig, results: list[dict[str, Any]]) -> list[str]:
    late: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for k, v in (r.get("train") or {}).get("late", {}).items():
            if v is not None:
                late.setdefault(r["arm"], {}).setdefault(k, []).append(v)
    keys = sorted({k for v in late.values() for k in v})
    if not keys:
        return []
    lines = ["| arm | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for arm in (a for a in cfg.arms if a in late):
        lines.append(f"| {cfg.arms[arm].label or arm} | " + " | ".join(_fmt(late[arm].get(k, []), 2)
                                                                        for k in keys) + " |")
    return lines


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every unit result of a study folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(out, "runs").glob("*.json"))]
