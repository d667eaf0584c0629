"""Rule-based error injection: BPO's "erroneous but common" edits (docs/papers.md, BPO step 3) without an LLM.

BPO asks a text LLM to rewrite the reference answer with objects and attributes that are *common but wrong*:
what the pretraining statistics suggest, not what the image shows. Here the statistics are the dataset's own,
computed once over all loaded samples (:func:`dataset_stats`), and each negative is the reference answer with a
**single** edit, so it stays partly right (the preference study needs negatives that differ from the chosen
answer in one grounded detail, not wholesale):

- ``insert_object``: add the absent object that co-occurs most with the objects present (ties and images without
  co-occurrence data: the most frequent absent object), with its most common colour. When the last indefinite
  mention ends a sentence that only lists objects ("A red apple and a yellow banana.", "There is ...", "The image
  shows ...", "Yes, the image has ...") the list is extended ("A red apple, a yellow banana and a pink pig.");
  otherwise a sentence is added at the end ("A woman wears a black tie." -> "A woman wears a black tie. There is
  also a dog."), so a caption's verb never governs the inserted object.
- ``swap_attribute``: replace one colour word with the most common *other* colour of the object it describes
  ("The apple is green." -> "The apple is red.": the language prior); for colours not attached to a known object,
  the most common other colour overall.
- ``flip_existence``: invert a yes/no existence answer ("No, there is no banana." -> "Yes, there is a banana.").

Where the statistics come from:

- ``meta.objects``: when samples carry ground-truth object lists (``[{"category", "colour"}, ...]``, as the
  synthetic world writes), object frequency, pairwise co-occurrence and colour counts per object are counted per
  *image* (rows sharing an image count once). "Absent" then means absent from the ground truth.
- answer scan (fallback): a simple vocabulary scan of the reference answers for known object words and colour
  words, skipping negated mentions ("no dog"). The object words are CHAIR's COCO synonym table (the ``refine``
  list of :mod:`unprior.eval.benchmarks.chair`, with plural forms): "woman", "men" and "people" are the class
  ``person``, "puppy" is ``dog``, so the rules and the CHAIR metric agree on what a caption mentions. A colour
  attaches to an object when it directly precedes it ("a red bus") or follows "<object> is/are". "Absent" then
  means not mentioned in the answer.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any

import numpy as np

from unprior import answers
from unprior.formats.pairs import Sample
from unprior.numerics import stable_seed

COLOUR_WORDS = (
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "black", "gray", "grey",
    "brown", "silver", "gold", "beige", "violet", "turquoise",
)  # fmt: skip
COCO_OBJECTS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
"""Object names the answer scan looks for (the COCO detection categories)."""

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six")


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def plural_forms(word: str) -> list[str]:
    """Irregular plurals the mention pattern's optional ``s``/``es`` cannot reach ("women", "puppies", "knives")."""
    head, _, last = word.rpartition(" ")
    prefix = f"{head} " if head else ""
    forms = []
    if last.endswith("man"):
        forms.append(last[:-3] + "men")
    if len(last) > 2 and last.endswith("y") and last[-2] not in "aeiou":
        forms.append(last[:-1] + "ies")
    if last.endswith("fe"):
        forms.append(last[:-2] + "ves")
    elif last.endswith("f"):
        forms.append(last[:-1] + "ves")
    forms += {"mouse": ["mice"], "child": ["children"], "person": ["people"]}.get(last, [])
    return [prefix + f for f in forms]


@functools.cache
def coco_synonyms() -> dict[str, str]:
    """Object word -> COCO class: CHAIR's ``refine`` synonym table (:func:`unprior.answers.vocabulary`) and the
    irregular plurals of its words; the class names map to themselves."""
    table = dict(answers.vocabulary("refine").synonym_to_class)
    for word, cls in list(table.items()):
        for form in plural_forms(word):
            table.setdefault(form, cls)
    return table


@dataclass
class DatasetStats:
    """Object and attribute statistics of a dataset, counted per image."""

    source: str = "answer_scan"
    """meta.objects (ground truth) or answer_scan."""
    images: int = 0
    object_freq: Counter[str] = field(default_factory=Counter)
    """Images each object appears in."""
    cooc: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """cooc[a][b]: images holding both a and b."""
    colours: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """colours[obj][colour]: how often obj has that colour."""
    colour_freq: Counter[str] = field(default_factory=Counter)
    vocabulary: tuple[str, ...] = ()
    """Object words that the edits recognise in answers (longest first)."""
    synonyms: dict[str, str] = field(default_factory=dict)
    """Object word -> the object (class) it names, for words that are not object names themselves ("woman")."""
    colour_words: tuple[str, ...] = COLOUR_WORDS

    def common_colour(self, obj: str | None, exclude: Iterable[str] = ()) -> str | None:
        """The object's most common colour not in ``exclude`` (overall most common when the object has none)."""
        skip = {c.lower() for c in exclude}
        for counts in ([self.colours[obj]] if obj in self.colours else []) + [self.colour_freq]:
            for colour, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                if colour not in skip:
                    return colour
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "images": self.images,
            "objects": len(self.object_freq),
            "top_objects": self.object_freq.most_common(5),
            "top_pairs": sorted(((a, b, n) for a, row in self.cooc.items() for b, n in row.items() if a < b),
                                key=lambda t: (-t[2], t[0], t[1]))[:5],
        }


