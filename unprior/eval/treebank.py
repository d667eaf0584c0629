"""``nltk.word_tokenize`` without NLTK data: Punkt sentences (:mod:`unprior.eval.punkt`), then NLTK's Treebank rules.

The original CHAIR scorer tokenizes with ``nltk.word_tokenize(caption.lower())``: Punkt splits the text into
sentences, and ``NLTKWordTokenizer`` (NLTK's revision of the Penn Treebank tokenizer) splits each sentence. This
module applies the second step's documented regex rules in nltk 3.10.4's order (``nltk/tokenize/destructive.py``),
each as a substitution on the padded sentence string, which is finally split on whitespace:

1. starting quotes: curly openers, guillemets and backticks are padded; a leading ``"`` becomes `````; ``"`` or
   ``''`` after a space or an opening bracket becomes `````; a word-initial apostrophe that does not start a clitic
   is split off ("'dog" -> "'", "dog");
2. punctuation: the sentence-final period (before any closing quotes or brackets) is split off; ``,`` and ``:``
   are split unless a digit follows ("3,5" stays); ellipses, ``; @ # $ % &``, figure and en/em dashes, ``?``,
   ``!`` and ``*`` are split everywhere; a period inside the sentence stays in its token ("e.g", "3.5", "mr.");
3. brackets ``()[]{}<>`` and double dashes are split;
4. ending quotes: curly closers (the right single quote ``’`` too, so "dog’s" -> "dog", "’", "s"), ``''`` and
   ``"`` become ``''``; the clitics ``'s 'm 'd 'll 're 've n't`` and a bare ``'`` are split from the word before;
5. contractions: "cannot", "gimme", "gonna", "gotta", "lemme", "more'n", "wanna", "d'ye", "'tis", "'twas" are split
   in two.

Hyphens and slashes never split ("teddy-bear", "cat/dog" stay one token). Version: nltk 3.10.4, the latest
release. nltk 3.9 differs in two rules: it does not split figure, en and em dashes ("dog—cat" stays one token), and
it splits an apostrophe only from a following one-letter word ("'a"), not from any word ("'dog"). See
:mod:`unprior.eval.punkt` for the exactness of the sentence split (exact on lowercased text) and for the ``re``
versus ``regex`` engine note, which applies here too.
"""

from __future__ import annotations

import re

from unprior.eval.punkt import PUNKT_VERSION, sentences

TREEBANK_VERSION = f"{PUNKT_VERSION}+nltk3.10.4-treebank-v1"

_Rules = tuple[tuple[re.Pattern[str], str], ...]


def _compile(*rules: tuple[str, str]) -> _Rules:
    return tuple((re.compile(pattern), replacement) for pattern, replacement in rules)


_STARTING_QUOTES = _compile(
    ("([«“‘„]|[`]+)", r" \1 "),
    (r'^"', "``"),
    ("(``)", r" \1 "),
    (r"([ (\[{<])(\"|'{2})", r"\1 `` "),
    (r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "),
)
# The first rule's class holds a space; nltk 3.10.4 writes its star possessive, which selects the same spans here
# because only whitespace may follow the run.
_PUNCTUATION = _compile(
    (r"([^.])(\.)([\])}>\"'»”’ ]*)\s*$", r"\1 \2 \3 "),
    (r"([:,])([^\d])", r" \1 \2"),
    (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "),
    (r"[;@#$%&]", r" \g<0> "),
    ("[\u2012-\u2015]", r" \g<0> "),
    (r"([^.])(\.)([\])}>\"']*)\s*$", r"\1 \2\3 "),
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[*]", r" \g<0> "),
)
_BRACKETS_AND_DASHES = _compile((r"[\]\[(){}<>]", r" \g<0> "), ("--", " -- "))
_ENDING_QUOTES = _compile(
    ("([»”’])", r" \1 "),
    ("''", " '' "),
    ('"', " '' "),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
)
_CONTRACTIONS = _compile(*((p, r" \1 \2 ") for p in (
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b", r"(?i)\b(got)(ta)\b",
    r"(?i)\b(lem)(me)\b", r"(?i)\b(more)('n)\b", r"(?i)\b(wan)(na)(?=\s)", r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b",
)))


def _apply(rules: _Rules, text: str) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def treebank_tokenize(sentence: str) -> list[str]:
    """``nltk.tokenize.NLTKWordTokenizer().tokenize(sentence)`` (nltk 3.10.4, default arguments).

    Args:
        sentence: One sentence (a period is split off only at its end).

    Returns:
        The tokens, e.g. ``'the dog’s "ball" (red), isn\\'t it?'`` -> ``["the", "dog", "’", "s", "``", "ball",
        "''", "(", "red", ")", ",", "is", "n't", "it", "?"]``.
    """
    text = _apply(_PUNCTUATION, _apply(_STARTING_QUOTES, sentence))
    text = " " + _apply(_BRACKETS_AND_DASHES, text) + " "
    return _apply(_CONTRACTIONS, _apply(_ENDING_QUOTES, text)).split()


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` (English, nltk 3.10.4 with ``punkt_tab``): exact on text without capitals.

    Args:
        text: Any text; CHAIR passes a lowercased caption.

    Returns:
        The tokens of every sentence in order, e.g. ``"a dog. mr. smith’s cat sits on 2 chairs."`` -> ``["a",
        "dog", ".", "mr.", "smith", "’", "s", "cat", "sits", "on", "2", "chairs", "."]``.
    """
    return [token for sentence in sentences(text) for token in treebank_tokenize(sentence)]
