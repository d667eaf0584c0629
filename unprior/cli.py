"""``unprior <command> [--config X.yaml] [key=value ...]``: one dispatch table, one config dataclass per command.

Each entry names the config class and the run function by import path, so ``unprior --help`` starts without
importing torch. ``unprior <command> --help`` lists every config field with its default and documentation.

Failures (docs/errors.md): bad usage (a bad config value, a missing or invalid input file, an output that exists)
prints one line on stderr and exits 2; failed work prints one line and exits 1. The traceback is shown only with
``--debug`` or ``UNPRIOR_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from dataclasses import dataclass

from unprior.config import (
    RENAMED_UNTIL,
    ConfigDeprecationWarning,
    ConfigError,
    describe,
    describe_renamed,
    load_config,
)
from unprior.io import InputError

USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, InputError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
"""Bad usage: exit 2 with the exception's one-line message (it names the field or file and the fix)."""
DEBUG_ENV = "UNPRIOR_DEBUG"


@dataclass(frozen=True)
class Command:
    config: str
    """"module:Class" of the command's config dataclass."""
    run: str
    """"module:function" taking the config."""
    summary: str


COMMANDS: dict[str, Command] = {
    "world build": Command(
        "unprior.world.config:WorldConfig",
        "unprior.world.build:run_build",
        "Generate the synthetic world dataset (JSONL + PNG, train/test splits, manifest).",
    ),
    "world base": Command(
        "unprior.world.config:BaseConfig",
        "unprior.world.base:run_base",
        "Train (or reuse from cache) the tiny biased base VLM: text-only prior pretraining, then multimodal SFT.",
    ),
    "world report": Command(
        "unprior.world.config:ReportConfig",
        "unprior.world.report:run_report",
        "Print and save the bias report of a model on the world's test splits (greedy decoding).",
    ),
    "world probe": Command(
        "unprior.world.config:ProbeConfig",
        "unprior.world.probe:run_probe",
        "Linear colour probe on a model's image features: does the colour reach the language model at all?",
    ),
    "eval run": Command(
        "unprior.eval.config:EvalConfig",
        "unprior.eval.generation:run_eval_command",
        "Answer one benchmark with one model (hf or vllm; base, full checkpoint or LoRA adapter) and score it.",
    ),
    "eval compare": Command(
        "unprior.eval.config:CompareConfig",
        "unprior.eval.compare:run_compare_config",
        "Table across eval runs (unprior eval compare RUN... [png=FILE]) and a bar chart.",
    ),
    "eval frontier": Command(
        "unprior.eval.config:FrontierConfig",
        "unprior.eval.frontier:run_frontier",
        "Grounding frontier on the world: best counterfactual accuracy at matched in-distribution accuracy.",
    ),
    "pairs": Command(
        "unprior.pairs.config:PairsConfig",
        "unprior.pairs.run:run_pairs",
        "Generate negatives (image weakening, error injection, rules, NaPO biases): sharded, resumable pairs run.",
    ),
    "pairs merge": Command(
        "unprior.pairs.config:MergeConfig",
        "unprior.pairs.merge:run_merge",
        "Merge the shards of a pairs run into one pairs file (optionally a TRL or LLaMA-Factory export).",
    ),
    "pairs noise": Command(
        "unprior.pairs.noise:NoiseConfig",
        "unprior.pairs.noise:run_noise",
        "Plant a known share of noisy pairs (correct negatives or flipped pairs) in a pairs file, to test robustness.",
    ),
    "pairs browse": Command(
        "unprior.pairs.browse.config:BrowseConfig",
        "unprior.pairs.browse.build:run_browse",
        "A static HTML browser of a pairs file: images, answers, negatives, margins, filters, histograms per kind.",
    ),
    "score": Command(
        "unprior.score.config:ScoreConfig",
        "unprior.score.reference:run_score",
        "Reference log-probs of every response of a pairs file (cached by model, data and settings) + noise report.",
    ),
    "train": Command(
        "unprior.train.config:TrainConfig",
        "unprior.train.trainer:run_train",
        "Preference-optimise a VLM (DPO/BPO/NaPO objectives) on accelerate with cached reference log-probs.",
    ),
    "demo": Command(
        "unprior.demo:DemoConfig",
        "unprior.demo:run_demo",
        "The whole pipeline on the embedded default: world, base, pairs, score, SFT/DPO/NaPO, eval, report.",
    ),
    "study": Command(
        "unprior.study:StudyConfig",
        "unprior.study:run_study",
        "A multi-seed study on the embedded world (experiments/*.yaml): arms x seeds, mean ± std tables.",
    ),
}