@dataclass(frozen=True)
class Mention:
    """An object name in an answer, with the words in front of it."""

    obj: str
    start: int
    """Start of the whole mention (determiner or colour included)."""
    end: int
    determiner: str
    colour: str
    negated: bool


def _mention_regex(vocabulary: Sequence[str], colours: Sequence[str]) -> re.Pattern[str]:
    objs = "|".join(re.escape(o) for o in sorted(vocabulary, key=len, reverse=True))
    cols = "|".join(re.escape(c) for c in colours)
    dets = "|".join(("a", "an", "the", "no", "some", *NUMBER_WORDS))
    return re.compile(rf"\b(?:(?P<det>{dets})\s+)?(?:(?P<col>{cols})\s+)?(?P<obj>{objs})(?:e?s)?\b", re.IGNORECASE)


def find_mentions(text: str, stats: DatasetStats) -> list[Mention]:
    """Object mentions in ``text`` (known vocabulary only), in order."""
    if not stats.vocabulary:
        return []
    out = []
    for m in _regex(stats).finditer(text):
        det = (m.group("det") or "").lower()
        before = text[max(0, m.start() - 8) : m.start()].lower()
        negated = det == "no" or bool(re.search(r"\bnot?\s+(?:an?\s+)?$", before))
        word = m.group("obj").lower()
        obj = stats.synonyms.get(word, word)
        out.append(Mention(obj, m.start(), m.end(), det, (m.group("col") or "").lower(), negated))
    return out


_REGEX_CACHE: dict[tuple[tuple[str, ...], tuple[str, ...]], re.Pattern[str]] = {}


def _regex(stats: DatasetStats) -> re.Pattern[str]:
    key = (stats.vocabulary, stats.colour_words)
    if key not in _REGEX_CACHE:
        _REGEX_CACHE[key] = _mention_regex(*key)
    return _REGEX_CACHE[key]


def _colour_after(text: str, mention: Mention, colours: Sequence[str]) -> re.Match[str] | None:
    """``<object> is|are [coloured] <colour>`` right after a mention."""
    cols = "|".join(re.escape(c) for c in colours)
    return re.compile(rf"\s+(?:is|are)\s+(?:colou?red\s+)?(?P<col>{cols})\b", re.IGNORECASE).match(text, mention.end)


def image_key(sample: Sample) -> str:
    """Identifies a sample's image: its path, or a hash of its bytes."""
    if isinstance(sample.image, bytes):
        return "sha1:" + hashlib.sha1(sample.image).hexdigest()
    return str(sample.image) if sample.image is not None else f"id:{sample.id}"


def truth_objects(sample: Sample) -> list[tuple[str, str]] | None:
    """(category, colour) pairs from ``meta.objects`` when the sample has them, else None."""
    objs = sample.meta.get("objects")
    if not isinstance(objs, list) or not objs:
        return None
    out = []
    for o in objs:
        if isinstance(o, dict) and isinstance(o.get("category"), str):
            out.append((o["category"].lower(), str(o.get("colour") or o.get("color") or "").lower()))
    return out or None


def dataset_stats(samples: Sequence[Sample]) -> DatasetStats:
    """Object frequency, co-occurrence and colour statistics, per image (see the module docstring)."""
    truth = {image_key(s): t for s in samples if (t := truth_objects(s)) is not None}
    extra = sorted({c for objs in truth.values() for c, _ in objs})
    colours = tuple(dict.fromkeys([*COLOUR_WORDS, *sorted({col for o in truth.values() for _, col in o if col})]))
    synonyms = {} if truth else coco_synonyms()  # ground truth names its own objects; captions need the table
    stats = DatasetStats(source="meta.objects" if truth else "answer_scan",
                         vocabulary=tuple(sorted({*COCO_OBJECTS, *extra, *synonyms}, key=len, reverse=True)),
                         synonyms=synonyms, colour_words=colours)
    per_image: dict[str, list[tuple[str, str]]] = dict(truth)
    if not truth:
        scanned: dict[str, dict[str, str]] = defaultdict(dict)
        for s in samples:
            for obj, colour in _scan(s.answer, stats):
                if colour or obj not in scanned[image_key(s)]:
                    scanned[image_key(s)][obj] = colour
        per_image = {k: list(v.items()) for k, v in scanned.items()}
    for objs in per_image.values():
        names = sorted({o for o, _ in objs})
        stats.images += 1
        stats.object_freq.update(names)
        for a, b in combinations(names, 2):
            stats.cooc[a][b] += 1
            stats.cooc[b][a] += 1
        for obj, colour in objs:
            if colour:
                stats.colours[obj][colour] += 1
                stats.colour_freq[colour] += 1
    return stats


