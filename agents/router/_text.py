"""Text features for routing: clauses of a question and hashed word features.

A cross-domain question often asks two things in one breath ("…deposit back, and can I
deduct…"); the router scores each *clause* on its own as well as the whole question.
:func:`clause_spans` cuts at sentence ends, question marks, semicolons, commas and
coordinating conjunctions, and glues pieces shorter than three words back onto a
neighbour (so "ibuprofen and paracetamol" stays one clause). :func:`is_ask` tells a
clause that asks something from one that only sets the scene ("I rent a room from my
dad"): a question is multi-domain when it *asks* about several domains, not when its
story mentions them.

:func:`word_features` hashes a text's content words (lower-cased, cut to six letters, a
crude stem) into a fixed number of buckets: the linear model then sees the words a
domain uses ("deduct", "landlord", "prescription") next to the sentence embedding, which
is what lets it tell "dispute deductions from my deposit" from a tax question.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

__all__ = [
    "LEX_DIM",
    "batch_word_features",
    "clause_spans",
    "clauses",
    "is_ask",
    "mentions_ask",
    "normalize",
    "strip_lead",
    "word_features",
]

LEX_DIM = 2048
"""Hash buckets for word features."""

MIN_CLAUSE_WORDS = 3

_SPLIT = re.compile(
    r"(?<=[.?!])\s+(?=\S)"  # sentence or question boundary
    r"|\s*;\s*"  # semicolon
    r"|,\s+(?:and\s+|but\s+|also,?\s+|so\s+|or\s+)?"  # comma, with a connective
    r"|\s+(?:and also|as well as|and|but)\s+",  # conjunction
    re.I,
)
_LEAD = re.compile(r"^(?:and|also|plus|but|so|or)\b[,\s]*", re.I)
_TAIL = re.compile(r"(?<=[?.!])\s+(?:and|also|plus|but|so|or)$", re.I)
_ASK = re.compile(
    r"^(?:can|could|is|isn't|are|aren't|do|does|did|how|what|what's|when|when's|where|which|"
    r"who|whom|whose|why|should|would|will|am|may|might|must|has|have|was|were|shall)\b",
    re.I,
)
_WH = re.compile(r"\b(?:how|what|what's|which|whether)\b", re.I)
_WORD = re.compile(r"[a-z0-9']+")
_STOP_WORDS = """a an the i my me we our you your is are was were be been am do does did to
of in on for at by with from and or but if it its this that can could should would will shall
may might must how what when where which who why much many any some there their they he she
his her them us so as not no than then too very just about into up out over after before"""
_STOP = frozenset(_STOP_WORDS.split())


def _words(span: str) -> int:
    return len(_LEAD.sub("", span).split())


def clause_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each clause of ``text`` (one span when it has a single clause)."""
    spans: list[list[int]] = []
    pos = 0
    for m in _SPLIT.finditer(text):
        if m.start() > pos:
            spans.append([pos, m.start()])
        pos = m.end()
    if pos < len(text):
        spans.append([pos, len(text)])
    out: list[list[int]] = []
    for span in spans:
        if out and _words(text[span[0] : span[1]]) < MIN_CLAUSE_WORDS:
            out[-1][1] = span[1]  # too short to stand alone: glue to the previous clause
        else:
            out.append(span)
    if len(out) > 1 and _words(text[out[0][0] : out[0][1]]) < MIN_CLAUSE_WORDS:
        out[1][0] = out[0][0]
        out = out[1:]
    if len(out) <= 1:
        return [(0, len(text))]
    return [(a, b) for a, b in out]


def clauses(text: str) -> list[str]:
    """The clauses of ``text`` without leading connectives (``[text]`` for one clause)."""
    spans = clause_spans(text)
    if len(spans) == 1:
        return [text]
    return [_LEAD.sub("", text[a:b]).strip(" ,.;") for a, b in spans]


def strip_lead(text: str) -> str:
    """A clause without its leading connective ("and …", "also, …"), a connective left
    after its question mark ("…like this? Also") and edge punctuation."""
    return _TAIL.sub("", _LEAD.sub("", text.strip(" ,;")).strip(" ,;"))


def is_ask(clause: str) -> bool:
    """Whether a clause asks something (ends with "?" or opens like a question)."""
    clause = clause.strip()
    return clause.endswith("?") or bool(_ASK.match(clause))


def mentions_ask(clause: str) -> bool:
    """Whether a clause asks something, or holds a question after its scene-setting ("I'm
    moving out soon: what's the deadline …", "From which week …"): :func:`is_ask`, or a
    how/what/which/whether in it."""
    return is_ask(clause) or bool(_WH.search(clause))


def normalize(text: str) -> str:
    """A question's identity for de-duplication: lower-case, single spaces, no end punctuation."""
    return " ".join(text.lower().split()).strip(" ?.!")


def word_features(text: str) -> tuple[list[int], list[float]]:
    """Hashed content-word features of ``text``: bucket indices and L2-normalised values."""
    words = [w for w in _WORD.findall(text.lower().replace("\u2019", "'")) if w not in _STOP]
    buckets = sorted(
        {zlib.crc32(w.removesuffix("'s")[:6].encode()) % LEX_DIM for w in words if w != "'"}
    )
    if not buckets:
        return [], []
    value = 1.0 / len(buckets) ** 0.5
    return buckets, [value] * len(buckets)


def batch_word_features(
    texts: Sequence[str],
) -> tuple[list[int], list[int], list[float]]:
    """:func:`word_features` of many texts as (row, column, value) triplets."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, text in enumerate(texts):
        c, v = word_features(text)
        rows.extend([r] * len(c))
        cols.extend(c)
        vals.extend(v)
    return rows, cols, vals
