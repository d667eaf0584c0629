"""``pattern.en.singularize`` (pattern 3.6), the number normalisation of the original CHAIR scorer.

``LisaAnne/Hallucination:utils/chair.py`` (Rohrbach et al., EMNLP 2018) runs ``singularize`` on every token of a
lowercased caption. pattern 3.6 cannot be installed here, so this module re-implements the function from its
documented behaviour (``clips/pattern:pattern/text/en/inflect.py``, BSD licence; its rules were adapted from Bermi
Ferrer's Inflector, MIT). A token goes through these steps, and the first one that applies decides:

1. A hyphenated word whose second part is a preposition singularizes its first part ("mothers-in-law").
2. A word ending in an apostrophe becomes the singular of the rest plus ``'s`` ("dogs'" -> "dog's"; a lone "'"
   becomes "'s").
3. Uninflected and uncountable words are returned unchanged. The reference tests whether some listed word *ends
   with the token*, not the other way round, so every suffix of a listed word is kept too ("a" from "tuna", "ears"
   from "shears").
4. A plural of a listed -ie noun is returned unchanged, plural included ("doggies", "collies", "cookies"). Two entries
   are written "^pie" and "^tie" as if they were regex anchors, but they are compared literally, so "pies" and "ties"
   fall through to the rules ("py", "ty").
5. Irregular plurals, matched as suffixes ("women" -> "woman", "people" -> "person", and "your" -> "ymy" through
   "our" -> "my").
6. The first matching suffix rule; the last one strips any final "s", so singular words ending in "s" lose it:
   "bus" -> "bu", "glass" -> "glas", "tennis" -> "tenni".

For CHAIR this means: "men" is *person* (WordNet keeps "men"); the singular "bus" never matches the *bus* class
("buses" does); "ties", "doggies" and "collies" never match; "wine glass" becomes "wine glas", which the reference
maps back with a dedicated bigram.

Deviations: none in behaviour. The reference's ``pos`` and ``custom`` arguments are not offered (CHAIR passes
neither). Word lists and rule order are pattern 3.6's; pattern 2.6 differs only in three missing commas in its lists
("wildebeest" "carp", "water" "cheese", "zombie" "bogie" were glued together), which changes no COCO word.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _words(text: str) -> list[str]:
    """A whitespace-separated word list (long lists stay readable as text)."""
    return text.split()

SINGULARIZE_VERSION = "pattern3.6-singularize-v1"

_PREPOSITIONS = frozenset(_words("""
    about above across after among around at athwart before behind below beneath beside besides between betwixt
    beyond but by during except for from in into near of off on onto out over since till to under until unto upon
    with"""))

# Step 3: a token that is a suffix of one of these words is returned as is.
_UNCHANGED = frozenset(_words("""
    bison bream breeches britches carp chassis christmas clippers cod contretemps corps debris diabetes djinn eland elk
    flounder gallows georgia graffiti headquarters herpes high-jinks homework innings jackanapes mackerel measles mews
    mumps news pincers pliers proceedings rabies salmon scissors series shears species swine swiss trout tuna whiting
    wildebeest
    advice bread butter cheese electricity equipment fruit furniture garbage gravel happiness information ketchup
    knowledge love luggage mathematics mayonnaise meat mustard progress research rice sand software understanding
    water"""))

# Step 4: a token ending in one of these plus "s" is returned (lowercased) as is. "^pie" and "^tie" never match.
_IE_NOUNS = tuple(_words("""
    alergie auntie beanie birdie bogie bombie collie cookie cutie doggie eyrie freebie goonie groupie hankie
    hippie hoagie hottie indie junkie laddie laramie lingerie meanie newbie nightie oldie pixie quickie reverie rookie
    softie sortie stoolie sweetie techie toughie valkyrie veggie weenie yuppie zombie ^pie ^tie"""))

# Step 5: plural suffix -> singular suffix (no plural here is a suffix of another, so their order does not matter).
_IRREGULAR = {
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef", "brethren": "brother",
    "children": "child", "corpora": "corpus", "corpuses": "corpus", "ephemerides": "ephemeris", "feet": "foot",
    "ganglia": "ganglion", "geese": "goose", "genera": "genus", "genii": "genie", "graffiti": "graffito",
    "helves": "helve", "kine": "cow", "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose",
    "monies": "money", "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox", "penes": "penis",
    "penises": "penis", "people": "person", "sexes": "sex", "soliloquies": "soliloquy", "teeth": "tooth",
    "testes": "testis", "trilbys": "trilby", "turves": "turf", "zoa": "zoon",
}

_I = re.IGNORECASE
# Step 6, in the reference's order: (pattern, replacement, flags). Groups that did not take part in a match are
# replaced by "" (as the reference arranges explicitly). Note the accidental character classes: "[octop|vir]" is
# any of o c t p | v i r, and "[m|l]" is m, | or l (so "slice" -> "slouse"); "^(ox)en" is not anchored at the end.
_RULES = tuple((re.compile(p, f), r) for p, r, f in (
    (r"(.)ae$", r"\1a", _I), (r"(.)itis$", r"\1itis", _I), (r"(.)eaux$", r"\1eau", _I),
    (r"(quiz)zes$", r"\1", _I), (r"(matr)ices$", r"\1ix", _I), (r"(ap|vert|ind)ices$", r"\1ex", _I),
    (r"^(ox)en", r"\1", _I), (r"(alias|status)es$", r"\1", _I), (r"([octop|vir])i$", r"\1us", _I),
    (r"(cris|ax|test)es$", r"\1is", _I), (r"(shoe)s$", r"\1", _I), (r"(o)es$", r"\1", _I),
    (r"(bus)es$", r"\1", _I), (r"([m|l])ice$", r"\1ouse", _I), (r"(x|ch|ss|sh)es$", r"\1", _I),
    (r"(m)ovies$", r"\1ovie", _I), (r"(.)ombies$", r"\1ombie", _I), (r"(s)eries$", r"\1eries", _I),
    (r"([^aeiouy]|qu)ies$", r"\1y", _I),
    # -f / -fe plurals in -ves; the first six are case-sensitive in the reference.
    (r"([aeo]l)ves$", r"\1f", 0), (r"([^d]ea)ves$", r"\1f", 0), (r"arves$", "arf", 0), (r"erves$", "erve", 0),
    (r"([nlw]i)ves$", r"\1fe", 0), (r"([lr])ves$", r"\1f", _I), (r"([aeo])ves$", r"\1ve", 0),
    (r"(sive)s$", r"\1", _I), (r"(tive)s$", r"\1", _I), (r"(hive)s$", r"\1", _I), (r"([^f])ves$", r"\1fe", _I),
    # -ses: the second rule keeps its inner group, so "psychoanalyses" -> "psychoanalyasis", "bases" -> "basis".
    (r"(^analy)ses$", r"\1sis", _I),
    (r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis", _I),
    (r"(.)opses$", r"\1opsis", _I), (r"(.)yses$", r"\1ysis", _I), (r"(h|d|r|o|n|b|cl|p)oses$", r"\1ose", _I),
    (r"(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose", _I), (r"(.)oses$", r"\1osis", _I),
    (r"([ti])a$", r"\1um", _I), (r"(n)ews$", r"\1ews", _I),
    (r"s$", "", _I),
))


def _kept(lowered: str) -> bool:
    """Step 3: the token is a suffix of an uninflected or uncountable word (the empty token always is)."""
    return any(word.endswith(lowered) for word in _UNCHANGED)


def _irregular(word: str, lowered: str) -> str | None:
    """Step 5: replace an irregular plural suffix, matching case-insensitively."""
    for plural, singular in _IRREGULAR.items():
        if lowered.endswith(plural):
            return re.sub(f"(?i){plural}$", singular, word)
    return None


def _by_rule(word: str) -> str:
    """Step 6: the first suffix rule that matches, else the word unchanged."""
    for pattern, replacement in _RULES:
        if pattern.search(word):
            return pattern.sub(replacement, word)
    return word


@lru_cache(maxsize=1 << 16)
def singularize(word: str) -> str:
    """The singular of ``word`` exactly as ``pattern.en.singularize(word)`` (pattern 3.6) returns it.

    Args:
        word: One token (CHAIR passes lowercased ``nltk.word_tokenize`` tokens).

    Returns:
        The reference's singular, quirks included: ``"dogs"`` -> ``"dog"``, ``"men"`` -> ``"man"``, ``"bus"`` ->
        ``"bu"``, ``"ties"`` -> ``"ty"``, ``"doggies"`` -> ``"doggies"``.
    """
    if "-" in word:
        head, *rest = word.split("-")
        if rest[0] in _PREPOSITIONS:
            return "-".join([singularize(head), *rest])
    if word.endswith("'"):
        return singularize(word[:-1]) + "'s"
    lowered = word.lower()
    if _kept(lowered):
        return word
    if any(lowered.endswith(noun + "s") for noun in _IE_NOUNS):
        return lowered
    irregular = _irregular(word, lowered)
    return irregular if irregular is not None else _by_rule(word)
