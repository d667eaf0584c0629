"""Rewrite a study's summary from the unit results it has so far (a study stopped before its last unit writes none):

    python experiments/summarise.py experiments/pretrained_vision.yaml [--control-dir DIR]

``--control-dir`` adds control results written outside the study (``control<steps>-s<seed>.json``, e.g. a
ceiling trained with more SFT steps for a seed whose study control did not learn to read the image); they replace
that seed's control.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unprior.config import load_config
from unprior.study import StudyConfig, load_results, write_summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--control-dir", type=Path)
    args = ap.parse_args()
    cfg = load_config(StudyConfig, args.config, [])
    results = load_results(cfg.out)
    if args.control_dir:
        extra = [json.loads(p.read_text()) for p in sorted(args.control_dir.glob("control*-s*.json"))]
        seeds = {r["seed"] for r in extra}
        results = [r for r in results if not (r["arm"] == "control" and r["seed"] in seeds)] + extra
    summary = write_summary(cfg, results, Path(cfg.out))
    print(f"{len(results)} unit results -> {Path(cfg.out) / 'summary.md'}; arms: {len(summary['arms'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
