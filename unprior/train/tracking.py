"""Metric trackers for ``report_to``: TensorBoard event files or Weights & Biases, written by the main process only.

Neither package is a dependency: ``tensorboard`` is the optional extra ``unprior[tensorboard]`` (pinned), ``wandb``
is not pinned at all (``pip install wandb``; it logs to the account ``wandb login`` set up, or offline with
``WANDB_MODE=offline``). Asking for a tracker whose package is missing fails at the start of ``setup`` with the
command that installs it, before any model is loaded.

TensorBoard: one scalar per metric, tagged with the metric's name (``loss``, ``rewards/margins/<kind>``,
``eval/logp_accuracy/<kind>``, ...), at the optimizer step, in ``out/tensorboard``; the resolved config goes in as
text. A resumed run purges the events logged after its checkpoint, as metrics.jsonl does.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Protocol

INSTALL = {
    "tensorboard": "pip install 'unprior[tensorboard]' (or pip install tensorboard)",
    "wandb": "pip install wandb",
}


class Tracker(Protocol):
    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def check_available(report_to: str) -> None:
    """Raise ImportError naming the install command when ``report_to``'s package is missing."""
    if report_to == "none":
        return
    if report_to not in INSTALL:
        raise ValueError(f"unknown report_to {report_to!r}; use none, tensorboard or wandb")
    if importlib.util.find_spec(report_to) is None:
        raise ImportError(f"report_to={report_to} needs the {report_to} package, which is not installed: "
                          f"{INSTALL[report_to]}")


class TensorBoardTracker:
    """Scalars to ``log_dir`` through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, log_dir: Path, config_text: str, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch raises ImportError when the tensorboard package is missing
            raise ImportError(f"report_to=tensorboard needs the tensorboard package: {INSTALL['tensorboard']}") from e
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self.writer.add_text("config", f"```\n{config_text}\n```", global_step=0)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """Metrics to a Weights & Biases run (project ``unprior``, files under ``out``)."""

    def __init__(self, out: Path, config: dict[str, Any], resume: bool) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError(f"report_to=wandb needs the wandb package: {INSTALL['wandb']}") from e
        self.run = wandb.init(project="unprior", dir=str(out), config=config, name=out.name,
                              resume="allow" if resume else None)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


def make_tracker(report_to: str, out: Path, config: dict[str, Any], config_text: str,
                 start_step: int) -> Tracker | None:
    """The tracker ``report_to`` names (None for ``none``); ``start_step`` > 0 when resuming."""
    if report_to == "none":
        return None
    if report_to == "tensorboard":
        return TensorBoardTracker(out / "tensorboard", config_text, purge_step=start_step + 1)
    if report_to == "wandb":
        return WandbTracker(out, config, resume=start_step > 0)
    raise ValueError(f"unknown report_to {report_to!r}")
