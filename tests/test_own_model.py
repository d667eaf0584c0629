"""docs/own-model.md, executed: every command of its ```bash blocks runs, in order, through ``unprior.cli.main`` on a
tiny model folder of two families and a tiny LLaVA-format dataset, so the walkthrough cannot go stale."""

from __future__ import annotations

import glob
import json
import re
import shlex
import string
from pathlib import Path

import pytest
from score.helpers import png

from unprior.cli import COMMANDS, main

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"
CONFIGS = DOC.parents[1] / "configs"

CAPTIONS = ["A woman stands at a stove next to a red cup.", "A black dog sits on a bench near a bicycle.",
            "A red car and a white truck wait at the light.", "A man holds a cup next to a laptop.",
            "A cat sleeps on a chair beside a blue bus.", "A dog runs after a bicycle in the park.",
            "A white truck is parked behind a red car.", "A man sits on a bench with a black dog."]


def doc_commands(text: str) -> tuple[dict[str, str], list[list[str]]]:
    """The variables the page assigns and its commands (split like a shell would, comments and continuations
    removed), from its ```bash blocks in order."""
    script = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)).replace("\\\n", " ")
    assigned, commands = {}, []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.+", words[0]):
            name, _, value = words[0].partition("=")
            assigned[name] = value
        elif words:
            commands.append(words)
    return assigned, commands


def shell_words(words: list[str], variables: dict[str, str]) -> list[str]:
    """``$VAR`` substituted (an unknown one raises), and a word with ``*`` expanded like a shell glob."""
    out = []
    for word in words:
        word = string.Template(word).substitute(variables)
        out += sorted(glob.glob(word)) or [word] if "*" in word else [word]
    return out


def command_name(argv: list[str]) -> str:
    return next(" ".join(argv[:n]) for n in (2, 1) if " ".join(argv[:n]) in COMMANDS)


def own_data(root: Path) -> dict[str, str]:
    """A LLaVA-format JSON of 8 captioned images, POPE questions and CHAIR rows and ground truth on 2 of them."""
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i, caption in enumerate(CAPTIONS):
        (images / f"img{i}.png").write_bytes(png(i))
        rows.append({"id": f"img{i}", "image": f"img{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": caption}]})
    (root / "train.json").write_text(json.dumps(rows))
    pope = [{"question_id": q, "image": f"img{q // 2}.png", "text": f"Is there a {obj} in the image?",
             "label": "yes" if q % 2 == 0 else "no"} for q, obj in enumerate(["stove", "dog", "bench", "car"])]
    (root / "pope.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pope))
    (root / "chair.jsonl").write_text('{"image": "img0.png"}\n{"image": "img1.png"}\n')
    (root / "objects.json").write_text(json.dumps({"img0.png": ["woman", "oven", "cup"],
                                                   "img1.png": ["dog", "bench", "bicycle"]}))
    return {"DATA": str(root / "train.json"), "IMAGES": str(images), "POPE": str(root / "pope.jsonl"),
            "CHAIR": str(root / "chair.jsonl"), "OBJECTS": str(root / "objects.json")}


def test_the_page_names_its_inputs_once_and_runs_only_unprior():
    assigned, commands = doc_commands(DOC.read_text())
    assert set(assigned) == {"MODEL", "DATA", "IMAGES", "POPE", "CHAIR", "OBJECTS"}
    assert [command_name(c[1:]) for c in commands] == ["pairs", "score", "train", *["eval run"] * 4, "eval compare"]
    assert all(c[0] == "unprior" for c in commands)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_walkthrough_runs_on_a_tiny_model_folder(family, family_model, tmp_path, monkeypatch, capsys):
    variables = {"MODEL": str(family_model(family)), **own_data(tmp_path / "data")}
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(CONFIGS)  # the page's --config paths are the repository's
    monkeypatch.chdir(work)
    for words in doc_commands(DOC.read_text())[1]:
        argv = shell_words(words[1:], variables)  # as written, only the variables' paths put in
        code = main(argv)
        assert code == 0, f"unprior {' '.join(argv)} exited {code}:\n{capsys.readouterr().err}"
    base = Path(variables["MODEL"]).name
    assert (work / "runs/mine/bpo/model/adapter_config.json").is_file()
    for run in ("base-pope", "bpo-pope", "base-chair", "bpo-chair"):
        results = json.loads((work / "runs/mine/eval" / run / "results.json").read_text())
        assert results["model"]["label"] == ("bpo" if run.startswith("bpo") else base)
    lines = capsys.readouterr().out.splitlines()
    header = max(i for i, line in enumerate(lines) if "chair: chair_s" in line and "pope: mean_f1" in line)
    assert sorted(line.split()[0] for line in lines[header + 2:header + 4]) == sorted([base, "bpo"])
    assert (work / "runs/mine/compare.png").is_file()
