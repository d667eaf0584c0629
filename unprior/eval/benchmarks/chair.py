"""CHAIR (Rohrbach et al., "Object Hallucination in Image Captioning", EMNLP 2018) and Object HalBench (the RLHF-V /
RLAIF-V protocol, rule mode, as run by NaPO).

A caption's *mentions* are the words of the 80-class COCO synonym list that occur in it, after tokenizing the
lowercased caption, normalising each token's number and merging two-word names left to right
(``LisaAnne/Hallucination:utils/chair.py``; ``RLHF-V/RLAIF-V:eval/eval_gpt_obj_halbench.py``). Special rules: "baby
X" / "adult X" for animals and "passenger jet/train" do not fire *person*; "bow tie" is a tie; "toilet seat" is a
toilet, and "seat" is dropped from any caption that also says "toilet"; "home plate" and "train track" consume
their words; "wine glas" (the singularized "wine glass") is a wine glass. A mention is hallucinated when its class
is not in the image's ground truth: the classes of the image's COCO instance annotations plus the classes mentioned
in its COCO reference captions (extracted the same way).

- CHAIRi = hallucinated mentions / mentions; CHAIRs = captions with a hallucinated mention / captions (both
  percent). Object HalBench's "response hallucination" divides by the responses that mention any COCO object
  (CHAIRs-refine); plain CHAIRs over all responses is reported as ``chair_s_all``.
- Recall = sum over images of correctly mentioned classes (unique) / ground-truth classes.

Token pipelines (option ``lemmatizer``; recorded in ``results.json`` and in ground-truth files):

- ``singularize`` (``chair``'s default): the 2018 original exactly, ``nltk.word_tokenize`` (nltk 3.10.4, Punkt
  English; :mod:`unprior.eval.treebank`) and ``pattern.en.singularize`` (pattern 3.6; :mod:`unprior.eval.singularize`).
  Its quirks are the reference's: "men" is *person*; the singular "bus", "ties", "doggies" and "collies" never match;
  a curly apostrophe splits "dog’s".
- ``wordnet`` (``object_halbench``'s default, and ``chair``'s only pipeline before scorer chair-v2): the RLHF-V /
  RLAIF-V WordNet noun lemmatizer (:mod:`unprior.eval.text`'s shipped table) on that module's approximate offline
  tokenizer, where the references call ``nltk.word_tokenize``. "men" is not *person* there.

The reference's GPT extraction mode is not offered.

Synonym variants: ``lisaanne`` is the original list exactly, quirks included; ``refine`` is RLAIF-V's list expressed
as a patch on it (entries stripped, plus *brother*, *pedestrian*, *coffee table*, *remote control*) and every
multi-word synonym is a bigram.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from unprior.answers import Vocabulary, vocabulary
from unprior.config import fail
from unprior.eval.common import (
    embedded_image,
    get_field,
    image_file,
    load_json,
    load_records,
    ratio,
    require_dir,
)
from unprior.eval.registry import Benchmark, DataError, Item, Metric, register
from unprior.eval.singularize import SINGULARIZE_VERSION, singularize
from unprior.eval.text import LEMMATIZER_VERSION, TOKENIZER_VERSION, lemmatize, word_tokenize
from unprior.eval.treebank import TREEBANK_VERSION
from unprior.eval.treebank import word_tokenize as nltk_word_tokenize
from unprior.io import write_json

SCORER_VERSION = "chair-v2"
GT_FORMAT = "unprior-chair-ground-truth"
DETAIL_PROMPT = "Please describe this image in detail."

Lemmatizer = Literal["singularize", "wordnet"]
PIPELINES: dict[str, tuple[str, str]] = {"singularize": (TREEBANK_VERSION, SINGULARIZE_VERSION),
                                         "wordnet": (TOKENIZER_VERSION, LEMMATIZER_VERSION)}
"""Lemmatizer -> (tokenizer version, lemmatizer version)."""


def caption_words(caption: str, vocab: Vocabulary, lemmatizer: Lemmatizer = "singularize") -> list[str]:
    """The lowercased caption's tokens with their number normalised (CHAIR steps 1-2; see the module docstring)."""
    text = caption.lower()
    if lemmatizer == "singularize":
        return [singularize(t) for t in nltk_word_tokenize(text)]
    if lemmatizer == "wordnet":
        return [lemmatize(t, vocab.words) for t in word_tokenize(text)]
    raise ValueError(f"unknown CHAIR lemmatizer {lemmatizer!r}")