def _scan(text: str, stats: DatasetStats) -> list[tuple[str, str]]:
    """(object, colour or "") for every non-negated mention."""
    out = []
    for m in find_mentions(text, stats):
        if m.negated:
            continue
        colour = m.colour
        if not colour and (after := _colour_after(text, m, stats.colour_words)):
            colour = after.group("col").lower()
        out.append((m.obj, colour))
    return out


@dataclass(frozen=True)
class Edit:
    """One rule edit applied to an answer."""

    name: str
    text: str
    detail: dict[str, Any]


def _match_case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


_PERSON_PRONOUN = re.compile(r"\b(?:she|he|her|his|him|they)\b", re.IGNORECASE)


def present_objects(sample: Sample, stats: DatasetStats) -> set[str]:
    """The ground truth's objects, or those the answer mentions (a personal pronoun mentions a ``person``)."""
    truth = truth_objects(sample)
    if truth is not None:
        return {c for c, _ in truth}
    found = {obj for obj, _ in _scan(sample.answer, stats)}
    if stats.synonyms.get("woman") == "person" and _PERSON_PRONOUN.search(sample.answer):
        found.add("person")
    return found


_LISTING_LEAD = re.compile(
    r"^(?:(?:yes|no)\s*,?\s*)?(?:there\s+(?:is|are)|(?:the|this)\s+(?:image|picture|photo)\s+(?:shows|has|contains)"
    r"|i\s+(?:can\s+)?see|we\s+can\s+see)?\s*$", re.IGNORECASE)
"""What may stand before a sentence's objects for the list to be extended: nothing, or an existential lead."""


def _sentence_start(text: str, at: int) -> int:
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s+|$)", text[:at])]
    return ends[-1] if ends else 0


def _only_lists_objects(text: str, start: int, end: int, mentions: Sequence[Mention]) -> bool:
    """Whether ``text[start:end]`` is an existential lead followed by object mentions joined by commas/"and"."""
    inside = [m for m in mentions if start <= m.start and m.end <= end]
    if not inside:
        return False
    if not _LISTING_LEAD.match(text[start : inside[0].start]):
        return False
    gaps = [text[a.end : b.start] for a, b in pairwise(inside)]
    return all(re.fullmatch(r"\s*(?:,\s*(?:and\s+)?|and\s+)", g) for g in gaps)


def insert_object(sample: Sample, stats: DatasetStats) -> Edit | None:
    """Add the most co-occurring absent object: extend a sentence that only lists objects, else add a sentence
    (see module docstring)."""
    text = sample.answer
    mentions = find_mentions(text, stats)
    listed = [m for m in mentions if not m.negated and (m.determiner in ("a", "an", *NUMBER_WORDS))]
    if not listed:
        return None
    present = present_objects(sample, stats)
    mentioned = {m.obj for m in mentions}
    candidates = [o for o in stats.object_freq if o not in present and o not in mentioned]
    if not candidates:
        return None

    def score(o: str) -> tuple[int, int]:
        return sum(stats.cooc[p][o] for p in present if p in stats.cooc), stats.object_freq[o]

    obj = max(sorted(candidates), key=score)  # ties: alphabetical
    colour = stats.common_colour(obj) if stats.colours.get(obj) else None
    phrase = f"{colour} {obj}" if colour else obj
    last = listed[-1]
    phrase = f"{article(phrase)} {phrase}"
    ends_sentence = re.match(r"\s*(?:[.!?]|$)", text[last.end :])
    if ends_sentence and _only_lists_objects(text, _sentence_start(text, last.start), last.end, mentions):
        head = re.sub(r"\s+and\s+$", ", ", text[: last.start]) + text[last.start : last.end]
        new = f"{head} and {phrase}{text[last.end :]}"
    else:  # a verb or preposition governs the mention: add a sentence instead of changing this one
        body = text.rstrip()
        new = f"{body}{'' if body.endswith(('.', '!', '?')) else '.'} There is also {phrase}."
    return Edit("insert_object", new, {"object": obj, "colour": colour, "cooccurrence": score(obj)[0]})


