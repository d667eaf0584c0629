"""POPE: polling-based object probing (Li et al., "Evaluating Object Hallucination in Large Vision-Language Models",
EMNLP 2023).

Yes/no questions "Is there a {object} in the image?" over COCO val2014 images, in three splits that differ only in
how absent objects are sampled (random / popular / adversarial). The parser is the official one
(``RUCAIBox/POPE:evaluate.py``, identical to LLaVA's ``llava/eval/eval_pope.py``): keep the text before the first
".", delete commas, split on single spaces; any token ``No``, ``not`` or ``no`` makes the answer "no", everything
else (empty and off-topic answers included) is "yes". ``parser="exact"`` reproduces lmms-eval's exact-match rule
instead, as a compatibility option; the yes-ratio is always the share of *predicted* "yes" (lmms-eval computes it from
the labels, which is a bug).

Data: the question files (JSONL despite the ``.json`` extension; fields ``question_id, image, text, label``) and the
COCO val2014 images, both supplied by the user. Note that the random split of the older POPE commit e3e3926 (used
for LLaVA-1.5) has 2910 questions, the current one 3000.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from unprior.answers import parse_pope, parse_pope_exact
from unprior.config import fail
from unprior.eval.common import get_field, image_file, load_records, ratio, require_dir
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register

PARSER_VERSION = "pope-original-v1"
EXACT_PARSER_VERSION = "pope-exact-v1"
SCORER_VERSION = "pope-v1"
LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."


def pope_metrics(preds: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio (percent), "yes" being the positive class.

    A None prediction (exact parser, unparsable answer) counts as wrong and is neither a positive nor a negative.
    """
    pairs = list(zip(preds, labels, strict=True))
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": 100 * ratio(tp + tn, len(pairs)),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * ratio(2 * precision * recall, precision + recall),
        "yes_ratio": 100 * ratio(sum(p == "yes" for p in preds), len(pairs)),
    }


@dataclass
class PopeOptions:
    questions: dict[str, str] = field(default_factory=dict)
    """Split name -> question file, e.g. {random: .../coco_pope_random.json, popular: ..., adversarial: ...}."""
    image_root: str = ""
    """Directory holding the COCO val2014 images named in the question files."""
    parser: Literal["pope_original", "exact"] = "pope_original"
    """pope_original: the official first-sentence no/not rule; exact: lmms-eval's exact match (compatibility)."""
    prompt_suffix: str = LLAVA_SUFFIX
    """Appended to each question (LLaVA-1.5 and lmms-eval convention); set "" for the bare question."""

    def validate(self) -> None:
        if not self.questions:
            fail("questions", "give at least one split, e.g. {random: path/to/coco_pope_random.json}")
        if not self.image_root:
            fail("image_root", "set the directory of the COCO val2014 images")


@register
class Pope(Benchmark):
    name = "pope"
    version = "pope-v1"
    parser_version = PARSER_VERSION
    scorer_version = SCORER_VERSION
    max_new_tokens = 16
    Options = PopeOptions

    def build_prompt(self, row: dict[str, Any]) -> str:
        return str(row["text"]) + self.options.prompt_suffix

    def load(self) -> list[Item]:
        root = require_dir(self.options.image_root, "options.image_root (COCO val2014 images)")
        items: list[Item] = []
        for split, path in self.options.questions.items():
            seen: set[str] = set()
            for where, row in load_records(path, f"options.questions.{split}"):
                qid = str(get_field(row, "question_id", where, (int, str)))
                get_field(row, "text", where, str)
                label = get_field(row, "label", where, str)
                if label not in ("yes", "no"):
                    raise DataError(f"{where}: field 'label' should be 'yes' or 'no', got {label!r}")
                if qid in seen:
                    raise DataError(f"{where}: duplicate question_id {qid}")
                seen.add(qid)
                image = image_file(root, get_field(row, "image", where, str), where, check=False)
                items.append(Item(f"{split}/{qid}", self.build_prompt(row), image, {"split": split, "label": label},
                                  where=where))
        return items

    def head(self, items: list[Item], limit: int) -> list[Item]:
        """The first ``limit`` questions of *each* split, so every split's metrics and ``mean_f1`` stay defined."""
        taken: Counter[str] = Counter()
        out = []
        for item in items:
            split = item.target["split"]
            if taken[split] < limit:
                taken[split] += 1
                out.append(item)
        return out

    def metrics(self) -> list[Metric]:
        names = {"accuracy": True, "precision": True, "recall": True, "f1": True, "yes_ratio": None}
        out = [Metric(f"{s}/{n}", hib, f"{n} on the {s} split, percent") for s in self.options.questions
               for n, hib in names.items()]
        return [*out, Metric("mean_f1", True, "mean F1 over the splits that ran (LLaVA's single POPE number; "
                                               "provenance.mean_f1_splits names them), percent")]

    def headline(self) -> list[str]:
        return [*(f"{s}/f1" for s in self.options.questions), "mean_f1"]

    def parse(self, item: Item, answer: str) -> str | None:
        return parse_pope(answer) if self.options.parser == "pope_original" else parse_pope_exact(answer)

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        return {"label": item.target["label"], "correct": parsed == item.target["label"]}

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        f1s = []
        self._counts: dict[str, int] = {}
        for split in self.options.questions:
            rows = [s for it, s in zip(items, scores, strict=True) if it.target["split"] == split]
            self._counts[split] = len(rows)
            if not rows:
                continue
            m = pope_metrics([r["parsed"] for r in rows], [r["label"] for r in rows])
            out.update({f"{split}/{k}": v for k, v in m.items()})
            f1s.append(m["f1"])
        if f1s:
            out["mean_f1"] = sum(f1s) / len(f1s)
        return out

    def provenance(self) -> dict[str, Any]:
        exact = self.options.parser == "exact"
        counts = getattr(self, "_counts", {})
        return {"parser": self.options.parser, "parser_version": EXACT_PARSER_VERSION if exact else PARSER_VERSION,
                "yes_ratio_from": "predictions", "items_per_split": counts,
                "mean_f1_splits": [s for s, n in counts.items() if n]}
