"""The offline tokenizer and WordNet noun-lemma table that stand in for NLTK in CHAIR and AMBER."""

from __future__ import annotations

import pytest

from unprior.eval.text import lemma_table, lemmatize, uncovered, word_tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A dog's bone, and two cats.", ["A", "dog", "'s", "bone", ",", "and", "two", "cats", "."]),
        ("No, there is not.", ["No", ",", "there", "is", "not", "."]),
        ("Yes.", ["Yes", "."]),
        ("There is a dog", ["There", "is", "a", "dog"]),
        ("", []),
        # sentence-final periods split, sentence-internal ones kept: "3.5", "mr.", "e.g." (Punkt breaks after it)
        ("There are 3.5 pizzas, e.g. pepperoni. Mr. Smith eats them.",
         ["There", "are", "3.5", "pizzas", ",", "e.g", ".", "pepperoni", ".", "Mr.", "Smith", "eats", "them", "."]),
        # hyphens and slashes stay inside a token (so "teddy-bear" is not "teddy bear"), quotes become `` ''
        ('A teddy-bear (brown); a "wine glass" and a cat/dog!',
         ["A", "teddy-bear", "(", "brown", ")", ";", "a", "``", "wine", "glass", "''", "and", "a", "cat/dog", "!"]),
        ("The man isn't holding a frisbee... He's holding a kite?",
         ["The", "man", "is", "n't", "holding", "a", "frisbee", "...", "He", "'s", "holding", "a", "kite", "?"]),
        ("the women's bags are on the chairs' seats.",
         ["the", "women", "'s", "bags", "are", "on", "the", "chairs", "'", "seats", "."]),
        ("1. a dog\n2. a cat", ["1.", "a", "dog", "2.", "a", "cat"]),
    ],
)
def test_word_tokenize(text, tokens):
    assert word_tokenize(text) == tokens


@pytest.mark.parametrize(
    ("token", "lemma"),
    # observed WordNetLemmatizer (noun) outputs, including its quirks
    [("children", "child"), ("knives", "knife"), ("skis", "ski"), ("buses", "bus"), ("mice", "mouse"),
     ("glasses", "glass"), ("oxen", "ox"), ("geese", "goose"), ("women", "woman"), ("men", "men"),
     ("people", "people"), ("hairdryers", "hairdryers"), ("tvs", "tv"), ("dogs", "dog"), ("Dogs", "Dogs"),
     ("scissors", "scissors"), ("sheep", "sheep"), ("puppies", "puppy"), ("benches", "bench")],
)
def test_lemmatize_matches_wordnet(token, lemma):
    assert lemmatize(token) == lemma


def test_rule_fallback_only_reaches_the_vocabulary():
    assert "zorbs" not in lemma_table()
    assert lemmatize("zorbs") == "zorbs"
    assert lemmatize("zorbs", frozenset({"zorb"})) == "zorb"
    assert lemmatize("boxes", frozenset({"box"})) == "box"
    assert uncovered(["dog", "zorb"]) == ["zorb"]


def test_matches_nltk_where_available():
    """Cross-check against the real NLTK tokenizer (Punkt + Treebank) when nltk and a Punkt model are installed."""
    nltk = pytest.importorskip("nltk")
    try:
        reference = nltk.word_tokenize
        reference("A test.")
    except LookupError:
        pytest.skip("NLTK's punkt_tab data is not installed")
    texts = ["The image shows a man riding a motor bike. There are two hot dogs on the table.",
             "a baby elephant walks next to an adult elephant. the toilet seat is up.",
             "people walking on the street, with buses and cars.",
             "Two zebras and a giraffe stand in the grass near trees. In the background, there are mountains."]
    for text in texts:
        assert word_tokenize(text) == reference(text)
        assert word_tokenize(text.lower()) == reference(text.lower())
