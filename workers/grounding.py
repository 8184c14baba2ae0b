"""Is an answer backed by its passages? Checks a small model cannot talk its way around.

An answer's *checkable spans* — amounts, percentages, durations, dates, bare numbers and
capitalised names — are looked up in the passages it cites and in every retrieved
passage. A number is matched as a number (``1,661`` = ``1661``), with its unit when it has
one (``21 days`` is not backed by a passage that says ``21 weeks``). Plain text is
compared case- and whitespace-insensitively.

Two checks look at *where* in the passages the answer comes from. The passages' sentences
that share the most content words with the question (:func:`ask_sentences`) are where its
specific ask is answered, if anywhere; :func:`ask_support` is the share of the answer's
terms found there. A small model that copies a true but unrelated figure from elsewhere
in a passage (the 21-day return deadline for the adjudicator's 28 days) scores low, and so
does one that answers an ask the passages never address. :func:`asked_kind` reads which
kind of quantity the question asks for (a duration, a percentage, an amount of money), so
that an answer stating none of that kind can be told apart. :func:`answer_sentences` are the
passage sentences that hold the answer (its numbers, or most of its words): how closely
the best of them matches the question under the worker's embedder is the
``answer_locus`` signal (:mod:`tandem.workers.ask`).

The checks are lexical and cheap (well under a millisecond per answer); they do not
understand paraphrase, which is why they are signals for
:mod:`tandem.workers.calibration`, not verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Span",
    "answer_sentences",
    "ask_overlap",
    "ask_sentences",
    "ask_support",
    "asked_kind",
    "content_words",
    "find_spans",
    "is_not_covered",
    "question_overlap",
    "sentences",
    "supported",
    "unsupported_spans",
]

_NUM = r"\d+(?:[.,]\d+)*"
_UNIT = (
    r"(?:(?:working |business |calendar )?days?|weeks?|months?|years?|hours?|minutes?|"
    r"mg|ml|g|kg|micrograms?|mcg|tablets?|capsules?|doses?|times?)"
)
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
)
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "amount",
        re.compile(
            rf"\b(?:VC|[$€£])\s?{_NUM}\b|{_NUM}\s?(?:VC|crowns?|(?:Velorian )?crowns?)\b", re.I
        ),
    ),
    ("percentage", re.compile(rf"{_NUM}\s?(?:%|per ?cent\b)", re.I)),
    ("date", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s{_MONTH}\b|\b{_MONTH}\s\d{{1,2}}\b")),
    ("duration", re.compile(rf"\b{_NUM}\s?(?:-|to\s)?\s?{_UNIT}\b", re.I)),
    ("number", re.compile(rf"(?<![\w.]){_NUM}(?!\w)")),
)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:of\s+|the\s+)?[A-Z][a-z]+)*")
_NOT_NAME_WORDS = "The A An If Yes No You Your It This That In For Under When Not I VC Only Also"
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())
_NUMBER = re.compile(_NUM)
# Terminal control sequences (OSC titles, CSI codes, other C0 controls) are no claim: the
# output sanitiser drops them before anyone sees the answer, so their digits are not spans.
_CONTROL = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b.?|[\x00-\x08\x0b-\x1f\x7f]"
)
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = (
    "a an and are as at be by can do does for from how i if in is it my of on or the to what "
    "when which who why will with you your me we our this that there their they than then so "
    "not no"
)
_STOP = frozenset(_STOP_WORDS.split())
_TERM = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_ASKED: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "duration",
        re.compile(
            r"\bhow (?:long|soon|quickly|often|far ahead)\b|\bhow many (?:working |calendar |"
            r"business )?(?:days|weeks|months|years|hours|minutes)\b|\bin (?:days|weeks|months|"
            r"years|hours)\b",
            re.I,
        ),
    ),
    ("percentage", re.compile(r"\bpercentage\b|\bper ?cent\b|\bwhat (?:interest )?rate\b", re.I)),
    ("amount", re.compile(r"\b(?:cost|costs|fee|fine|price|penalty|charge)\b", re.I)),
)
_NOT_COVERED = re.compile(
    r"not covered|(?:do|does|did) not (?:say|cover|mention|specify|state|provide|include|"
    r"contain|give)|no (?:information|mention|details?)|not (?:mentioned|specified|stated|"
    r"provided|included|available|given)|cannot (?:find|answer|determine|say)|can't (?:find|"
    r"answer|say)|unable to|isn't (?:mentioned|stated|specified|covered)|unknown",
    re.I,
)


@dataclass(frozen=True)
class Span:
    """A checkable piece of an answer."""

    kind: str
    """``amount``, ``percentage``, ``date``, ``duration``, ``number`` or ``name``."""
    text: str
    """The span as the answer wrote it."""

    def __str__(self) -> str:
        return f"{self.kind} {self.text}"


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def _digits(number: str) -> str:
    return number.replace(",", "")


def find_spans(answer: str) -> list[Span]:
    """The checkable spans of an answer, in order of kind (a number inside an amount,
    percentage, date or duration is not counted again on its own)."""
    answer = _CONTROL.sub(" ", answer)
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _KINDS:
        for m in pattern.finditer(answer):
            if any(a <= m.start() < b or a < m.end() <= b for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            spans.append(Span(kind, m.group(0).strip()))
    for m in _NAME.finditer(answer):
        words = m.group(0).split()
        before = answer[: m.start()].rstrip()
        if not before or before[-1] in ".!?:;\"'(":  # a sentence's first word is not a name
            words = words[1:]
        words = [w for w in words if w not in _NOT_NAMES]
        while words and words[0] in ("of", "the"):
            words = words[1:]
        if words:
            spans.append(Span("name", " ".join(words)))
    return spans


def _unit_of(span: str) -> str:
    """The unit words after the number(s), singular (``weeks'`` → ``week``)."""
    words = _WORD.findall(_NUMBER.sub(" ", span.lower()))
    return " ".join(w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words)


def supported(span: Span, text: str) -> bool:
    """Whether ``text`` (a passage, or several joined) backs the span."""
    norm = _norm(text)
    if span.kind == "name":
        return _norm(span.text) in norm
    numbers = [_digits(n) for n in _NUMBER.findall(span.text)]
    if not numbers:
        return _norm(span.text) in norm
    present = {_digits(n) for n in _NUMBER.findall(text)}
    if not all(n in present for n in numbers):
        return False
    unit = _unit_of(span.text) if span.kind in ("duration", "date") else ""
    if not unit:
        return True
    # The number must appear with the same unit: "21 days" is not backed by "21 weeks".
    for m in _NUMBER.finditer(text):
        if _digits(m.group(0)) == numbers[-1]:
            after = _unit_of(text[m.end() : m.end() + 24])
            if after.startswith(unit) or unit.split()[-1] in after.split()[:3]:
                return True
    return False


def is_not_covered(answer: str) -> bool:
    """Whether the answer says the passages do not cover the question."""
    return bool(_NOT_COVERED.search(answer))


def content_words(text: str) -> set[str]:
    """Lower-cased content words (stop words and one-letter words dropped)."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def question_overlap(answer: str, question: str) -> float:
    """Share of the answer's content words that only restate the question (0 for an empty
    answer): an answer made of the question's own words says little."""
    words = content_words(answer)
    return len(words & content_words(question)) / len(words) if words else 0.0


