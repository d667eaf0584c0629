"""Retrain one study seed's no-prior control (the visual ceiling) with more SFT steps, for a seed whose study
control did not learn to read the image in the study's SFT budget:

    UNPRIOR_CACHE=... .venv/bin/python experiments/study_control.py experiments/pretrained_vision.yaml SEED STEPS

Writes ``<study out>/controls/control<STEPS>-s<SEED>.json`` (one unit result, as the study's own); pass that folder
to ``experiments/summarise.py --control-dir`` and it replaces the seed's control. One torch thread; the base cache
is shared with the study (same world, tower and language side, only ``demo.base.sft_steps`` differs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from unprior.config import load_config
from unprior.io import write_json
from unprior.study import StudyConfig
from unprior.study.grid import Unit, prepare_control, run_unit
from unprior.world.build import world_dir_for


def main(argv: list[str]) -> int:
    config, seed, steps = argv[1], int(argv[2]), int(argv[3])
    cfg = load_config(StudyConfig, config, [f"demo.base.sft_steps={steps}", "threads=1"])
    model = prepare_control(cfg, seed)
    out = Path(cfg.out) / "controls"
    name = f"control{steps}-s{seed}"
    result = run_unit(Unit(name, "control", seed, str(world_dir_for(cfg.demo.base.world)), model, threads=1),
                      str(out / "logs"))
    write_json(out / f"{name}.json", result)
    print(f"{name}: ID {result['metrics']['id']:.3f} CF {result['metrics']['cf']:.3f} "
          f"frontier {result['metrics']['frontier']:.3f} -> {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
