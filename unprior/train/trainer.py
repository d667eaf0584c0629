"""``unprior train``: preference optimisation of a VLM, one explicit loop on accelerate.

``setup`` builds everything in a commented order; ``train`` is the loop: rows -> shared-prefix forward (every response
of a row continues one encoding of its image and prompt) -> the objective (NaPO Eq. 14, or any preset) with the
cached reference log-probs -> backward, clip, step. No reference model is in memory: its log-probs come from the
``unprior score`` cache, computed once on the main process if missing. With mDPO's conditional term
(``objective.conditional_weight > 0``) each row also brings a prompt with its corrupted image (``corruption``),
scored in the same forward; its reference values come from the same cache.

Distribution, precision and sharding come from the user's accelerate config (``accelerate launch`` or
``torchrun``): DDP, FSDP and DeepSpeed are accelerate's. The global batch is ``batch_size × processes ×
grad_accum`` rows; the row order depends only on the seed and the step, so any process count sees the same global
batches and a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.distributed.fsdp import FSDPModule

from unprior.config import config_hash, describe_changes, dump_yaml, rename_keys, to_dict
from unprior.formats.pairs import read_pairs
from unprior.forward.batch import RowEncoder
from unprior.forward.prefix import ResponseScorer
from unprior.guards import NonFiniteError, json_line
from unprior.io import InputError, read_json, write_rejected
from unprior.losses import ObjectiveOutput, objective_loss
from unprior.models.families import load_model
from unprior.numerics import cosine_lr
from unprior.pairs.merge import resolve_pairs
from unprior.score.config import ScoreConfig
from unprior.score.corrupt import make_corrupter
from unprior.score.reference import ensure_reference, load_reference
from unprior.train.checkpoint import (
    checkpoint_dirs,
    load_checkpoint,
    save_checkpoint,
    save_final_model,
    trainable_only,
)
from unprior.train.config import TrainConfig
from unprior.train.data import Order, PreferenceData, TrainBatch, prefetched
from unprior.train.guard import StepGuard
from unprior.train.model import build_policy, optimizer_groups
from unprior.train.tracking import Tracker, check_available, make_tracker

RESUME_IGNORES = ("out", "resume", "overwrite", "log_every", "save_every", "keep_checkpoints", "eval_every",
                  "report_to", "threads", "score_batch_size", "nonfinite")
"""Config fields that may change between a run and its resumption (they do not change the numbers; ``out`` may
differ when the run directory was moved; ``nonfinite`` to skip the batch a stopped run stopped at)."""


@dataclass
class Run:
    """Everything ``train`` needs, built by ``setup``."""

    cfg: TrainConfig
    accelerator: Accelerator
    scorer: torch.nn.Module
    optimizer: Any
    scheduler: Any
    processor: Any
    data: PreferenceData
    eval_data: PreferenceData | None
    order: Order
    total_steps: int
    start_step: int
    out: Path
    console: Console
    tracker: Tracker | None = None
    """The ``report_to`` tracker (main process only)."""
    skipped: int = 0
    """Steps skipped for a non-finite loss or gradient norm before ``start_step`` (from the checkpoint)."""

    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self.console.print(message)


def setup(cfg: TrainConfig) -> Run:
    """Build the run in this order; every process calls it."""
    # 1. accelerate (the user's launch config decides DDP / FSDP / DeepSpeed), seeds and threads; a missing tracker
    #    package fails here, before anything is loaded.
    check_available(cfg.report_to)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(),  # so torchrun on CPUs gives gloo processes, not one each
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision="bf16" if cfg.dtype == "bfloat16" else "no",
        step_scheduler_with_optimizer=False,  # the schedule counts optimizer steps, whatever the process count
    )
    set_seed(cfg.seed)
    console = Console()
    log = console.print if accelerator.is_main_process else (lambda *_: None)
    with accelerator.main_process_first():  # a pairs run directory: its merged file (the main process merges)
        cfg.pairs = resolve_pairs(cfg.pairs, log)
        cfg.eval_pairs = resolve_pairs(cfg.eval_pairs, log) if cfg.eval_pairs else cfg.eval_pairs
    out = _prepare_out(cfg, accelerator)

    # 2. Reference log-probs from the score cache; the main process computes a missing entry first. mDPO's
    #    conditional term also needs the training rows' chosen answers scored with their corrupted images.
    model, processor = load_model(cfg.model)
    conditional = cfg.objective.conditional_weight > 0
    files = [pairs for pairs in (cfg.pairs, cfg.eval_pairs) if pairs]  # training first
    with accelerator.main_process_first():
        references = [_reference(cfg, pairs, model, processor, log, corrupted=conditional and i == 0)
                      for i, pairs in enumerate(files)]

    # 3. The policy (LoRA or full, vision side frozen), wrapped in the scorer that runs the shared-prefix forward.
    scorer = ResponseScorer(build_policy(model, cfg, log), cfg.method, log=log)
    log(f"forward: {'shared prefix' if scorer.method == 'prefix' else 'naive'} ({type(model).__name__})")

    # 4. Data: usable rows (scored by the reference, holding an objective kind), one negative per kind per row;
    #    with the conditional term, each training row's prompt again with its corrupted image.
    encoder = RowEncoder(processor, cfg.max_length)
    corrupt = make_corrupter(cfg.corruption, processor) if conditional else None
    datasets = [_data(cfg, pairs, ref, encoder, scorer, corrupt if i == 0 else None)
                for i, (pairs, ref) in enumerate(zip(files, references, strict=True))]
    data, eval_data = datasets[0], (datasets[1] if len(datasets) > 1 else None)
    log(f"data: {len(data)} rows, negatives per kind {dict(data.kind_counts)}")
    _report_rejected(data, out, accelerator, log)
    order = Order(len(data), cfg.batch_size, accelerator.num_processes, cfg.grad_accum, cfg.seed)
    total = cfg.steps or math.ceil(cfg.epochs * len(data) / order.global_batch)

    # 5. AdamW (decay on matrices only) and linear warm-up + cosine decay over optimizer steps.
    groups = optimizer_groups(scorer.named_parameters(), cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    warmup = round(cfg.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, total, warmup, 1.0))

    # 6. accelerate.prepare; checkpoints hold only trainable weights; resume from the newest complete checkpoint.
    scorer, optimizer, scheduler = accelerator.prepare(scorer, optimizer, scheduler)
    _fsdp2_unsharded_backward(accelerator, scorer, optimizer)
    accelerator.register_save_state_pre_hook(trainable_only)
    start, skipped = _resume(cfg, accelerator, out, log)
    tracker = None
    if accelerator.is_main_process:
        dump_yaml(cfg, out / "train_config.yaml")  # after the resume check: a refused config never replaces it
        tracker = make_tracker(cfg.report_to, out, _flat(to_dict(cfg)), yaml.safe_dump(to_dict(cfg), sort_keys=False),
                               start)
    log(f"steps: {start} -> {total}, global batch {order.global_batch} rows on {accelerator.num_processes} "
        f"process(es), lr {cfg.lr} (warm-up {warmup})")
    return Run(cfg, accelerator, scorer, optimizer, scheduler, processor, data, eval_data, order, total, start, out,
               console, tracker, skipped)


def train(run: Run) -> dict[str, float]:
    """The training loop; returns the last logged metrics (with the final evaluation's, if any)."""
    cfg, acc = run.cfg, run.accelerator
    window: list[dict[str, torch.Tensor]] = []
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    if run.eval_data is not None and run.start_step == 0:
        _log_eval(run, 0)  # the starting model's held-out accuracy, for the before/after comparison
    plan = ((step, micro, run.order.micro_rows(step, micro, acc.process_index))
            for step in range(run.start_step, run.total_steps) for micro in range(cfg.grad_accum))
    clip = _grad_clipper(run)
    guard = StepGuard(acc, run.data, run.order, skipped=run.skipped)
    with _progress(acc) as progress, prefetched(run.data, plan) as batches:
        task = progress.add_task("train", total=run.total_steps, completed=run.start_step)
        for step, micro, batch in batches:  # encoded in a background thread
            with acc.accumulate(run.scorer):
                out = _objective(run, batch)
                batches.advance()  # encode the next batch during backward, which runs without the GIL
                acc.backward(out.losses.mean())  # accelerate divides by grad_accum
            guard.note(out.losses)
            window.append(out.metrics)
            if micro < cfg.grad_accum - 1:
                continue
            grad_norm = clip() if cfg.max_grad_norm else None
            problem = guard.check(step, grad_norm)  # before the weights move, the same answer on every process
            if problem is None:
                run.optimizer.step()
            else:
                grad_norm, window = None, window[: -cfg.grad_accum]
                _nonfinite_step(run, guard, problem)
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if (done % cfg.log_every == 0 or done == run.total_steps) and window:
                extra = {"grad_norm": grad_norm} if grad_norm is not None else {}
                extra |= {"nonfinite_skipped": guard.skipped} if guard.skipped else {}
                last = _log_metrics(run, done, window, extra, time.perf_counter() - t0)
                window = []
                progress.update(task, description=f"train loss {last['loss']:.4f}")
            if cfg.eval_every and done % cfg.eval_every == 0 and done < run.total_steps and run.eval_data:
                _log_eval(run, done)
            if cfg.save_every and done % cfg.save_every == 0 and done < run.total_steps:
                save_checkpoint(acc, run.out, done, _trainer_state(run, done, guard.skipped), cfg.keep_checkpoints)
            progress.update(task, completed=done)
    if run.eval_data is not None:
        last |= _log_eval(run, run.total_steps)
    if guard.skipped:
        run.log(f"[yellow]{guard.skipped} of {run.total_steps} steps skipped for a non-finite loss or gradient norm "
                "(nonfinite=skip; their rows are named above)[/]")
    trained = time.perf_counter() - t0
    final = save_final_model(acc, run.scorer, run.processor, run.out, merge_lora=cfg.merge_lora,
                             extra_files={"train_state.json": _trainer_state(run, run.total_steps, guard.skipped)})
    run.log(f"trained in {trained:.1f}s; model saved to {final} ({time.perf_counter() - t0 - trained:.1f}s)")
    if run.tracker is not None:
        run.tracker.close()
    acc.end_training()
    return last


def _nonfinite_step(run: Run, guard: StepGuard, problem: str) -> None:
    """A step with a non-finite loss or gradient norm: stop the run (no final model; the checkpoints so far are the
    last good state), or with ``nonfinite: skip`` count and log it (its gradients are dropped, the weights kept)."""
    if run.cfg.nonfinite == "skip":
        guard.skipped += 1
        run.log(f"[yellow]{problem}: batch skipped ({guard.skipped} so far)[/]")
        return
    if run.tracker is not None:
        run.tracker.close()
    found = checkpoint_dirs(run.out)
    kept = (f"the last good checkpoint is {found[-1]} (resume=true continues from it; nonfinite=skip skips such "
            "batches)" if found else "no checkpoint was written yet (save_every=0 or not reached)")
    raise NonFiniteError(f"{problem}. Training stopped before updating the weights; no final model was saved; "
                         f"{kept}")


def _grad_clipper(run: Run):
    """``clip() -> total norm``: clip the trainable parameters' gradients to ``max_grad_norm``.

    Without FSDP, DeepSpeed, XLA or a gradient scaler, accelerate's ``clip_grad_norm_`` is plain
    ``torch.nn.utils.clip_grad_norm_`` after walking the parameters and checking their gradient types; the list of
    trainable parameters is fixed, so it is collected once here. Otherwise accelerate's own clipping is used; under
    FSDP2 on the optimizer's (sharded) parameters, since with the shared prefix the layers still hold their unsharded
    parameters, whose gradients were reduce-scattered away, when clipping runs (:func:`_fsdp2_unsharded_backward`).
    """
    acc, max_norm = run.accelerator, run.cfg.max_grad_norm
    plain = acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if acc.is_fsdp2:  # the sharded parameters the optimizer steps (layers may still hold unsharded ones)
        sharded = [p for group in run.optimizer.param_groups for p in group["params"]]
        return lambda: acc.clip_grad_norm_(sharded, max_norm)
    if not plain or acc.scaler is not None or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return lambda: acc.clip_grad_norm_(run.scorer.parameters(), max_norm)
    params = [p for p in run.scorer.parameters() if p.requires_grad]
    return lambda: torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def _fsdp2_unsharded_backward(accelerator: Accelerator, scorer: torch.nn.Module, optimizer: Any) -> None:
    """FSDP2 with the shared prefix: keep each wrapped layer unsharded from its first backward until the optimizer
    step.

    The continuation reads every layer's prompt keys and values from the cache, so a layer's projections receive
    their prompt gradient after FSDP2's post-backward for the layer's continuation call, which by default reshards
    the layer (the backward then fails: ``setStorage: ... out of bounds for storage of size 0``). Each call's
    gradients are still reduce-scattered by its own post-backward. Unsharded parameters kept past backward would be
    stale after the step, so the layers are resharded right before it (micro-steps of gradient accumulation reuse
    them, which is what ``set_reshard_after_backward(False)`` is for).
    """
    if not accelerator.is_fsdp2 or accelerator.unwrap_model(scorer).method != "prefix":
        return
    layers = [m for m in scorer.modules() if isinstance(m, FSDPModule) and m is not scorer]
    for layer in layers:
        layer.set_reshard_after_backward(False)

    def reshard(*_) -> None:
        for layer in layers:
            layer.reshard()

    optimizer.optimizer.register_step_pre_hook(reshard)


def _objective(run: Run, batch: TrainBatch) -> ObjectiveOutput:
    """Policy log-probs of a micro-batch's responses (one forward) -> the objective, with cached reference values."""
    batch = batch.to(run.accelerator.device)
    sums, counts = run.scorer(**batch.responses.inputs())
    sums = sums.float()  # token counts were checked against the reference when the batch was built
    chosen, negatives = batch.split(sums, counts, check=False)
    corrupted = batch.corrupted(sums, counts, check=False)
    return objective_loss(chosen, negatives, run.cfg.objective, corrupted=corrupted)


TIE_RTOL = 1e-5
"""Two summed log-probs closer than this, relative to the magnitudes summed, are a tie: fp32 sums over a few hundred
tokens differ by about 1e-6 relative between batch shapes, process counts and CPU kernel paths."""


def wins(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, rtol: float = TIE_RTOL) -> torch.Tensor:
    """1 where ``a > b``, 0 where ``a < b``, 0.5 where ``|a - b| <= rtol * scale`` (a tie at float precision)."""
    diff = a - b
    tie = diff.abs() <= rtol * scale
    return torch.where(tie, 0.5, (diff > 0).to(diff.dtype))


@torch.no_grad()
def evaluate(run: Run, data: PreferenceData) -> dict[str, float]:
    """Held-out preference accuracy per kind, every process taking a share of equally many batches.

    - ``eval/reward_accuracy/<k>``: the implicit reward margin (policy vs reference log-ratios) is positive.
    - ``eval/logp_accuracy/<k>``: the policy gives the chosen answer a higher summed log-prob than the negative.
    - ``eval/margin/<k>``: mean summed log-ratio margin ψ_Σ (no β).

    Both accuracies count a tie (:func:`wins`) as half a win, so at step 0, where the policy is the reference and
    every margin is zero up to float summation order, they read 0.5 on every machine instead of a coin flip decided
    by rounding (docs/train.md, "Metrics").
    """
    acc = run.accelerator
    per_step = run.cfg.batch_size * acc.num_processes
    totals = torch.zeros(len(data.kinds), 4, dtype=torch.float64, device=acc.device)
    run.scorer.eval()
    for start in range(0, len(data), per_step):
        chunk = [start + acc.process_index * run.cfg.batch_size + i for i in range(run.cfg.batch_size)]
        valid = torch.tensor([p < len(data) for p in chunk], device=acc.device)
        batch = data.batch([p % len(data) for p in chunk]).to(acc.device)
        chosen, negatives = batch.split(*[t.float() for t in run.scorer(**batch.responses.inputs())])
        for i, kind in enumerate(data.kinds):
            neg, present = negatives[kind], negatives[kind].mask & valid
            psi = (chosen.policy.sum - chosen.reference.sum) - (neg.policy.sum - neg.reference.sum)
            reward = wins(chosen.policy.sum - chosen.reference.sum, neg.policy.sum - neg.reference.sum,
                          scale=chosen.policy.sum.abs() + chosen.reference.sum.abs() + neg.policy.sum.abs()
                          + neg.reference.sum.abs())
            logp = wins(chosen.policy.sum, neg.policy.sum, scale=chosen.policy.sum.abs() + neg.policy.sum.abs())
            counts = [present.sum(), *(torch.where(present, x, 0).sum() for x in (reward, logp, psi))]
            totals[i] += torch.stack(counts).double()
    run.scorer.train()
    totals = acc.reduce(totals, reduction="sum")
    out = {}
    for i, kind in enumerate(data.kinds):
        n = max(float(totals[i, 0]), 1.0)
        out |= {f"eval/reward_accuracy/{kind}": float(totals[i, 1]) / n,
                f"eval/logp_accuracy/{kind}": float(totals[i, 2]) / n, f"eval/margin/{kind}": float(totals[i, 3]) / n}
    return out


def _prepare_out(cfg: TrainConfig, accelerator: Accelerator) -> Path:
    """Create ``out``; refuse a non-empty one unless resuming or overwriting (the config is written once the resume
    check has passed)."""
    out = Path(cfg.out)
    busy = out.exists() and any(out.iterdir())
    if busy and not (cfg.resume or cfg.overwrite):  # every process raises, so none waits at the barrier below
        raise FileExistsError(f"{out} is not empty; pass resume=true to continue or overwrite=true to restart")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if busy and cfg.overwrite and not cfg.resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return out


def _reference(cfg: TrainConfig, pairs: str, model, processor, log, corrupted: bool = False) -> Any:
    """The cache entry of ``pairs`` under the starting model (computed now if missing), loaded; with ``corrupted``
    also the chosen answers' scores under ``cfg.corruption``'s images."""
    score = ScoreConfig(model=cfg.model, pairs=pairs, image_root=cfg.image_root, max_length=cfg.max_length,
                        dtype=cfg.dtype, batch_size=cfg.score_batch_size,
                        method=cfg.method, reference_dir=cfg.reference_dir, corrupted=corrupted,
                        corruption=cfg.corruption)
    # The freshly loaded fp32 model is the starting model itself, so it can score without a second load.
    loaded = {"model": model.eval(), "processor": processor} if cfg.dtype == "float32" else {}
    entry = ensure_reference(score, log=log, **loaded)
    return load_reference(entry, cfg.corruption if corrupted else None)


def _data(cfg: TrainConfig, pairs: str, reference, encoder: RowEncoder, scorer, corrupt=None) -> PreferenceData:
    rows = read_pairs(pairs, image_root=cfg.image_root or None)
    return PreferenceData(rows, reference, encoder, list(cfg.objective.kinds), scorer.repeat_prompts, corrupt)


def _report_rejected(data: PreferenceData, out: Path, accelerator: Accelerator, log) -> None:
    """Counts of the training rows left out, by reason, on screen; the rows themselves in ``out/rejected.jsonl``
    (those the reference dropped are listed in its cache entry's ``rejected.jsonl``)."""
    if not accelerator.is_main_process:
        return
    listed = write_rejected(out, data.rejected)["by_reason"]
    for reason, n in sorted(data.skipped.items()):
        where = out / "rejected.jsonl" if reason in listed else "the reference cache entry's rejected.jsonl"
        log(f"  skipped, {reason}: {n} (ids and rows in {where})")


def _resume_fields(cfg: TrainConfig, ignores: tuple[str, ...] = RESUME_IGNORES) -> dict[str, Any]:
    """The config fields a resumed run must share with its checkpoint."""
    data = to_dict(cfg)
    for name in ignores:
        data.pop(name, None)
    if cfg.objective.conditional_weight == 0:
        data.pop("corruption")  # unused without mDPO's conditional term (and absent from older checkpoints' keys)
    return data


def _resume_key(cfg: TrainConfig) -> str:
    return config_hash(_resume_fields(cfg))


def _legacy_resume_key(cfg: TrainConfig) -> str:
    """The key of checkpoints written before ``out`` and ``nonfinite`` could change on resume."""
    data = _resume_fields(cfg, tuple(n for n in RESUME_IGNORES if n != "out"))
    data.pop("nonfinite", None)
    return config_hash(data)


def _trainer_state(run: Run, step: int, skipped: int = 0) -> dict[str, Any]:
    return {"step": step, "total_steps": run.total_steps, "resume_key": _resume_key(run.cfg),
            "resume_config": _resume_fields(run.cfg), "data_position": step * run.order.global_batch,
            "seed": run.cfg.seed, "processes": run.accelerator.num_processes, "global_batch": run.order.global_batch,
            "nonfinite_skipped": skipped}


def _check_resumable(cfg: TrainConfig, checkpoint: Path, state: dict[str, Any]) -> None:
    """Refuse a checkpoint written under other settings, naming each differing field with its old and new value."""
    allowed = f"only {', '.join(RESUME_IGNORES)} may change when resuming (or start over with overwrite=true)"
    if "resume_config" in state:
        recorded = rename_keys(TrainConfig, state["resume_config"], warn=False)  # written before a key was renamed
        if recorded != _resume_fields(cfg):
            raise InputError(f"{checkpoint} was written with a different config "
                             f"({describe_changes(recorded, _resume_fields(cfg))}); {allowed}")
    elif state["resume_key"] not in (_resume_key(cfg), _legacy_resume_key(cfg)):
        raise InputError(f"{checkpoint} was written with a different config (an older checkpoint that records only "
                         f"the config's hash, so the fields cannot be named; see its run's train_config.yaml); "
                         f"{allowed}")


def _resume(cfg: TrainConfig, accelerator: Accelerator, out: Path, log) -> tuple[int, int]:
    """Load the newest complete checkpoint when resuming; return the step to start from (0 when fresh) and the
    steps skipped before it."""
    found = checkpoint_dirs(out) if cfg.resume else []
    if not found:
        if cfg.resume:
            log("resume: no complete checkpoint, starting fresh")
        _truncate_metrics(out, 0, accelerator)
        return 0, 0
    state = read_json(found[-1] / "trainer_state.json")
    _check_resumable(cfg, found[-1], state)  # before any state is loaded
    state = load_checkpoint(accelerator, found[-1])
    _truncate_metrics(out, state["step"], accelerator)
    log(f"resume: {found[-1].name}, continuing at step {state['step']}")
    return int(state["step"]), int(state.get("nonfinite_skipped", 0))


def _truncate_metrics(out: Path, step: int, accelerator: Accelerator) -> None:
    """Drop metrics lines logged after ``step`` (they belong to the interrupted part of a resumed run)."""
    path = out / "metrics.jsonl"
    if accelerator.is_main_process and path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in kept))
    accelerator.wait_for_everyone()


