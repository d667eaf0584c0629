"""The pipeline at real model sizes: ``unprior pairs``, ``score``, ``train`` and ``eval run`` on a random-weight model
of SmolVLM-256M-Instruct's (image splitting on and off) or Qwen2-VL-2B-Instruct's exact architecture
(bench/real_models.py), on varied photos.

    nice -n 19 .venv/bin/python bench/real_sizes.py --images 16 --splitting off
    nice -n 19 .venv/bin/python bench/real_sizes.py --images 4 --splitting on --stages pairs \\
        --set generator.max_batch_tokens=0          # before: batch_size rows per generate call
    nice -n 19 .venv/bin/python bench/real_sizes.py --images 16 --stages train --name full \\
        --stage-set train:lora.enabled=false        # full fine-tuning (any stage: STAGE:key=value)
    nice -n 19 .venv/bin/python bench/real_sizes.py --model qwen2-vl-2b --images 4   # bf16 weights

Each stage runs in its own process (``python -m unprior ...``); its wall time and peak RSS (``os.wait4``'s
``ru_maxrss``) are printed as one table row, with the image tokens per row and the prompt lengths of the pairs
prompts. The photos are matplotlib's sample images, cropped, flipped and resized to 640x480 .. 1024x768 with PIL
(seeded). Results: docs/pairs.md, "Real sizes".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

SIZES = [(640, 480), (800, 600), (1024, 768), (768, 1024), (720, 540), (960, 720)]
QUESTIONS = [("Is there a person in the image?", "Yes, there is a person."),
             ("Describe the image.", "A person in a dark uniform stands in front of a plain background."),
             ("What colour is the background?", "The background is blue.")]


def photos(n: int, seed: int = 0) -> list:
    """``n`` varied photos from matplotlib's sample data: a crop, maybe a flip, a resize to one of ``SIZES``."""
    import matplotlib
    import numpy as np
    from PIL import Image, ImageOps

    data = Path(matplotlib.get_data_path()) / "sample_data"
    sources = [Image.open(data / "grace_hopper.jpg").convert("RGB"),
               Image.open(data / "Minduka_Present_Blue_Pack.png").convert("RGB")]
    dem = np.load(data / "topobathy.npz")["topo"]
    dem = ((dem - dem.min()) / (np.ptp(dem) + 1e-9) * 255).astype("uint8")
    sources.append(Image.fromarray(np.stack([dem, 255 - dem, dem // 2], -1)))
    rng = random.Random(seed)
    out = []
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        left, top = rng.randint(0, w // 5), rng.randint(0, h // 5)
        im = im.crop((left, top, w - rng.randint(0, w // 5), h - rng.randint(0, h // 5)))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        out.append(im.resize(SIZES[i % len(SIZES)]))
    return out


def write_data(root: Path, n: int) -> None:
    """A LLaVA JSON of ``n`` photos (one question each) and a POPE question file over the same photos."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, pope = [], []
    for i, im in enumerate(photos(n)):
        name = f"photo{i:02d}.jpg"
        im.save(root / "images" / name, quality=90)
        q, a = QUESTIONS[i % len(QUESTIONS)]
        rows.append({"id": f"p{i}", "image": name, "conversations": [
            {"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]})
        pope.append({"question_id": i, "image": name, "text": "Is there a person in the image?",
                     "label": "yes" if i % 3 == 0 else "no"})
    (root / "data.json").write_text(json.dumps(rows))
    (root / "pope.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pope))


def build_model(out: Path, kind: str, splitting: bool) -> None:
    from real_models import build_qwen2_vl_2b, build_smolvlm_256m

    from unprior.models.tiny import save_model

    if not (out / "config.json").is_file():
        if kind == "qwen2-vl-2b":
            model, processor = build_qwen2_vl_2b()
        else:
            model, processor = build_smolvlm_256m(splitting=splitting)
        save_model(model, processor, out)


def shapes(model_dir: Path, data: Path) -> dict:
    """Image tokens per row and prompt lengths (tokens, image tokens included) of the pairs prompts."""
    from PIL import Image

    from unprior.models.families import load_processor
    from unprior.models.generate import Prompt, row_shapes

    processor = load_processor(model_dir)
    rows = json.loads((data / "data.json").read_text())
    prompts = [Prompt(r["conversations"][0]["value"].replace("<image>\n", ""),
                      Image.open(data / "images" / r["image"]).convert("RGB")) for r in rows]
    image_token = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>"))
    got = row_shapes(processor, prompts, image_token)
    return {"image_tokens": sorted({s.image for s in got}), "prompt": [min(s.prompt for s in got),
                                                                        max(s.prompt for s in got)]}


def stage(name: str, args: list[str], log: Path) -> dict:
    """Run ``python -m unprior ARGS`` in its own process: wall seconds and peak RSS of that process."""
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "unprior", *args], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    return {"stage": name, "seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "rc": rc}


def commands(model: Path, data: Path, run: Path, new_tokens: int, extra: list[str], pairs: Path | None = None
             ) -> dict[str, list[str]]:
    pairs = pairs or run / "pairs"
    return {
        "pairs": ["pairs", f"source={data / 'data.json'}", f"load.image_root={data / 'images'}", f"out={pairs}",
                  "overwrite=true", "progress=false",
                  "strategies=[image_weakening,rules,language_bias,vision_bias]", f"generator.model={model}",
                  *(f"{s}.decoding.max_new_tokens={new_tokens}" for s in
                    ("image_weakening", "language_bias", "vision_bias")), *extra],
        "score": ["score", f"model={model}", f"pairs={pairs}", f"out={run / 'noise'}",
                  f"reference_dir={run / 'reference'}"],
        "train": ["train", "--config", "configs/train/napo.yaml", f"model={model}", f"pairs={pairs}",
                  f"out={run / 'train'}", "batch_size=2", "steps=2", f"reference_dir={run / 'reference'}"],
        "eval": ["eval", "run", "benchmark=pope", f"model={model}", f"out={run / 'eval'}",
                 f"options.questions.random={data / 'pope.jsonl'}", f"options.image_root={data / 'images'}"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--splitting", choices=["on", "off"], default="off")
    ap.add_argument("--stages", default="pairs,score,train,eval")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--root", default="build/real_sizes")
    ap.add_argument("--set", action="append", default=[], help="extra key=value for unprior pairs")
    ap.add_argument("--stage-set", action="append", default=[], metavar="STAGE:KEY=VALUE",
                    help="extra key=value for one stage, e.g. train:lora.enabled=false or train:dtype=bfloat16")
    ap.add_argument("--model", choices=["smolvlm-256m", "qwen2-vl-2b"], default="smolvlm-256m")
    ap.add_argument("--name", default="",
                    help="suffix of the run folder (a variant reusing the plain run's pairs)")
    ap.add_argument("--json", default="", help="append the rows to this JSON-lines file")
    args = ap.parse_args(argv)

    root = Path(args.root)
    data = root / f"data-{args.images}"
    if not (data / "data.json").is_file():
        write_data(data, args.images)
    qwen = args.model == "qwen2-vl-2b"
    model = root / ("qwen2-vl-2b" if qwen else f"smolvlm-256m-split-{args.splitting}")
    build_model(model, args.model, args.splitting == "on")
    base = root / (f"run-qwen2-vl-2b-{args.images}" if qwen else f"run-{args.splitting}-{args.images}")
    run = base.with_name(f"{base.name}-{args.name}") if args.name else base
    run.mkdir(parents=True, exist_ok=True)
    info = {"model": args.model, "images": args.images, "splitting": "-" if qwen else args.splitting,
            **shapes(model, data), "set": args.set + args.stage_set, "name": args.name}
    print(json.dumps(info), flush=True)
    cmds = commands(model, data, run, args.max_new_tokens, args.set, pairs=base / "pairs")
    for item in args.stage_set:
        name, _, setting = item.partition(":")
        cmds[name].append(setting)
    for name in args.stages.split(","):
        row = {**info, **stage(name, cmds[name], run / f"{name}.log")}
        print(f"{name:>6}: {row['seconds']:8.1f} s  peak RSS {row['peak_rss_gb']:5.2f} GB  rc {row['rc']}", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