def swap_attribute(sample: Sample, stats: DatasetStats, rng: np.random.Generator) -> Edit | None:
    """Replace one colour word with the most common other colour of its object."""
    text = sample.answer
    spans: list[tuple[int, int, str, str | None]] = []  # (start, end, colour, object)
    for m in find_mentions(text, stats):
        if m.colour:
            at = text.lower().index(m.colour, m.start)
            spans.append((at, at + len(m.colour), m.colour, m.obj))
        elif after := _colour_after(text, m, stats.colour_words):
            spans.append((after.start("col"), after.end("col"), after.group("col").lower(), m.obj))
    if not spans:
        cols = "|".join(re.escape(c) for c in stats.colour_words)
        for cm in re.finditer(rf"\b({cols})\b", text, re.IGNORECASE):
            spans.append((cm.start(), cm.end(), cm.group(1).lower(), None))
    options = [(s, e, c, o, new) for s, e, c, o in spans if (new := stats.common_colour(o, exclude=[c]))]
    if not options:
        return None
    start, end, old, obj, new = options[int(rng.integers(len(options)))]
    out = text[:start] + _match_case(new, text[start:end]) + text[end:]
    return Edit("swap_attribute", out, {"object": obj, "from": old, "to": new})


_YES_NO = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)


_TO_NO = (
    (re.compile(r"\b(is|are)\s+(?:a|an|some|one)\b", re.IGNORECASE), r"\1 no"),  # there is a X -> there is no X
    (re.compile(r"\b(has|have)\s+(?:a|an|some|one)\b", re.IGNORECASE), r"\1 no"),  # the image has a X -> has no X
    (re.compile(r"\b(is|are)\s+there\b", re.IGNORECASE), r"\1 not there"),  # a X is there -> a X is not there
)


def _to_yes(mm: re.Match[str]) -> str:
    """``is no X`` -> ``is a X``, ``has no X`` -> ``has a X``, ``are no Xs`` -> ``are Xs``."""
    verb, noun = mm.group(1), mm.group(2)
    return f"{verb} {article(noun)} {noun}" if verb.lower() in ("is", "has") else f"{verb} {noun}"


def flip_existence(sample: Sample, stats: DatasetStats) -> Edit | None:
    """Invert a yes/no answer: "Yes, there is a X" <-> "No, there is no X"; also "a X is [not] there" and
    "the image has a/no X" (the world's other phrasings, :mod:`unprior.world.phrasings`)."""
    text = sample.answer
    m = _YES_NO.match(text)
    if not m:
        return None
    was_yes = m.group(1).lower() == "yes"
    word = _match_case("no" if was_yes else "yes", m.group(1))
    rest = text[m.end() :]
    if was_yes:
        for pattern, repl in _TO_NO:  # the first form that matches
            rest, n = pattern.subn(repl, rest, count=1)
            if n:
                break
    else:
        rest = re.sub(r"\b(is|are|has|have)\s+no\s+(\w+)", _to_yes, rest, count=1, flags=re.IGNORECASE)
        rest = re.sub(r"\b(is|are)\s+not\b", r"\1", rest, count=1, flags=re.IGNORECASE)
    return Edit("flip_existence", text[: m.start(1)] + word + rest, {"from": m.group(1).lower()})


def apply_edit(name: str, sample: Sample, stats: DatasetStats, rng: np.random.Generator) -> Edit | None:
    if name == "insert_object":
        return insert_object(sample, stats)
    if name == "swap_attribute":
        return swap_attribute(sample, stats, rng)
    if name == "flip_existence":
        return flip_existence(sample, stats)
    raise ValueError(f"unknown rule edit {name!r}")


def rule_negatives(
    sample: Sample, stats: DatasetStats, edits: Sequence[str], max_negatives: int, seed: int
) -> list[Edit]:
    """Up to ``max_negatives`` single edits of ``sample.answer``, tried in a seeded per-sample order.

    Edits that do not apply (no indefinite mention to extend, no colour word, not a yes/no answer) or that leave
    the text unchanged are skipped; a sample no edit applies to gets none.
    """
    rng = np.random.default_rng(stable_seed(seed, "rules", sample.id))
    order = [edits[i] for i in rng.permutation(len(edits))]
    out: list[Edit] = []
    for name in order:
        edit = apply_edit(name, sample, stats, rng)
        if edit is not None and edit.text != sample.answer:
            out.append(edit)
            if len(out) == max_negatives:
                break
    return out
