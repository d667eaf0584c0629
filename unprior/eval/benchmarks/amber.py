"""AMBER: an LLM-free multi-dimensional hallucination benchmark (Wang et al., 2023; ``junyangwang0410/AMBER``,
``inference.py`` at 534babf).

**Discriminative** (ids 1005-15220): yes/no questions on existence, attributes (state, number, action) and
relations. The reference accepts an answer only if it is exactly ``"Yes"`` or ``"No"``; "No" is the positive
class; every counter starts at 0.001 (``data/metrics.txt``); precision and recall are rounded to 0.1 % *before* F1,
which adds 1e-4 to its denominator (1e-3 for existence). All of this is reproduced exactly. ``answers="normalized"``
is lmms-eval's looser rule ("yes" anywhere, else "no" anywhere) as a labelled compatibility option.

**Generative** (ids 1-1004, "Describe this image."): the nouns of each description that are in the hallucination
vocabulary (keys and values of ``relation.json``) are matched against the image's ``truth`` and ``hallu`` objects
and their associated words, in the reference's order (global safe words, exact safe match, exact hallucination
match, then word-vector similarity > 0.8 with spaCy ``en_core_web_lg``). CHAIR = hallucinated nouns / nouns;
Cover = covered truth objects / truth objects; Hal = responses with any hallucinated noun; Cog = hit ``hallu``
objects / ``hallu`` objects (all percent).

The generative part needs NLP resources that cannot be bundled; each is chosen explicitly and recorded:

- ``nlp="nltk"``: ``nltk.word_tokenize`` + ``nltk.pos_tag`` + ``WordNetLemmatizer`` with the user's NLTK data
  (``punkt_tab``, ``averaged_perceptron_tagger_eng``, ``wordnet``), as the reference.
- ``nlp="builtin"`` (**approximation**): unprior's offline tokenizer and WordNet lemma table, with no POS tagger:
  every token in the vocabulary counts as a noun, which over-counts words used as verbs or adjectives.
- ``similarity="spacy"`` with ``spacy_model`` (a local path to ``en_core_web_lg``) as the reference, or
  ``similarity="none"`` (**approximation**): exact and association matches only.

Results from any approximation carry ``"approximate": true`` and are not comparable with published numbers.
AMBER Score = ((100 - CHAIR) + discriminative F1) / 2 (paper; not computed by the reference script).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from unprior.config import fail
from unprior.eval.common import get_field, image_file, load_json, require_dir, require_file
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register
from unprior.eval.text import LEMMATIZER_VERSION, TOKENIZER_VERSION, lemmatize, word_tokenize

SCORER_VERSION = "amber-v1"
INIT = 0.001  # every counter denominator in the reference starts here (data/metrics.txt)

# annotation type -> discriminative group (the reference's counters "ha", "as", "an", "aa", "asso")
TYPE_GROUPS = {
    "discriminative-hallucination": "existence",
    "discriminative-attribute-state": "state",
    "discriminative-attribute-number": "number",
    "discriminative-attribute-action": "action",
    "discriminative-relation": "relation",
    "relation": "relation",
}
ATTRIBUTE = ("state", "number", "action")
TASKS = {
    "all": ("generative", "existence", *ATTRIBUTE, "relation"),
    "generative": ("generative",),
    "discriminative": ("existence", *ATTRIBUTE, "relation"),
    "existence": ("existence",),
    "attribute": ATTRIBUTE,
    "relation": ("relation",),
}


def parse_yes_no(answer: str, mode: str = "exact") -> str:
    """AMBER discriminative answer: ``"Yes"``, ``"No"`` or ``"other"``.

    ``exact`` (reference): only the exact strings "Yes" and "No" count. ``normalized`` (lmms-eval): lowercased,
    "yes" anywhere gives Yes, else "no" anywhere gives No.
    """
    if mode == "exact":
        return answer if answer in ("Yes", "No") else "other"
    low = answer.lower()
    return "Yes" if "yes" in low else "No" if "no" in low else "other"


def _counts() -> dict[str, float]:
    return {"correct_score": 0, "correct_num": INIT, "no_score": 0, "no_num": INIT, "ans_no_score": 0,
            "ans_no_num": INIT}


def discriminative_counts(pred: str, truth: str, c: dict[str, float]) -> None:
    """Add one question to a reference-style counter dict (see :func:`_counts`)."""
    c["correct_num"] += 1
    if truth == "yes":
        c["correct_score"] += pred == "Yes"
    else:
        c["no_num"] += 1
        c["correct_score"] += pred == "No"
        c["no_score"] += pred == "No"
    if pred == "No":
        c["ans_no_num"] += 1
        c["ans_no_score"] += truth == "no"


def discriminative_metrics(c: dict[str, float], f1_eps: float = 1e-4) -> dict[str, float]:
    """Accuracy, precision, recall, F1 exactly as the reference prints them ("No" positive, rounded P and R)."""
    acc = round(c["correct_score"] / c["correct_num"] * 100, 1)
    p = round(c["ans_no_score"] / c["ans_no_num"] * 100, 1)
    r = round(c["no_score"] / c["no_num"] * 100, 1)
    f1 = round(2 * (p / 100) * (r / 100) / ((p / 100) + (r / 100) + f1_eps) * 100, 1)
    return {"accuracy": acc, "precision": p, "recall": r, "f1": f1}


@dataclass(frozen=True)
class Resources:
    """The official AMBER word resources (``data/relation.json``, ``data/safe_words.txt``)."""

    association: dict[str, list[str]]
    safe_words: frozenset[str]

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.association) | frozenset(w for v in self.association.values() for w in v)


def score_description(nouns: Sequence[str], truth: Sequence[str], hallu: Sequence[str], res: Resources,
                      similar: Callable[[str, str], bool] | None = None) -> dict[str, Any]:
    """One generative response, following ``inference.py``'s loop (order of checks and first-match rules).

    Args:
        nouns: Lemmatized nouns of the response (before vocabulary filtering).
        truth: The image's present objects; ``hallu``: its plausible absent objects.
        res: relation.json associations and global safe words.
        similar: ``similar(a, b)`` -> word-vector similarity above the threshold, or None to skip that step.

    Returns:
        ``nouns`` (kept), ``hallucinated`` (nouns), ``covered`` (truth objects) and ``hit`` (hallu objects).
    """
    vocab = res.vocabulary
    kept = [n for n in nouns if n in vocab]
    # Association words first, then the objects themselves, each mapped to the object index (reference order).
    safe = [(w, i) for i, t in enumerate(truth) for w in res.association[t]] + [(t, i) for i, t in enumerate(truth)]
    hall = [(w, i) for i, h in enumerate(hallu) for w in res.association[h]] + [(h, i) for i, h in enumerate(hallu)]
    covered, hit, hallucinated = set(), set(), []
    for noun in kept:
        if noun in res.safe_words:
            continue
        owner = next((i for w, i in safe if w == noun), None)
        if owner is not None:
            covered.add(owner)
            continue
        owner = next((i for w, i in hall if w == noun), None)
        if owner is not None:
            hit.add(owner)
        if similar is not None:
            owner = next((i for w, i in hall if similar(noun, w)), None)
            if owner is not None:
                hit.add(owner)
            owner = next((i for w, i in safe if similar(noun, w)), None)
            if owner is not None:
                covered.add(owner)
                continue
        hallucinated.append(noun)
    return {"nouns": kept, "hallucinated": hallucinated, "covered": sorted(truth[i] for i in covered),
            "hit": sorted(hallu[i] for i in hit), "n_truth": len(truth), "n_hallu": len(hallu)}


def generative_metrics(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """CHAIR, Cover, Hal, Cog over all generative responses, with the reference's 0.001 starts and rounding."""
    chair_num = INIT + sum(len(s["nouns"]) for s in scores)
    safe_num = INIT + sum(s["n_truth"] for s in scores)
    hallu_num = INIT + sum(s["n_hallu"] for s in scores)
    non_hallu = sum(not s["hallucinated"] for s in scores)
    return {
        "chair": round(sum(len(s["hallucinated"]) for s in scores) / chair_num * 100, 1),
        "cover": round(sum(len(s["covered"]) for s in scores) / safe_num * 100, 1),
        "hal": round(100 - non_hallu / (INIT + len(scores)) * 100, 1),
        "cog": round(sum(len(s["hit"]) for s in scores) / hallu_num * 100, 1),
    }


