"""A NaN never reaches the weights: a non-finite loss or gradient norm stops the run (exit 1, naming the step and
its rows, the checkpoints kept, no final model) or, with ``nonfinite=skip``, skips the batch; metrics.jsonl stays
strict JSON. Resume survives a moved run directory and names the fields that differ."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from unprior.cli import main
from unprior.config import dump_yaml
from unprior.io import InputError
from unprior.train import trainer as trainer_module
from unprior.train.checkpoint import checkpoint_dirs
from unprior.train.trainer import setup, train

from .helpers import config, losses, metrics, reset_accelerate


def _strict_lines(path) -> list[dict]:
    def refuse(token: str):
        raise ValueError(f"bare {token} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _poison(monkeypatch, calls: set[int], row: int = 1) -> None:
    """Make row ``row`` of the micro-batches numbered ``calls`` (1-based, counting every forward) have a NaN loss."""
    real, seen = trainer_module._objective, []

    def poisoned(run, batch):
        out = real(run, batch)
        seen.append(1)
        if len(seen) in calls:
            mask = torch.zeros_like(out.losses)
            mask[row] = float("nan")
            out = dataclasses.replace(out, losses=out.losses + mask)
        return out

    monkeypatch.setattr(trainer_module, "_objective", poisoned)


def test_a_nan_loss_stops_the_run_naming_the_step_and_rows(family_model, train_pairs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    cfg = config(family_model("llava"), train_pairs, out, steps=6, save_every=2, keep_checkpoints=0)
    dump_yaml(cfg, tmp_path / "train.yaml")
    _poison(monkeypatch, {5})
    assert main(["train", "--config", str(tmp_path / "train.yaml")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    run = setup(cfg.__class__(**{**cfg.__dict__, "resume": True}))  # to name the rows the error should name
    bad_id = run.data.pairs[run.data.rows[run.order.micro_rows(4, 0, 0)[1]]].id
    reset_accelerate()
    assert "NonFiniteError: step 5: non-finite loss in rows " + bad_id in err, err
    assert "step-0000004" in err and "no final model was saved" in err
    assert [p.name for p in checkpoint_dirs(out)] == ["step-0000002", "step-0000004"]
    assert not (out / "model").exists()
    assert [m["step"] for m in _strict_lines(out / "metrics.jsonl") if "loss" in m] == [1, 2, 3, 4]
    for name, tensor in load_file(checkpoint_dirs(out)[-1] / "model.safetensors").items():
        assert torch.isfinite(tensor).all(), name

    # The same run resumed with nonfinite=skip: the bad batch is skipped and counted, the rest trains.
    monkeypatch.undo()
    _poison(monkeypatch, {1})  # the first forward after resuming is step 5's
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "resume=true", "nonfinite=skip"]) == 0
    logged = _strict_lines(out / "metrics.jsonl")
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3, 4, 6]
    assert logged[-1]["nonfinite_skipped"] == 1
    assert json.loads((out / "model" / "train_state.json").read_text())["nonfinite_skipped"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(out / "model" / "adapter_model.safetensors").values())


def test_a_nonfinite_gradient_norm_is_skipped_and_metrics_stay_json(family_model, train_pairs, tmp_path, monkeypatch):
    real, steps = trainer_module._grad_clipper, []

    def clipper(run):
        clip = real(run)

        def wrapped():
            steps.append(1)
            norm = clip()
            return torch.tensor(float("inf")) if len(steps) == 2 else norm

        return wrapped

    monkeypatch.setattr(trainer_module, "_grad_clipper", clipper)
    out = tmp_path / "run"
    run = setup(config(family_model("llava"), train_pairs, out, steps=3, nonfinite="skip"))
    before = {n: p.detach().clone() for n, p in run.scorer.named_parameters() if p.requires_grad}
    trainer_module._write(run, {"step": 0, "eval/margin/x": float("nan"), "other": float("inf")})
    train(run)
    logged = _strict_lines(out / "metrics.jsonl")
    assert logged[0] == {"step": 0, "eval/margin/x": None, "other": None}
    assert [m["step"] for m in logged if "loss" in m] == [1, 3]
    assert logged[-1]["nonfinite_skipped"] == 1
    after = dict(run.accelerator.unwrap_model(run.scorer).named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # steps 1 and 3 trained
    assert all(torch.isfinite(p).all() for p in after.values())


def test_resume_survives_a_moved_run_directory(family_model, train_pairs, tmp_path):
    kw = dict(steps=4, save_every=2, reference_dir=str(tmp_path / "reference"))
    first = tmp_path / "a" / "run"
    train(setup(config(family_model("llava"), train_pairs, first, **kw)))
    reset_accelerate()
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    run = setup(config(family_model("llava"), train_pairs, moved, resume=True, **kw))
    assert run.start_step == 2
    train(run)
    assert [s for s, _ in losses(moved)] == [1, 2, 3, 4]
    whole = tmp_path / "whole"
    reset_accelerate()
    train(setup(config(family_model("llava"), train_pairs, whole, **kw)))
    assert losses(moved) == losses(whole)


def test_resume_with_another_config_names_the_fields(family_model, train_pairs, tmp_path):
    from unprior.train.config import LoraSettings

    out = tmp_path / "run"
    train(setup(config(family_model("llava"), train_pairs, out, steps=3, save_every=2)))
    reset_accelerate()
    changed = config(family_model("llava"), train_pairs, out, steps=3, resume=True, lr=2e-3,
                     lora=LoraSettings(r=16, alpha=16, dropout=0.0))
    with pytest.raises(InputError) as e:
        setup(changed)
    message = str(e.value)
    assert "step-0000002 was written with a different config" in message
    assert "lora.r: 8 -> 16" in message and "lr: 0.001 -> 0.002" in message
    assert "steps:" not in message and "out" not in message.split("(")[1].split(")")[0]
    assert metrics(out)  # nothing was touched