def caption_mentions(caption: str, vocab: Vocabulary, lemmatizer: Lemmatizer = "singularize"
                     ) -> list[tuple[str, str]]:
    """``(word, class)`` for every COCO object word in ``caption``, in order, duplicates kept (CHAIR steps 1-5)."""
    lemmas = caption_words(caption, vocab, lemmatizer)
    merged, i = [], 0
    while i < len(lemmas):
        pair = " ".join(lemmas[i : i + 2])
        if pair in vocab.double_words:
            merged.append(vocab.double_words[pair])
            i += 2
        else:
            merged.append(lemmas[i])
            i += 1
    if "toilet" in merged and "seat" in merged:
        merged = [w for w in merged if w != "seat"]
    return [(w, vocab.synonym_to_class[w]) for w in merged if w in vocab.synonym_to_class]


def score_caption(caption: str, ground_truth: Iterable[str], vocab: Vocabulary,
                  lemmatizer: Lemmatizer = "singularize") -> dict[str, Any]:
    """Per-caption CHAIR record: mentions, hallucinated mentions, correctly mentioned classes, ground-truth size."""
    gt = set(ground_truth)
    mentions = caption_mentions(caption, vocab, lemmatizer)
    hallucinated = [[w, c] for w, c in mentions if c not in gt]
    return {
        "mentions": [[w, c] for w, c in mentions],
        "hallucinated": hallucinated,
        "recalled": sorted({c for _, c in mentions if c in gt}),
        "n_gt": len(gt),
        "n_words": len(caption.split(" ")),
    }


