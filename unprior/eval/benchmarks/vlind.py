"""VLind-Bench: does the model follow an image that contradicts common sense, or its language prior? (Lee et al.,
"VLind-Bench: Measuring Language Priors in Large Vision-Language Models", 2024; ``klee972/VLind-Bench``,
``eval/gpt4o_eval.py`` and ``eval/score_pipeline.py`` at 62bf96e).

Each instance has four tests, each a pair of True/False queries that passes only if the first gets "True" and the
second "False":

- **CK** commonsense knowledge: factual image; ``false_statement`` (true under common sense), then
  ``true_statement``.
- **VP** visual perception: best counterfactual image; "There is {existent_noun} ..." then "{non-existent_noun}".
- **CB** commonsense bias: best counterfactual image; the counterfactual context plus ``true_statement``, then
  ``false_statement``.
- **LP** language prior: *each* good counterfactual image (>= ``vote_threshold`` good votes); ``true_statement`` then
  ``false_statement``.

Pipelined scores (percent): S_CK = CK passes / N; S_VP = VP passes / N; S_CB = (CB and CK) passes / CK passes;
S_LP = sum over instances of (good images passing LP, counted only when VP and CB-with-CK pass) / good images,
divided by the number of instances passing VP and CB-with-CK. Ratios with a zero denominator are 0. The
unconditioned CB and LP accuracies over all N instances are reported too. NaPO reports S_CB and S_LP.

The parser is the reference's: lowercase, newlines to spaces, delete "," and ".", split on spaces; the first token
equal to "true" or "false" decides, else "NA" (which fails the test).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from unprior.config import check_range, fail
from unprior.eval.common import get_field, image_file, load_records, ratio, require_dir
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register

PARSER_VERSION = "vlind-tf-v1"
SCORER_VERSION = "vlind-pipeline-v1"
STYLES = {"all": tuple(str(i) for i in range(12)), "photorealistic": ("0", "1", "2", "3"),
          "illustration": ("4", "5", "6", "7"), "cartoon": ("8", "9", "10", "11")}


def parse_true_false(answer: str) -> str:
    """``"True"``, ``"False"`` or ``"NA"``: the first token that is exactly "true" or "false" after normalising."""
    for word in answer.lower().replace("\n", " ").replace(",", "").replace(".", "").split(" "):
        if word in ("true", "false"):
            return word.capitalize()
    return "NA"


def commonsense_prompt(statement: str) -> str:
    return (f"Statement: {statement}\nBased on the common sense, is the given statement true or false? Only respond "
            "in True or False.")


def image_prompt(statement: str) -> str:
    return (f"Statement: {statement}\nBased on the image, is the given statement true or false? Only respond in True "
            "or False.")


def image_detailed_prompt(statement: str) -> str:
    return (f"Statement: {statement}\nBased on the image, is the given statement true or false? Forget real-world "
            "common sense and just follow the information provided in the image. Only respond in True or False.")


def context_prompt(context: str, statement: str) -> str:
    return (f"Context: {context}\nStatement: {statement}\nBased on the context, is the given statement true or false? "
            "Forget real-world common sense and just follow the information provided in the context. Only respond "
            "in True or False.")


def passed(first: str, second: str) -> bool:
    """A test passes when the first query is answered True and the second False."""
    return first == "True" and second == "False"


def vlind_scores(instances: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pipelined VLind scores from per-instance parsed answers.

    Args:
        instances: One dict per instance with ``ck``, ``vp``, ``cb`` (pairs of parsed answers) and ``lp`` (a list of
            pairs, one per good image).

    Returns:
        ``s_ck, s_vp, s_cb, s_lp, cb_acc, lp_acc`` in percent.
    """
    tot: dict[str, float] = defaultdict(float)
    for inst in instances:
        a, b, c = passed(*inst["ck"]), passed(*inst["vp"]), passed(*inst["cb"])
        c_pass = c and a
        bc_pass = b and c_pass
        d = [passed(*pair) for pair in inst["lp"]]
        tot["a"] += a
        tot["b"] += b
        tot["c"] += c
        tot["c_pass"] += c_pass
        tot["bc_pass"] += bc_pass
        tot["d_macro"] += ratio(sum(d), len(d))
        tot["d_pass_macro"] += ratio(sum(d) if bc_pass else 0, len(d))
    n = len(instances)
    return {
        "s_ck": 100 * ratio(tot["a"], n),
        "s_vp": 100 * ratio(tot["b"], n),
        "s_cb": 100 * ratio(tot["c_pass"], tot["a"]),
        "s_lp": 100 * ratio(tot["d_pass_macro"], tot["bc_pass"]),
        "cb_acc": 100 * ratio(tot["c"], n),
        "lp_acc": 100 * ratio(tot["d_macro"], n),
    }


@dataclass
class VlindOptions:
    data: str = ""
    """VLind-Bench data.json (a JSON list of instances)."""
    image_root: str = ""
    """Folder holding factual/ and counterfactual/ (the dataset's images/ folder)."""
    vote_threshold: int = 2
    """Minimum "good" votes for a counterfactual image to be used (reference --vote_thres)."""
    best_image: Literal["best_img_id", "most_votes"] = "best_img_id"
    """Image for VP and CB: the instance's best_img_id (official) or its most-voted good image (NaPO)."""
    style: Literal["all", "photorealistic", "illustration", "cartoon"] = "all"
    """Restrict counterfactual images to one style (ids 0-3, 4-7, 8-11), as the reference's --style."""

    def validate(self) -> None:
        if not self.data:
            fail("data", "set the path of VLind-Bench data.json")
        if not self.image_root:
            fail("image_root", "set the folder holding factual/ and counterfactual/")
        check_range(self, "vote_threshold", 0)