def _load(path: str) -> object:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: unprior <command> [--config FILE.yaml] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items()]
    lines += ["", "Run 'unprior <command> --help' for the command's config fields."]
    return "\n".join(lines)


def _subcommands(group: str) -> dict[str, Command]:
    """The commands under ``group`` (``"world"`` -> ``world build``, ``world base``, ...)."""
    return {n: c for n, c in COMMANDS.items() if n.startswith(group + " ")}


def _group_usage(group: str) -> str:
    subs = _subcommands(group)
    width = max(len(n) for n in subs)
    lines = [f"usage: unprior {group} <subcommand> [--config FILE.yaml] [key=value ...]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {c.summary}" for name, c in subs.items()]
    lines += ["", f"Run 'unprior {group} <subcommand> --help' for the subcommand's config fields."]
    return "\n".join(lines)


def _split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    for n in (2, 1):
        name = " ".join(argv[:n])
        if name in COMMANDS:
            return name, argv[n:]
    return None, argv


def _command_help(name: str, cmd: Command) -> str:
    cls = _load(cmd.config)
    rows = describe(cls)  # type: ignore[arg-type]
    out = [f"usage: unprior {name} [--config FILE.yaml] [key=value ...]", "", cmd.summary, "", "config fields:"]
    for key, default, doc in rows:
        out.append(f"  {key} = {default}")
        if doc:
            out.append(f"      {doc}")
    renamed = describe_renamed(cls)  # type: ignore[arg-type]
    if renamed:
        out += ["", f"renamed keys (the old name is read, with a warning, until unprior {RENAMED_UNTIL}):",
                *(f"  {old} -> {new}" for old, new in renamed)]
    if name in PLANNED:
        out += ["", "memory plan (prints what the run needs per device, loads no weights; docs/train.md):",
                "  plan=true [device_memory=80GiB] [devices=1] [setup=single|ddp|fsdp2|zero3] [rows=512]"
                if name != "pairs" else "  plan=true [device_memory=24GiB] [rows=512]  (docs/pairs.md)"]
    subs = _subcommands(name)
    if subs:  # `pairs` is a command and a group
        width = max(len(n) for n in subs)
        out += ["", "subcommands:", *(f"  {n:<{width}}  {c.summary}" for n, c in subs.items())]
    return "\n".join(out)