def _log_metrics(run: Run, step: int, window: list[dict[str, torch.Tensor]], extra: dict, seconds: float) -> dict:
    """Average the window's micro-batch metrics over micro-batches and processes; write JSONL and trackers."""
    keys = sorted(window[0])
    stacked = torch.stack([torch.stack([m[k].float() for k in keys]) for m in window]).mean(0)
    reduced = run.accelerator.reduce(stacked.to(run.accelerator.device), reduction="mean").tolist()
    metrics = {"step": step, **dict(zip(keys, reduced, strict=True))}
    metrics |= {k: float(v) for k, v in extra.items()}
    metrics |= {"lr": run.scheduler.get_last_lr()[0], "epoch": step * run.order.global_batch / len(run.data),
                "seconds": round(seconds, 3)}
    _write(run, metrics)
    return metrics


def _log_eval(run: Run, step: int) -> dict[str, float]:
    metrics = evaluate(run, run.eval_data)
    _write(run, {"step": step, **metrics})
    accuracy = {k.split("/")[-1]: round(v, 3) for k, v in metrics.items() if k.startswith("eval/logp_accuracy")}
    run.log(f"eval at step {step}: log-prob preference accuracy {accuracy}")
    return metrics


def _write(run: Run, metrics: dict[str, Any]) -> None:
    if run.accelerator.is_main_process:
        with open(run.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json_line(metrics) + "\n")  # strict JSON: a non-finite value is written as null
    if run.tracker is not None:
        run.tracker.log({k: v for k, v in metrics.items() if k != "step"}, step=metrics["step"])


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def _progress(accelerator: Accelerator) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not accelerator.is_main_process)


def run_train(cfg: TrainConfig) -> int:
    """CLI entry: ``unprior train --config configs/train/napo.yaml out=runs/napo``."""
    run = setup(cfg)
    metrics = train(run)
    run.log(f"final: loss {metrics.get('loss', float('nan')):.4f}")
    return 0