@register
class VlindBench(Benchmark):
    name = "vlind"
    version = "vlind-v1"
    parser_version = PARSER_VERSION
    scorer_version = SCORER_VERSION
    max_new_tokens = 64
    Options = VlindOptions

    def _good_images(self, inst: dict[str, Any], where: str) -> list[str]:
        votes = get_field(inst, "aggregated_human_label_good_images", where, dict)
        allowed = STYLES[self.options.style]
        return [k for k, v in votes.items() if v >= self.options.vote_threshold and k in allowed]

    def _best(self, inst: dict[str, Any], good: list[str], where: str) -> str:
        if self.options.best_image == "best_img_id":
            return str(get_field(inst, "best_img_id", where, (int, str)))
        votes = inst["aggregated_human_label_good_images"]
        return max(good, key=lambda k: (votes[k], -int(k)))

    def load(self) -> list[Item]:
        root = require_dir(self.options.image_root, "options.image_root (VLind-Bench images)")
        items: list[Item] = []
        for index, (where, inst) in enumerate(load_records(self.options.data, "options.data")):
            good = self._good_images(inst, where)
            if good:
                items += self._instance_items(f"{index:04d}", inst, good, root, where)
        return items

    def _instance_items(self, key: str, inst: dict[str, Any], good: list[str], root: Path, where: str
                        ) -> list[Item]:
        f = {k: get_field(inst, k, where, (str, int)) for k in ("concept", "context_id", "context", "factual_context",
                                                               "true_statement", "false_statement", "existent_noun",
                                                               "non-existent_noun")}
        cf_dir = f"counterfactual/{f['concept']}/{f['context_id']}_{f['context']}"
        factual = image_file(root, f"factual/{f['concept']}/{f['context_id']}_{f['factual_context']}/0.jpg", where,
                             check=False)
        best = image_file(root, f"{cf_dir}/{self._best(inst, good, where)}.jpg", where, check=False)
        t, fs = f["true_statement"], f["false_statement"]
        queries = [
            ("ck1", factual, commonsense_prompt(fs)), ("ck2", factual, commonsense_prompt(t)),
            ("vp1", best, image_prompt(f"There is {f['existent_noun']} in the given image.")),
            ("vp2", best, image_prompt(f"There is {f['non-existent_noun']} in the given image.")),
            ("cb1", best, context_prompt(f["context"], t)), ("cb2", best, context_prompt(f["context"], fs)),
        ]
        for img in good:
            path = image_file(root, f"{cf_dir}/{img}.jpg", where, check=False)
            queries += [(f"lp1/{img}", path, image_detailed_prompt(t)),
                        (f"lp2/{img}", path, image_detailed_prompt(fs))]
        return [Item(f"{key}/{q}", prompt, path, {"instance": key, "query": q}, where=where)
                for q, path, prompt in queries]

    def head(self, items: list[Item], limit: int) -> list[Item]:
        keep = list(dict.fromkeys(it.target["instance"] for it in items))[:limit]
        return [it for it in items if it.target["instance"] in set(keep)]

    def metrics(self) -> list[Metric]:
        return [Metric("s_cb", True, "commonsense bias, pipelined (CB and CK) / CK, percent"),
                Metric("s_lp", True, "language prior, pipelined on VP and CB, percent"),
                Metric("s_ck", True, "commonsense knowledge, percent"),
                Metric("s_vp", True, "visual perception, percent"),
                Metric("cb_acc", True, "CB unconditioned, percent"),
                Metric("lp_acc", True, "LP unconditioned, percent")]

    def parse(self, item: Item, answer: str) -> str:
        return parse_true_false(answer)

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        expected = "True" if item.target["query"].split("/")[0].endswith("1") else "False"
        return {"expected": expected, "correct": parsed == expected}

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        answers: dict[str, dict[str, str]] = defaultdict(dict)
        for it, s in zip(items, scores, strict=True):
            answers[it.target["instance"]][it.target["query"]] = s["parsed"]
        instances = []
        for key, a in answers.items():
            missing = [q for q in ("ck1", "ck2", "vp1", "vp2", "cb1", "cb2") if q not in a]
            if missing:
                raise DataError(f"VLind instance {key}: no answers for {missing} (was the run limited mid-instance?)")
            imgs = sorted({q.split("/")[1] for q in a if q.startswith("lp")}, key=int)
            instances.append({"ck": (a["ck1"], a["ck2"]), "vp": (a["vp1"], a["vp2"]), "cb": (a["cb1"], a["cb2"]),
                              "lp": [(a.get(f"lp1/{i}", "NA"), a.get(f"lp2/{i}", "NA")) for i in imgs]})
        return vlind_scores(instances)

    def provenance(self) -> dict[str, Any]:
        return {"vote_threshold": self.options.vote_threshold, "best_image": self.options.best_image,
                "style": self.options.style, "prompts": "official GPT-4o script (commonsense_TF, simple_TF, "
                "detailed_TF, detailed_TF)"}