def unsupported_spans(spans: Sequence[Span], text: str) -> list[Span]:
    """The spans ``text`` does not back."""
    return [s for s in spans if not supported(s, text)]


def sentences(text: str) -> list[str]:
    """A passage's sentences (and title lines), in order."""
    return [t.strip() for t in _SENTENCE_END.split(text) if len(t.strip()) > 3]


def _terms(text: str) -> set[str]:
    """Content words and whole numbers (``1,661`` → ``1661``; ``5.5`` kept) of a text."""
    out = set()
    for t in _TERM.findall(text.lower()):
        if t[0].isdigit():
            out.add(t.replace(",", ""))
        elif t not in _STOP and len(t) > 1:
            out.add(t)
    return out


def ask_sentences(question: str, passages: Sequence[str], k: int = 2) -> list[str]:
    """The ``k`` sentences of the passages that share the most content words with the
    question (earlier sentences first on ties)."""
    asked = _terms(question)
    found = [s for p in passages for s in sentences(p)]
    order = sorted(range(len(found)), key=lambda i: (-len(asked & _terms(found[i])), i))
    return [found[i] for i in order[:k]]


def ask_overlap(question: str, sentence: str) -> float:
    """Share of the question's content words (and numbers) that ``sentence`` holds — the
    measure :func:`ask_sentences` ranks by, as a fraction."""
    asked = _terms(question)
    return len(asked & _terms(sentence)) / max(1, len(asked))


def answer_sentences(answer: str, passages: Sequence[str]) -> list[str]:
    """The passage sentences that hold the answer: every number it states (``1,661`` =
    ``1661``), or — an answer without numbers — at least half of its terms. Empty for an
    answer that says "not covered" or that no sentence holds."""
    answer = _CONTROL.sub(" ", answer)
    terms = _terms(answer)
    if not terms or is_not_covered(answer):
        return []
    numbers = {_digits(n) for n in _NUMBER.findall(answer)}
    found = []
    for s in (s for p in passages for s in sentences(p)):
        held = _terms(s)
        if numbers <= held if numbers else 2 * len(terms & held) >= len(terms):
            found.append(s)
    return found


def ask_support(answer: str, ask: Sequence[str]) -> float | None:
    """Share of the answer's terms found in ``ask``, the passage sentences that match the
    question best (:func:`ask_sentences`); ``None`` without them or a checkable answer."""
    terms = _terms(_CONTROL.sub(" ", answer))
    if not ask or not terms:
        return None
    return len(terms & _terms(" ".join(ask))) / len(terms)


def asked_kind(question: str) -> str | None:
    """The kind of quantity a question asks for (``duration``, ``percentage``, ``amount``),
    if it names one."""
    for kind, pattern in _ASKED:
        if pattern.search(question):
            return kind
    return None