def chair_metrics(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """CHAIRs, CHAIRs over responses with mentions, CHAIRi, recall (percent) and mean length in words."""
    n_mentions = sum(len(s["mentions"]) for s in scores)
    with_mentions = [s for s in scores if s["mentions"]]
    n_hall_caps = sum(bool(s["hallucinated"]) for s in scores)
    return {
        "chair_s": 100 * ratio(n_hall_caps, len(scores)),
        "chair_s_refine": 100 * ratio(n_hall_caps, len(with_mentions)),
        "chair_i": 100 * ratio(sum(len(s["hallucinated"]) for s in scores), n_mentions),
        "recall": 100 * ratio(sum(len(s["recalled"]) for s in scores), sum(s["n_gt"] for s in scores)),
        "avg_len": ratio(sum(s["n_words"] for s in scores), len(scores)),
    }


# Ground truth: from COCO 2014 annotations, or from a compact per-image file built once from them.

_COCO_FILES = ("instances_train2014.json", "instances_val2014.json", "captions_train2014.json",
               "captions_val2014.json")


def ground_truth_from_coco(annotations_dir: str | Path, image_ids: Iterable[int], vocab: Vocabulary,
                           lemmatizer: Lemmatizer = "singularize") -> dict[int, list[str]]:
    """Per-image ground-truth classes from COCO 2014 instance and caption annotations (train and val merged).

    Args:
        annotations_dir: The folder of ``annotations_trainval2014`` (at least ``instances_val2014.json`` and
            ``captions_val2014.json`` for val images).
        image_ids: The images to keep.
        vocab: The word list that maps category names and caption words to classes.
        lemmatizer: The token pipeline for the reference captions (the one the scored answers use).
    """
    root = require_dir(annotations_dir, "options.coco_annotations")
    present = [n for n in _COCO_FILES if (root / n).is_file()]
    if not any(n.startswith("instances") for n in present) or not any(n.startswith("captions") for n in present):
        raise DataError(f"{root}: need COCO 2014 annotations: at least one instances_*2014.json and one "
                        f"captions_*2014.json (looked for {', '.join(_COCO_FILES)})")
    wanted = set(image_ids)
    gt: dict[int, set[str]] = {i: set() for i in wanted}
    for name in present:
        data = load_json(root / name, "COCO annotations")
        if name.startswith("instances"):
            names = {c["id"]: c["name"] for c in data["categories"]}
            for ann in data["annotations"]:
                if ann["image_id"] in wanted:
                    gt[ann["image_id"]].add(vocab.synonym_to_class[names[ann["category_id"]]])
        else:
            for ann in data["annotations"]:
                if ann["image_id"] in wanted:
                    gt[ann["image_id"]].update(c for _, c in caption_mentions(ann["caption"], vocab, lemmatizer))
    return {i: sorted(v) for i, v in sorted(gt.items())}


def ground_truth_record(gt: Mapping[Any, list[str]], vocab: Vocabulary, lemmatizer: Lemmatizer = "singularize"
                        ) -> dict[str, Any]:
    """The compact ground-truth file's content (JSON), stamped with what the sets depend on."""
    tokenizer_version, lemmatizer_version = PIPELINES[lemmatizer]
    return {"format": GT_FORMAT, "version": 1, "synonyms": vocab.name, "tokenizer": tokenizer_version,
            "lemmatizer": lemmatizer_version, "source": "COCO 2014 instances + captions (CC BY 4.0)",
            "images": {str(k): v for k, v in gt.items()}}


def build_ground_truth_file(annotations_dir: str | Path, image_ids: Iterable[int], out: str | Path,
                            synonyms: str = "refine", lemmatizer: Lemmatizer = "wordnet") -> Path:
    """Build the compact ground-truth file once from COCO annotations (for shipping or reuse without COCO).

    The defaults are ``object_halbench``'s protocol; for ``chair`` pass ``synonyms="lisaanne",
    lemmatizer="singularize"``.
    """
    vocab = vocabulary(synonyms)
    gt = ground_truth_from_coco(annotations_dir, image_ids, vocab, lemmatizer)
    write_json(out, ground_truth_record(gt, vocab, lemmatizer))
    return Path(out)


def simple_ground_truth(data: dict[str, Any], vocab: Vocabulary, path: str | Path) -> dict[int | str, list[str]]:
    """A plain ``{image: [objects]}`` ground truth, for images that are not COCO's (docs/eval.md).

    Keys are the questions' ``image`` paths (or image ids); objects are COCO class names or any word of the synonym
    list ("woman" is ``person``, "puppies" ``dog``). Returns image -> sorted classes.
    """
    out: dict[int | str, list[str]] = {}
    for key, words in data.items():
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(f"{path}: {key!r}: expected a list of object names, got {words!r:.80}")
        classes = set()
        for word in words:
            w = word.strip().lower()
            cls = vocab.synonym_to_class.get(w) or vocab.synonym_to_class.get(singularize(w))
            if cls is None:
                raise DataError(f"{path}: {key!r}: {word!r} is not a COCO object word of the {vocab.name} list "
                                f"(classes: {', '.join(vocab.classes[:8])}, ...); CHAIR counts only those")
            classes.add(cls)
        out[int(key) if key.isdigit() else key] = sorted(classes)
    return out


def load_ground_truth(path: str | Path, vocab: Vocabulary, lemmatizer: Lemmatizer = "singularize"
                      ) -> dict[int | str, list[str]]:
    """Read a compact ground-truth file; refuse one built with a different word list, tokenizer or lemmatizer.

    A JSON object without ``"format"`` is the simple ``{image: [objects]}`` form (:func:`simple_ground_truth`).
    """
    data = load_json(path, "options.ground_truth")
    if isinstance(data, dict) and "format" not in data:
        return simple_ground_truth(data, vocab, path)
    if not isinstance(data, dict) or data.get("format") != GT_FORMAT:
        raise DataError(f"{path}: not an unprior CHAIR ground-truth file (expected \"format\": \"{GT_FORMAT}\")")
    tokenizer_version, lemmatizer_version = PIPELINES[lemmatizer]
    expected = {"synonyms": vocab.name, "tokenizer": tokenizer_version, "lemmatizer": lemmatizer_version}
    for key, want in expected.items():
        if data.get(key) != want:
            raise DataError(f"{path}: built with {key}={data.get(key)!r}, this run needs {want!r}; rebuild it")
    images = get_field(data, "images", str(path), dict)
    out: dict[int | str, list[str]] = {}
    for key, classes in images.items():
        bad = [c for c in classes if c not in vocab.synonym_to_class.values()] if isinstance(classes, list) else [0]
        if not key.isdigit() or bad:
            raise DataError(f"{path}: images[{key!r}]: expected an image id and a list of COCO classes")
        out[int(key)] = list(classes)
    return out


@dataclass
class ChairOptions:
    questions: str = ""
    """JSONL or JSON list, one row per image: image_id (COCO id), optional image (path under image_root, or base64
    when embedded_images), optional question (else `prompt`), optional question_id."""
    image_root: str = ""
    """Directory of the COCO val2014 images (unused when embedded_images)."""
    embedded_images: bool = False
    """The rows' `image` field holds base64 image data (NaPO's / RLAIF-V's Object HalBench file)."""
    prompt: str = DETAIL_PROMPT
    """Instruction for rows that carry no `question`."""
    synonyms: Literal["lisaanne", "refine"] = "lisaanne"
    """Word list: the original CHAIR list, or the RLHF-V/RLAIF-V refined list."""
    lemmatizer: Lemmatizer = "singularize"
    """Token pipeline: `singularize` (nltk.word_tokenize + pattern.singularize, exactly as the original CHAIR code) or
    `wordnet` (WordNet noun lemmas on an approximate tokenizer: RLAIF-V's lemmatizer, the scorer before chair-v2)."""
    ground_truth: str = ""
    """Per-image ground-truth file: the compact one (built by build_ground_truth_file, or written by a previous run),
    or a plain JSON object {image: [objects]} for your own images (rows then need `image`, not `image_id`)."""
    coco_annotations: str = ""
    """Folder with COCO 2014 instances_*/captions_* JSON files, used when ground_truth is not given."""

    def validate(self) -> None:
        if not self.questions:
            fail("questions", "set the question/image-id file")
        if not self.embedded_images and not self.image_root:
            fail("image_root", "set the image directory (or embedded_images: true)")
        if bool(self.ground_truth) == bool(self.coco_annotations):
            fail("ground_truth", "give exactly one of ground_truth (compact file) or coco_annotations (folder)")


@dataclass
class ObjectHalBenchOptions(ChairOptions):
    synonyms: Literal["lisaanne", "refine"] = "refine"
    """Word list: RLAIF-V's refined list by default (the protocol NaPO and RLAIF-V report)."""
    lemmatizer: Lemmatizer = "wordnet"
    """Token pipeline: `wordnet` (RLAIF-V's WordNet noun lemmatizer, on an approximate tokenizer) or `singularize`."""


@register
class Chair(Benchmark):
    """CHAIR on free-form image descriptions (e.g. the 500-image "CHAIR-500" setting)."""

    name = "chair"
    version = "chair-v1"
    parser_version = "+".join(PIPELINES["singularize"])
    scorer_version = SCORER_VERSION
    max_new_tokens = 512
    Options = ChairOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.vocab = vocabulary(self.options.synonyms)
        self.lemmatizer: Lemmatizer = self.options.lemmatizer
        self.parser_version = "+".join(PIPELINES[self.lemmatizer])  # per instance: it depends on the option
        self._gt: dict[int | str, list[str]] = {}
        self._gt_built = False

    def build_prompt(self, row: dict[str, Any]) -> str:
        return str(row.get("question") or self.options.prompt)

    def _image(self, row: dict[str, Any], image_id: int | str, where: str) -> Path:
        if self.options.embedded_images:
            return embedded_image(get_field(row, "image", where, str), where)
        rel = row.get("image") or f"COCO_val2014_{image_id:012d}.jpg"
        return image_file(require_dir(self.options.image_root, "options.image_root"), rel, where, check=False)

    def load(self) -> list[Item]:
        rows = list(load_records(self.options.questions, "options.questions"))
        items, ids = [], set()
        for index, (where, row) in enumerate(rows):
            image_id: int | str  # a COCO id, or with a simple {image: [objects]} ground truth the image path
            if "image_id" not in row and self.options.ground_truth and not self.options.embedded_images:
                image_id = get_field(row, "image", where, str)
            else:
                image_id = int(get_field(row, "image_id", where, (int, str)))
            qid = str(row.get("question_id", row.get("org_idx", index)))
            if qid in ids:
                raise DataError(f"{where}: duplicate question id {qid}")
            ids.add(qid)
            items.append(Item(qid, self.build_prompt(row), self._image(row, image_id, where),
                              {"image_id": image_id, "where": where}, where=where))
        self._gt = self._load_ground_truth({it.target["image_id"] for it in items})
        for it in items:
            if it.target["image_id"] not in self._gt:
                raise DataError(f"{it.target['where']}: image_id {it.target['image_id']} has no ground truth in "
                                f"{self.options.ground_truth or self.options.coco_annotations}")
        return items

    def _load_ground_truth(self, image_ids: set[int | str]) -> dict[int | str, list[str]]:
        if self.options.ground_truth:
            return load_ground_truth(self.options.ground_truth, self.vocab, self.lemmatizer)
        self._gt_built = True
        coco = {i for i in image_ids if isinstance(i, int)}
        return dict(ground_truth_from_coco(self.options.coco_annotations, coco, self.vocab, self.lemmatizer))

    def metrics(self) -> list[Metric]:
        return [Metric("chair_s", False, "captions with a hallucinated object, percent"),
                Metric("chair_i", False, "hallucinated object mentions / mentions, percent"),
                Metric("recall", True, "ground-truth classes mentioned, percent"),
                Metric("avg_len", None, "mean answer length in words")]

    def parse(self, item: Item, answer: str) -> str:
        return answer

    def score(self, item: Item, parsed: Any) -> dict[str, Any]:
        record = score_caption(parsed, self._gt[item.target["image_id"]], self.vocab, self.lemmatizer)
        record["gt"] = self._gt[item.target["image_id"]]
        return record

    def score_all(self, items: Sequence[Item], answers: Sequence[str], workdir: Path) -> list[dict[str, Any]]:
        if self._gt_built:  # keep the sets so a re-score (or another model) needs no COCO download
            write_json(workdir / "chair_ground_truth.json", ground_truth_record(self._gt, self.vocab, self.lemmatizer))
        return [self.score(it, a) for it, a in zip(items, answers, strict=True)]

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        m = chair_metrics(scores)
        return {k: m[k] for k in ("chair_s", "chair_i", "recall", "avg_len")}

    def provenance(self) -> dict[str, Any]:
        tokenizer_version, lemmatizer_version = PIPELINES[self.lemmatizer]
        deviation = {"singularize": "none (nltk.word_tokenize and pattern.singularize re-implemented offline; docs)",
                     "wordnet": "offline Treebank-style tokenizer instead of nltk.word_tokenize (see docs)"}
        return {"synonyms": self.options.synonyms, "lemmatizer": self.lemmatizer, "tokenizer": tokenizer_version,
                "lemmatizer_version": lemmatizer_version, "extraction": "rule",
                "ground_truth": "file" if self.options.ground_truth else "coco_annotations",
                "deviation": deviation[self.lemmatizer]}


@register
class ObjectHalBench(Chair):
    """Object HalBench (RLHF-V / RLAIF-V protocol, rule-based extraction as in NaPO's pipeline)."""

    name = "object_halbench"
    version = "object_halbench-v1"
    parser_version = "+".join(PIPELINES["wordnet"])
    max_new_tokens = 1024
    Options = ObjectHalBenchOptions

    def metrics(self) -> list[Metric]:
        return [Metric("response_hall", False, "CHAIRs over responses that mention a COCO object, percent"),
                Metric("mention_hall", False, "CHAIRi: hallucinated mentions / mentions, percent"),
                Metric("chair_s_all", False, "CHAIRs over all responses, percent"),
                Metric("recall", True, "ground-truth classes mentioned, percent"),
                Metric("avg_len", None, "mean answer length in words")]

    def aggregate(self, items: Sequence[Item], scores: Sequence[dict[str, Any]]) -> dict[str, float]:
        m = chair_metrics(scores)
        return {"response_hall": m["chair_s_refine"], "mention_hall": m["chair_i"], "chair_s_all": m["chair_s"],
                "recall": m["recall"], "avg_len": m["avg_len"]}