# Noun extraction backends.


def builtin_nouns(text: str, vocabulary: frozenset[str]) -> list[str]:
    """Approximation without a POS tagger: every lemmatized token is treated as a noun (case kept, as NLTK)."""
    return [lemmatize(t, vocabulary) for t in word_tokenize(text)]


def nltk_nouns(text: str) -> list[str]:  # pragma: no cover - needs NLTK and its data
    """The reference's ``extract_nouns``: NLTK tokenize, POS-tag, keep NN*, WordNet-lemmatize."""
    import nltk
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()
    return [lemmatizer.lemmatize(w) for w, pos in nltk.pos_tag(nltk.word_tokenize(text)) if pos.startswith("NN")]


NLTK_DATA = {"punkt_tab": "tokenizers/punkt_tab/english", "averaged_perceptron_tagger_eng":
             "taggers/averaged_perceptron_tagger_eng", "wordnet": "corpora/wordnet"}
"""The NLTK data packages ``nlp="nltk"`` needs -> the resource path ``nltk.data.find`` looks up."""


def require_nltk() -> None:
    """Raise DataError naming what is missing when NLTK or one of :data:`NLTK_DATA` is not installed.

    Called by ``load``, so a run with ``nlp: nltk`` fails before generation, not after it.
    """
    try:
        import nltk
    except ImportError:
        raise DataError("options.nlp: nltk needs the nltk package (pip install nltk), or use nlp: builtin") from None
    missing = []
    for name, resource in NLTK_DATA.items():
        try:
            nltk.data.find(resource)
        except LookupError:
            missing.append(name)
    if missing:
        raise DataError(f"options.nlp: nltk needs the NLTK data {missing}, not found in {nltk.data.path}; install "
                        f"it with python -m nltk.downloader {' '.join(missing)} (or set NLTK_DATA), or use "
                        "nlp: builtin")


