"""A supervisor's answer to a part from its specialist's passages, as that part's result.

Used by :mod:`tandem.graphs._rescue` (an escalated direct answer, a part said to be not
covered, answered in a call of its own) and :mod:`tandem.graphs._synthesis` (weak parts
answered within the synthesis call): the answer cites the passages it marks ``[S1]`` …, or
else those that state its key facts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from textwrap import shorten
from typing import Any

from tandem.agents.coverage import (
    NOT_ANSWERED,
    TERSE_WORDS,
    is_answer,
    states_only_known,
    supporting,
)
from tandem.graphs._stream import SOURCE_MARKS
from tandem.graphs.learning.recorder import COVERED
from tandem.graphs.learning.records import LearnedPassage
from tandem.workers.ask import rank_ask_sentences
from tandem.workers.backends import Backend
from tandem.workers.grounding import content_words, sentences
from tandem.workers.records import Citation, WorkerResult

__all__ = ["QUOTED", "cited_passages", "passage_answer", "quoted", "rechecked"]

QUOTED = "quoted from its passages"
"""The reason of a part shown as the passage sentence that answers its question."""
CITE = re.compile(r"\[S(\d+)\]")


def cited_passages(
    text: str, worker: str, passages: Sequence[Any], question: str = ""
) -> list[Citation]:
    """The passages ``text`` cites as ``[S1]`` …; when it cites none (the 1.5B often
    leaves the markers out) but answers, those holding its key facts
    (:func:`~tandem.agents.coverage.supporting`), so its document is cited."""
    found = sorted({int(n) for n in CITE.findall(text) if 0 < int(n) <= len(passages)})
    if not found and passages and not NOT_ANSWERED.match(text):
        found = [i + 1 for i in supporting(text, [p.text for p in passages], question)]
    cites = [
        Citation(worker=worker, source=passages[i - 1].source, chunk=passages[i - 1].chunk)
        for i in found
    ]
    return list(dict.fromkeys(cites))


_TAGS = re.compile(r"</?passage\b[^>]*>", re.I)
_ANSWER_LABEL = re.compile(r"^\W*answer(?: from the passages?| to (?:this|the) part)?\W*:\s*", re.I)
_WORDS = re.compile(r"[a-z0-9][a-z0-9'%.,-]*", re.I)


def _cleaned(text: str, question: str) -> str:
    """The answer a small supervisor wrote for a part, without what it copied from the
    prompt: passage tags, a first line repeating the part's question, an ``Answer:`` label.
    Empty when nothing but the question is left."""

    def words(line: str) -> set[str]:
        return {w.lower().strip(".,?") for w in _WORDS.findall(line)}

    asked = words(question)
    lines = _TAGS.sub("", text).strip().splitlines()
    if lines and (lines[0].rstrip().endswith("?") or words(lines[0]) <= asked):
        lines = lines[1:]  # the part's question, echoed
    text = _ANSWER_LABEL.sub("", "\n".join(lines).strip()).strip()
    return text if words(text) - asked else ""


def rechecked(
    part: WorkerResult, text: str, passages: Sequence[LearnedPassage], model: str
) -> WorkerResult | None:
    """The supervisor's answer ``text`` to a weak ``part`` from ``passages``, as that part's
    result (citing the passages that state it), or ``None`` when it gives none or states a
    figure that neither the part's question nor its passages hold (the 1.5B, shown several
    parts at once, sometimes answers one with another's figure): the part keeps its
    specialist's answer then."""
    text = _cleaned(SOURCE_MARKS.sub("", text), part.instruction)
    if not text or (NOT_ANSWERED.match(text) and is_answer(part)):
        return None
    if not states_only_known(text, [part.instruction, *(p.text for p in passages)]):
        return None  # a figure none of its passages states: another part's, or made up
    why = "its answer was not reliable" if is_answer(part) else "it said it was not covered"
    return passage_answer(part, text, passages, part.instruction, model, why)


def passage_answer(
    part: WorkerResult,
    text: str,
    passages: Sequence[LearnedPassage],
    question: str,
    model: str,
    why: str,
) -> WorkerResult:
    """``part`` as the supervisor answered it from ``passages`` (``text``): citing the
    passages it marks, or with no marks those stating its facts (:func:`cited_passages`);
    its marks dropped, for the citations name the sources; ``why`` ends its reason."""
    citations = cited_passages(text, part.worker, passages, question)
    return WorkerResult(
        worker=part.worker,
        instruction=part.instruction,
        status="ok",
        answer=SOURCE_MARKS.sub("", text).strip(),
        confidence=0.5,
        citations=citations,
        reason=f"{COVERED} from {part.worker}'s passages: {why}",
        grounded=bool(citations),
        model=model,
    )


_QUOTE_WORDS = 6
"""A sentence worth quoting has at least this many words (not a passage's title line)."""


def _stems(text: str) -> set[str]:
    """Content words cut to five letters ("increases" and "increase" alike)."""
    return {w[:5] for w in content_words(text)}


async def quoted(
    part: WorkerResult, passages: Sequence[LearnedPassage], embedder: Backend | None
) -> WorkerResult | None:
    """A weak ``part`` whose answer its passages do not bear out ("not covered", a figure
    none of them states, or a bare figure no passage sentence backed — the 0.5B's "12"
    for "2 months", lifted from "the first 12 months") and that the supervisor gave no
    answer to either: the passage sentence that best answers its question
    (:func:`~tandem.workers.ask.rank_ask_sentences`, the ranking its specialist's signals
    used, so its vectors are cached), quoted and cited, rather than an answer nothing
    supports. ``None`` when the answer is borne out by its passages or no sentence of
    :data:`_QUOTE_WORDS` words or more shares two content words with the question."""
    texts = [p.text for p in passages]
    borne_out = (
        is_answer(part)
        and len(part.answer.split()) > TERSE_WORDS  # not a bare figure no sentence backed
        and states_only_known(part.answer, [part.instruction, *texts])
    )
    if not texts or borne_out:
        return None
    asked = _stems(part.instruction)
    candidates = [
        s
        for t in texts
        for s in sentences(t)
        if len(s.split()) >= _QUOTE_WORDS and len(asked & _stems(s)) >= 2
    ]
    if not candidates:
        return None
    best = (await rank_ask_sentences(embedder, part.instruction, candidates))[0]
    source = next((p for p in passages if best in p.text), passages[0])
    said = (
        f"its specialist's answer ({shorten(part.answer, 40, placeholder='…')!r}) is not "
        "backed by them"
        if is_answer(part)
        else "its specialist said they do not cover it"
    )
    return WorkerResult(
        worker=part.worker,
        instruction=part.instruction,
        status="ok",
        answer=f"Its passages say: \u201c{' '.join(best.split())}\u201d",
        confidence=0.0,
        citations=[Citation(worker=part.worker, source=source.source, chunk=source.chunk)],
        reason=f"{QUOTED}: {said}",
        grounded=True,
        model=part.model,
    )
