"""MMHal-Bench: hallucination in open-ended visual questions, rated 0-6 by an LLM judge (Sun et al., "Aligning Large
Multimodal Models with Factually Augmented RLHF", 2023; scoring as ``RLHF-V/RLAIF-V:eval/eval_gpt_mmhal.py`` and
``summarize_gpt_mmhal_review.py``).

96 questions on OpenImages images, 12 for each of 8 question types. The model gets the raw question. The judge sees
the image's object labels, the question, the human answer and the model's answer, and rates 0-6 (6-4: informative
to varying degrees without hallucination, 3: uninformative without hallucination, 2-0: with hallucination).

Parser (reference): for s in 0..6 look for ``"rating: s"`` in the lowercased judge output; exactly one match is the
rating, anything else rates 0 (and is flagged in ``samples.jsonl``). Metrics: mean rating, hallucination rate =
share of ratings below 3 (a fraction, as NaPO's table), RLAIF-V's informativeness, and the mean per question type.

Judge prompt: unprior ships its own wording of the rubric (``data/mmhal_judge_prompt.txt``, version
``unprior-mmhal-v1``, without the reference's worked examples), because the reference prompt text belongs to other
projects. Scores are therefore not directly comparable with published ones; for those, put the reference prompt in a
file with ``$image_content``, ``$question``, ``$gt_answer`` and ``$response`` placeholders and pass it as
``judge_prompt``. The judge model matters as much (LLaVA-1.5-7B is reported between 2.07 and 2.36).
"""

from __future__ import annotations

import hashlib
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.progress import Progress

from unprior.config import fail
from unprior.eval.common import get_field, image_file, load_records, ratio, require_dir, require_file
from unprior.eval.judge import Judge, JudgeConfig
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register

PARSER_VERSION = "mmhal-rating-v1"
SCORER_VERSION = "mmhal-v1"
PROMPT_VERSION = "unprior-mmhal-v1"
TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other")


def parse_rating(judge_output: str) -> int | None:
    """The reference rule: the single s in 0..6 with "rating: s" in the lowercased output, else None (scored 0)."""
    low = judge_output.lower()
    found = [s for s in range(7) if f"rating: {s}" in low]
    return found[0] if len(found) == 1 else None


def mmhal_metrics(ratings: Sequence[int], types: Sequence[str]) -> dict[str, float]:
    """Mean rating, hallucination rate (share < 3), informativeness (percent) and per-type mean ratings."""
    out = {
        "score": ratio(sum(ratings), len(ratings)),
        "hallucination_rate": ratio(sum(r < 3 for r in ratings), len(ratings)),
        "informativeness": 100 * ratio(sum(r - 3 if r >= 3 else r for r in ratings), len(ratings)) / 3,
    }
    by_type: dict[str, list[int]] = defaultdict(list)
    for r, t in zip(ratings, types, strict=True):
        by_type[t].append(r)
    out |= {f"type/{t}": ratio(sum(v), len(v)) for t, v in sorted(by_type.items())}
    return out


@dataclass
class MmhalOptions:
    template: str = ""
    """MMHal-Bench response template JSON (96 records: question_type, image_src, image_content, question,
    gt_answer, ...)."""
    image_root: str = ""
    """Directory of the images, each named as the last path component of its record's image_src URL."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The judge endpoint and model."""
    judge_prompt: str = ""
    """Optional judge prompt file with $image_content, $question, $gt_answer, $response placeholders (default:
    unprior's own rubric wording)."""

    def validate(self) -> None:
        if not self.template:
            fail("template", "set the MMHal-Bench template JSON (response_template.json)")
        if not self.image_root:
            fail("image_root", "set the directory of the MMHal-Bench images")


@register
class MmhalBench(Benchmark):
    name = "mmhal"
    version = "mmhal-v1"
    parser_version = PARSER_VERSION
    scorer_version = SCORER_VERSION
    max_new_tokens = 1024
    Options = MmhalOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.prompt_template = self._read_prompt()
        self.judge: Judge | None = None

    def _read_prompt(self) -> string.Template:
        if self.options.judge_prompt:
            text = require_file(self.options.judge_prompt, "options.judge_prompt").read_text(encoding="utf-8")
        else:
            text = resources.files("unprior.eval").joinpath("data/mmhal_judge_prompt.txt").read_text("utf-8")
        missing = [k for k in ("image_content", "question", "gt_answer", "response") if f"${k}" not in text]
        if missing:
            raise DataError(f"judge prompt {self.options.judge_prompt or 'built-in'}: no placeholder for {missing}")
        return string.Template(text)

    def build_prompt(self, record: dict[str, Any]) -> str:
        return str(record["question"])

    def load(self) -> list[Item]:
        root = require_dir(self.options.image_root, "options.image_root (MMHal-Bench images)")
        items = []
        for index, (where, rec) in enumerate(load_records(self.options.template, "options.template")):
            for key in ("question_type", "question", "gt_answer"):
                get_field(rec, key, where, str)
            content = get_field(rec, "image_content", where, list)
            name = Path(urlparse(get_field(rec, "image_src", where, str)).path).name
            target = {"question_type": rec["question_type"], "image_content": content, "question": rec["question"],
                      "gt_answer": rec["gt_answer"]}
            items.append(Item(f"{index:03d}", self.build_prompt(rec), image_file(root, name, where, check=False),
                              target, where=where))
        return items

    def judge_prompt(self, item: Item, answer: str) -> str:
        t = item.target
        return self.prompt_template.substitute(image_content=", ".join(t["image_content"]), question=t["question"],
                                               gt_answer=t["gt_answer"], response=answer)

    def metrics(self) -> list[Metric]:
        return [Metric("score", True, "mean judge rating, 0-6", digits=2),
                Metric("hallucination_rate", False, "share of ratings below 3 (0-1)", digits=2),
                Metric("informativeness", True, "RLAIF-V informativeness, percent"),
                *[Metric(f"type/{t}", True, f"mean rating, {t} questions", digits=2) for t in TYPES]]

    def headline(self) -> list[str]:
        return ["score", "hallucination_rate"]

    def parse(self, item: Item, answer: str) -> int | None:
        return parse_rating(answer)

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        return {"rating": 0 if parsed is None else parsed, "rating_found": parsed is not None,
                "question_type": item.target["question_type"]}

    def score_all(self, items: Sequence[Item], answers: Sequence[str], workdir: Path) -> list[dict[str, Any]]:
        """Ask the judge about every answer (cached in ``workdir/judge_cache.jsonl``), then parse its ratings."""
        self.judge = Judge(self.options.judge, workdir / "judge_cache.jsonl")
        scores = []
        with Progress(transient=True) as progress:
            task = progress.add_task(f"judging with {self.options.judge.model}", total=len(items))
            for item, answer in zip(items, answers, strict=True):
                output = self.judge.ask(self.judge_prompt(item, answer))
                parsed = self.parse(item, output)
                scores.append({"parsed": parsed, **self.score(item, parsed), "judge_output": output})
                progress.advance(task)
        return scores

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        return mmhal_metrics([s["rating"] for s in scores], [s["question_type"] for s in scores])

    def provenance(self) -> dict[str, Any]:
        text = self.prompt_template.template
        out: dict[str, Any] = {
            "judge_model": self.options.judge.model, "judge_base_url": self.options.judge.base_url,
            "judge_prompt": PROMPT_VERSION if not self.options.judge_prompt else "user file",
            "judge_prompt_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        }
        if self.judge is not None:
            models = sorted({r.get("response_model", "") for r in self.judge.cache.values()} - {""})
            out["judge_response_models"] = models
        return out