def spacy_similarity(model_path: str, threshold: float) -> Callable[[str, str], bool]:  # pragma: no cover
    """``nlp(a).similarity(nlp(b)) > threshold`` with a local spaCy model, parsing each word once."""
    import spacy

    nlp = spacy.load(model_path)
    doc = cache(nlp)
    return lambda a, b: doc(a).similarity(doc(b)) > threshold


@dataclass
class AmberOptions:
    data_dir: str = ""
    """The AMBER repository's data/ folder: annotations.json, relation.json, safe_words.txt, query/."""
    query_file: str = "query/query_all.json"
    """Query list inside data_dir (or an absolute path); items are filtered by `task`."""
    image_root: str = ""
    """Directory of the AMBER images (AMBER_1.jpg ... AMBER_1004.jpg)."""
    task: Literal["all", "generative", "discriminative", "existence", "attribute", "relation"] = "all"
    """Which part to run (the reference's --evaluation_type a, g, d, de, da, dr)."""
    answers: Literal["exact", "normalized"] = "exact"
    """Discriminative answers: exact "Yes"/"No" (reference) or lmms-eval's substring rule (compatibility)."""
    prompt_suffix: str = ""
    """Appended to discriminative questions (the reference adds nothing)."""
    nlp: Literal["builtin", "nltk"] = "builtin"
    """Generative noun extraction: nltk (reference; needs NLTK and its data) or builtin (approximation)."""
    similarity: Literal["none", "spacy"] = "none"
    """Generative word similarity: spacy (reference; needs spacy_model) or none (approximation)."""
    spacy_model: str = ""
    """Local path of the spaCy en_core_web_lg model, for similarity: spacy."""
    similarity_threshold: float = 0.8
    """Similarity above which two words match (reference --similarity_score)."""

    def validate(self) -> None:
        if not self.data_dir:
            fail("data_dir", "set the AMBER data/ folder (annotations.json, relation.json, safe_words.txt, query/)")
        if not self.image_root:
            fail("image_root", "set the AMBER image directory")
        if self.similarity == "spacy" and not self.spacy_model:
            fail("spacy_model", "similarity: spacy needs the local path of en_core_web_lg")