def _no_command(argv: list[str]) -> int:
    """Usage for ``unprior``, ``unprior --help`` and a group (``unprior world [--help]``); exit 0 only when asked."""
    asked = not argv or argv[0] in ("-h", "--help") or (len(argv) > 1 and argv[1] in ("-h", "--help"))
    if argv and _subcommands(argv[0]):
        text = _group_usage(argv[0])
        if len(argv) > 1 and not asked:
            text = f"unprior {argv[0]}: unknown subcommand {argv[1]!r}\n\n{text}"
    else:
        text = _usage() if asked else f"unprior: unknown command {argv[0]!r}\n\n{_usage()}"
    print(text, file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


def positional_runs(args: list[str]) -> list[str]:
    """``["a", "b", "png=x"]`` -> ``["png=x", "runs=[a, b]"]``: run directories given without ``runs=``."""
    runs = [a for a in args if "=" not in a and not a.startswith("-")]
    if not runs:
        return args
    return [*(a for a in args if a not in runs), "runs=" + json.dumps(runs)]


def flag_overrides(args: list[str]) -> list[str]:
    """``--resume`` -> ``resume=true`` and ``--key=value`` -> ``key=value``: flags are overrides too."""
    out = []
    for a in args:
        if a.startswith("--") and len(a) > 2:
            key, sep, value = a[2:].partition("=")
            key = key.replace("-", "_")
            out.append(f"{key}={value}" if sep else f"{key}=true")
        else:
            out.append(a)
    return out


PLANNED = ("train", "score", "pairs")
"""Commands that print a memory plan instead of running with ``plan=true`` (``--plan``; unprior/plan.py)."""
PLAN_KEYS = ("plan", "device_memory", "devices", "setup", "rows")


def split_plan(overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """The memory plan's overrides (None unless ``plan=true``) and the command's own."""
    mine = [o for o in overrides if o.partition("=")[0] in PLAN_KEYS]
    rest = [o for o in overrides if o not in mine]
    wanted = any(o.partition("=")[2].lower() in ("true", "1", "yes") for o in mine if o.startswith("plan="))
    return ([o for o in mine if not o.startswith("plan=")] if wanted else None), (rest if wanted else overrides)


def _load_config(name: str, cmd: Command, config: str | None, overrides: list[str]) -> object:
    """The command's config; a renamed key given under its old name is one ``warning:`` line on stderr."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigDeprecationWarning)
            return load_config(_load(cmd.config), config, overrides)  # type: ignore[arg-type]
    finally:  # also when the config is refused: the old name may be why
        renamed = [w for w in caught if issubclass(w.category, ConfigDeprecationWarning)]
        for message in dict.fromkeys(str(w.message) for w in renamed):
            print(f"unprior {name}: warning: {message}", file=sys.stderr)
        for w in caught:
            if w not in renamed:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _run(name: str, cmd: Command, config: str | None, overrides: list[str]) -> object:
    """Load the config and run the command, or print its memory plan (``plan=true``)."""
    plan, overrides = split_plan(overrides) if name in PLANNED else (None, overrides)
    cfg = _load_config(name, cmd, config, overrides)
    if plan is None:
        return _load(cmd.run)(cfg)  # type: ignore[operator]
    from unprior.plan import PlanConfig, run_plan  # torch and transformers: only with --plan

    return run_plan(name, cfg, load_config(PlanConfig, None, plan))


def _debugging(rest: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` was given (or ``UNPRIOR_DEBUG`` is set to anything but 0), and the arguments without it."""
    wanted = "--debug" in rest or os.environ.get(DEBUG_ENV, "0") not in ("", "0")
    return wanted, [a for a in rest if a != "--debug"]


def _message(error: Exception) -> str:
    """The error's text; an OSError from ``open`` reads "No such file or directory: PATH" (no errno prefix)."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def report_failure(name: str, error: Exception) -> int:
    """One line on stderr for a stage that raised; returns the exit code (2: bad usage, 1: failed work)."""
    if isinstance(error, USAGE_ERRORS):
        print(f"unprior {name}: {_message(error)}", file=sys.stderr)
        return 2
    print(f"unprior {name}: failed: {type(error).__name__}: {_message(error)} (rerun with --debug for the traceback)",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = _split_command(argv)
    if name is None:
        return _no_command(argv)
    debug, rest = _debugging(rest)
    cmd = COMMANDS[name]
    if "-h" in rest or "--help" in rest:
        print(_command_help(name, cmd))
        return 0
    parser = argparse.ArgumentParser(prog=f"unprior {name}", add_help=False)
    parser.add_argument("--config", default=None)
    args, overrides = parser.parse_known_args(rest)
    overrides = flag_overrides(overrides)
    if name == "eval compare":  # `unprior eval compare RUN... [key=value]`: bare arguments are the runs
        overrides = positional_runs(overrides)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        print(f"unprior {name}: expected key=value, got {bad[0]!r}", file=sys.stderr)
        return 2
    try:
        result = _run(name, cmd, args.config, overrides)
    except Exception as e:
        if debug:
            raise
        return report_failure(name, e)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
