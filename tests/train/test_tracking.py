"""``report_to``: TensorBoard event files with one scalar tag per metric at the optimizer steps; a missing tracker
package fails before anything is loaded, naming the command that installs it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from unprior.train import tracking
from unprior.train.trainer import setup, train

from .helpers import config, reset_accelerate


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_event_files_hold_every_metric(family_model, train_pairs, eval_pairs, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    cfg = config(family_model("llava"), train_pairs, out, eval_pairs=str(eval_pairs), steps=3,
                 report_to="tensorboard", save_every=2)
    train(setup(cfg))
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    logged = scalars(out / "tensorboard")
    for kind in ("error_injection", "language_bias", "vision_bias"):
        for key in ("loss", "rewards/margins", "accuracy", "gamma"):
            assert [step for step, _ in logged[f"{key}/{kind}"]] == [1, 2, 3]
        assert [step for step, _ in logged[f"eval/logp_accuracy/{kind}"]] == [0, 3]
    for key in ("loss", "loss/sft", "q/language_bias", "grad_norm", "lr", "epoch", "seconds"):
        assert [step for step, _ in logged[key]] == [1, 2, 3]
    jsonl = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [value for _, value in logged["loss"]] == pytest.approx([json.loads(line)["loss"] for line in jsonl])

    # Resuming from the step-2 checkpoint purges the later events, as metrics.jsonl drops its later lines.
    reset_accelerate()
    train(setup(config(family_model("llava"), train_pairs, out, eval_pairs=str(eval_pairs), steps=3,
                       report_to="tensorboard", save_every=2, resume=True)))
    assert [step for step, _ in scalars(out / "tensorboard")["loss"]] == [1, 2, 3]


def test_missing_tracker_packages_fail_early_with_the_install_command(family_model, train_pairs, tmp_path,
                                                                      monkeypatch):
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ImportError, match="pip install wandb"):
            setup(config(family_model("llava"), train_pairs, tmp_path / "w", report_to="wandb"))
        assert not (tmp_path / "w").exists()  # refused before the output directory or any model
    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else real(name, *a))
    with pytest.raises(ImportError, match=r"unprior\[tensorboard\]"):
        setup(config(family_model("llava"), train_pairs, tmp_path / "t", report_to="tensorboard"))