@register
class Amber(Benchmark):
    name = "amber"
    version = "amber-v1"
    parser_version = "amber-yes-no-v1"
    scorer_version = SCORER_VERSION
    max_new_tokens = 512
    Options = AmberOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.groups = TASKS[self.options.task]
        self._resources: Resources | None = None
        self._similar_fn: Callable[[str, str], bool] | None = None

    def _path(self, name: str) -> Path:
        return Path(self.options.data_dir).expanduser() / name

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            association = load_json(self._path("relation.json"), "AMBER relation.json")
            safe = require_file(self._path("safe_words.txt"), "AMBER safe_words.txt").read_text(encoding="utf-8")
            self._resources = Resources(association, frozenset(w for w in safe.split("\n") if w))
        return self._resources

    def build_prompt(self, query: dict[str, Any], group: str) -> str:
        return str(query["query"]) + ("" if group == "generative" else self.options.prompt_suffix)

    def load(self) -> list[Item]:
        require_dir(self.options.data_dir, "options.data_dir (AMBER data/)")
        if self.options.nlp == "nltk" and "generative" in self.groups:
            require_nltk()
        root = require_dir(self.options.image_root, "options.image_root (AMBER images)")
        annotations = load_json(self._path("annotations.json"), "AMBER annotations.json")
        queries = load_json(self._path(self.options.query_file), "options.query_file")
        where_file = self._path(self.options.query_file)
        items = []
        for i, query in enumerate(queries):
            where = f"{where_file}[{i}]"
            qid = get_field(query, "id", where, int)
            if not 1 <= qid <= len(annotations) or annotations[qid - 1].get("id", qid) != qid:
                raise DataError(f"{where}: id {qid} has no entry at position {qid - 1} of annotations.json")
            ann = annotations[qid - 1]
            kind = get_field(ann, "type", f"annotations.json[{qid - 1}]", str)
            group = "generative" if kind == "generative" else TYPE_GROUPS.get(kind)
            if group is None:
                raise DataError(f"annotations.json[{qid - 1}]: unknown type {kind!r}")
            if group not in self.groups:
                continue
            target = {"group": group, "truth": ann["truth"]}
            if group == "generative":
                target["hallu"] = ann["hallu"]
                self._check_objects(ann, qid)
            image = image_file(root, get_field(query, "image", where, str), where, check=False)
            items.append(Item(str(qid), self.build_prompt(query, group), image, target, where=where))
        return items

    def _check_objects(self, ann: dict[str, Any], qid: int) -> None:
        missing = [w for w in [*ann["truth"], *ann["hallu"]] if w not in self.resources.association]
        if missing:
            raise DataError(f"annotations.json[{qid - 1}]: objects {missing} are not keys of relation.json")

    def metrics(self) -> list[Metric]:
        out = []
        if "generative" in self.groups:
            out += [Metric("chair", False, "hallucinated nouns / nouns, percent"),
                    Metric("cover", True, "truth objects mentioned, percent"),
                    Metric("hal", False, "responses with a hallucinated noun, percent"),
                    Metric("cog", False, "plausible-but-absent objects mentioned, percent")]
        for group in self._disc_groups():
            out += [Metric(f"{group}/{m}", True, f"{m} ({group}, 'No' positive), percent")
                    for m in ("accuracy", "precision", "recall", "f1")]
        if self.options.task == "all":
            out.append(Metric("amber_score", True, "((100 - CHAIR) + discriminative F1) / 2"))
        return out

    def headline(self) -> list[str]:
        names = ["chair", "cover", "hal", "cog"] if "generative" in self.groups else []
        disc = self._disc_groups()
        return [*names, *([f"{disc[0]}/f1"] if disc else []), *(["amber_score"] if self.options.task == "all" else [])]

    def _disc_groups(self) -> list[str]:
        present = [g for g in self.groups if g != "generative"]
        if not present:
            return []
        names = [*present]
        if all(g in present for g in ATTRIBUTE):
            names.insert(names.index("state"), "attribute")
        if len(present) == 5:
            names.insert(0, "discriminative")
        return names

    def parse(self, item: Item, answer: str) -> Any:
        if item.target["group"] == "generative":
            if self.options.nlp == "nltk":
                return nltk_nouns(answer)
            return builtin_nouns(answer, self.resources.vocabulary)
        return parse_yes_no(answer, self.options.answers)

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        t = item.target
        if t["group"] == "generative":
            return score_description(parsed, t["truth"], t["hallu"], self.resources, self._similar())
        return {"group": t["group"], "truth": t["truth"], "correct": parsed == t["truth"].capitalize()}

    def _similar(self) -> Callable[[str, str], bool] | None:
        if self.options.similarity == "spacy" and self._similar_fn is None:
            self._similar_fn = spacy_similarity(self.options.spacy_model, self.options.similarity_threshold)
        return self._similar_fn

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float | None]:
        """Every metric of the chosen task; a group with no items (e.g. ``limit`` cut it off) reads None (n/a),
        never the 0.0 the reference's counters would give, and ``amber_score`` needs both of its parts."""
        out: dict[str, float | None] = {}
        gen = [s for it, s in zip(items, scores, strict=True) if it.target["group"] == "generative"]
        if "generative" in self.groups:
            out.update(generative_metrics(gen) if gen else dict.fromkeys(("chair", "cover", "hal", "cog")))
        counts = {g: _counts() for g in TYPE_GROUPS.values()}
        seen: Counter[str] = Counter()
        for it, s in zip(items, scores, strict=True):
            if it.target["group"] != "generative":
                seen[it.target["group"]] += 1
                discriminative_counts(s["parsed"], it.target["truth"], counts[it.target["group"]])
        for name in self._disc_groups():
            members = {"discriminative": list(counts), "attribute": ATTRIBUTE}.get(name, (name,))
            if not any(seen[g] for g in members):
                out.update({f"{name}/{k}": None for k in ("accuracy", "precision", "recall", "f1")})
                continue
            c = {k: sum(counts[g][k] for g in members) for k in _counts()}
            if name == "discriminative":  # the reference keeps one overall counter: a single 0.001 start
                c = {k: v - (len(members) - 1) * INIT * (k.endswith("_num")) for k, v in c.items()}
            m = discriminative_metrics(c, 1e-3 if name == "existence" else 1e-4)
            out.update({f"{name}/{k}": v for k, v in m.items()})
        if self.options.task == "all":
            chair, f1 = out["chair"], out["discriminative/f1"]
            out["amber_score"] = None if chair is None or f1 is None else ((100 - chair) + f1) / 2
        return out

    def provenance(self) -> dict[str, Any]:
        gen = "generative" in self.groups
        approximate = gen and (self.options.nlp != "nltk" or self.options.similarity != "spacy")
        out: dict[str, Any] = {"answers": self.options.answers, "approximate": approximate}
        if gen:
            out |= {"nlp": self.options.nlp, "similarity": self.options.similarity}
            if self.options.nlp == "builtin":
                out |= {"tokenizer": TOKENIZER_VERSION, "lemmatizer": LEMMATIZER_VERSION}
        if approximate:
            missing = [label for label, used in (("no POS tagger (every vocabulary token counts as a noun)",
                                                  self.options.nlp == "builtin"),
                                                 ("no word-vector similarity", self.options.similarity == "none"))
                       if used]
            out["approximation"] = "generative metrics with " + " and ".join(missing) + "; not comparable with " \
                                   "published AMBER numbers"
        if self.options.answers != "exact":
            out["deviation"] = "discriminative answers normalized (lmms-eval rule), not exact Yes/No"
        return out
