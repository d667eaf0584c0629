"""Offline stand-ins for the NLTK calls the CHAIR and AMBER reference scorers make.

The reference scorers call ``nltk.word_tokenize`` (Punkt sentence splitting, then the Treebank word tokenizer) and
``WordNetLemmatizer().lemmatize(token)`` (noun POS). Both need NLTK data that is normally fetched with
``nltk.download``, which an offline toolkit cannot do (see docs/eval.md, "NLP without downloads"). This module
provides:

- :func:`word_tokenize`: a small rule-based tokenizer that follows the Treebank conventions that matter for object
  words: the sentence-final period, commas, quotes, brackets and clitics (``'s``, ``n't``) are split off; hyphens,
  slashes and sentence-internal periods stay inside a token. It is an approximation: Punkt's abbreviation model is
  replaced by "a word ending in a period is sentence-final unless it is a single letter or contains another
  period". ``tests/eval/test_text.py`` compares it with NLTK where NLTK is installed.
- :func:`lemmatize`: exact WordNet noun lemmas for every token in a shipped table (``data/noun_lemmas.txt``),
  generated once with the real ``WordNetLemmatizer`` over the CHAIR and AMBER vocabularies, their regular plural
  forms and WordNet's irregular noun exceptions (:func:`build_lemma_table`). For any other token a rule-based
  fallback reverses WordNet's noun suffix rules, accepting a base form only if it is in the caller's vocabulary.
  Inside the shipped vocabularies the result equals WordNet's, quirks included ("men" stays "men", "glasses"
  becomes "glass").

Version strings: :data:`TOKENIZER_VERSION` and :data:`LEMMATIZER_VERSION` go into every results file that used
them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib import resources

TOKENIZER_VERSION = "treebank-approx-v1"
LEMMATIZER_VERSION = "wordnet3.0-noun-table-v1"

# WordNet's noun detachment rules (suffix -> replacement), as documented for morphy(7WN).
_NOUN_RULES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
               ("ies", "y"))
_CLITIC = re.compile(r"(?i)^(.+?)('s|'re|'ve|'ll|'d|'m|n't|')$")
_LEADING = "\"'`([{<"
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "prof"})
_TRAILING = "\"'`)]}>,;:!?"


def _split_sentences(text: str) -> list[str]:
    """Split after ``.``, ``!`` or ``?`` followed by whitespace, except after initials, numbers and abbreviations."""
    sentences, start = [], 0
    for m in re.finditer(r"[.!?]+[\"')\]]*\s+", text):
        words = text[start : m.end()].split()
        core = words[-1].rstrip("\"')]") if words else ""
        if core.endswith(".") and not core.endswith("..."):
            stem = core[:-1].lower()
            if (len(stem) == 1 and stem.isalpha()) or stem.isdigit() or stem in _ABBREVIATIONS:
                continue  # "j. smith", "1. a dog", "mr. smith": Punkt does not break here
        sentences.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def _split_chunk(chunk: str, last: bool) -> list[str]:
    """Tokens of one whitespace-delimited chunk; ``last`` marks the sentence's final chunk."""
    head: list[str] = []
    while chunk and chunk[0] in _LEADING and len(chunk) > 1:
        head.append(chunk[0])
        chunk = chunk[1:]
    tail: list[str] = []
    while chunk and (chunk[-1] in _TRAILING or (last and chunk[-1] == ".")) and len(chunk) > 1:
        if chunk.endswith("..."):
            tail.insert(0, "...")
            chunk = chunk[:-3]
            continue
        tail.insert(0, chunk[-1])
        chunk = chunk[:-1]
    body = [p for p in re.split(r"((?<!\d)[,;]|[,;](?!\d))", chunk) if p]
    out: list[str] = []
    for part in body:
        m = _CLITIC.match(part)
        out.extend([m.group(1), m.group(2)] if m and part not in ("'",) else [part])
    head = ["``" if t == '"' else t for t in head]
    tail = ["''" if t == '"' else t for t in tail]
    return head + out + tail


def word_tokenize(text: str) -> list[str]:
    """Approximate ``nltk.word_tokenize``: sentence split, then Treebank-style punctuation and clitic splitting.

    Args:
        text: Any text; case is preserved.

    Returns:
        The tokens, e.g. ``"A dog's bone, and two cats."`` -> ``["A", "dog", "'s", "bone", ",", "and", "two",
        "cats", "."]``.
    """
    tokens: list[str] = []
    for sentence in _split_sentences(text):
        chunks = sentence.split()
        for i, chunk in enumerate(chunks):
            tokens.extend(_split_chunk(chunk, last=i == len(chunks) - 1))
    return tokens


@cache
def lemma_table() -> dict[str, str]:
    """The shipped WordNet noun-lemma table: ``{token: lemma}`` (lowercase keys)."""
    text = resources.files("unprior.eval").joinpath("data/noun_lemmas.txt").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            token, lemma = line.split("\t")
            table[token] = lemma
    return table


def _rule_lemma(token: str, vocabulary: frozenset[str]) -> str:
    for suffix, repl in _NOUN_RULES:
        if token.endswith(suffix):
            base = token[: len(token) - len(suffix)] + repl
            if base in vocabulary:
                return base
    return token


def lemmatize(token: str, vocabulary: frozenset[str] = frozenset()) -> str:
    """WordNet noun lemma of ``token`` (exact inside the shipped table; see the module docstring otherwise).

    Like ``WordNetLemmatizer``, a token containing capitals is looked up as is, so "Dogs" stays "Dogs".

    Args:
        token: One token from :func:`word_tokenize`.
        vocabulary: Words the caller can match; the rule-based fallback only returns a base form from this set.
    """
    table = lemma_table()
    if token in table:
        return table[token]
    return _rule_lemma(token, vocabulary)


def uncovered(words: Iterable[str]) -> list[str]:
    """Words of a vocabulary that the shipped table does not cover (their plurals fall back to rules)."""
    table = lemma_table()
    return sorted({w for w in words if w not in table})


def build_lemma_table(words: Iterable[str]) -> dict[str, str]:  # pragma: no cover - needs NLTK and WordNet
    """Generate :func:`lemma_table` entries with the real ``WordNetLemmatizer`` (run once, offline, by a maintainer).

    Candidates are every word, its regular noun inflections (the reverse of WordNet's suffix rules) and every
    ``noun.exc`` exception whose base is a word. A candidate is kept when it or its lemma is one of ``words``, or
    when the rule fallback would get it wrong ("men" stays "men" in WordNet, the rules would give "man").

    Args:
        words: The single-word vocabulary to cover (multi-word entries should be split by the caller).

    Returns:
        ``{candidate: lemma}``, identity entries included so that the rule fallback is never consulted for them.
    """
    from nltk.corpus import wordnet as wn
    from nltk.stem import WordNetLemmatizer

    vocab = {w for w in words if w}
    lemmatizer = WordNetLemmatizer()
    candidates = set(vocab)
    for word in vocab:
        candidates |= {word + "s", word + "es"}
        if word.endswith("y"):
            candidates.add(word[:-1] + "ies")
        if word.endswith("man"):
            candidates.add(word[:-3] + "men")
    for inflected, bases in wn._exception_map["n"].items():
        if vocab.intersection(bases):
            candidates.add(inflected)
    table = {}
    for cand in sorted(candidates):
        lemma = lemmatizer.lemmatize(cand)
        if cand in vocab or lemma in vocab or _rule_lemma(cand, frozenset(vocab)) != lemma:
            table[cand] = lemma
    return table
