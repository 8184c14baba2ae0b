"""Answer memory inside a specialist's store: learned passages and their provenance.

A kept learning record becomes one passage in the worker's store (a collection of its own
beside the curated one, ``tandem-<worker>-memory``), with provenance metadata: source
``learned:<record id>``, the date, the model that supplied it and the worker's sensitivity.
It is retrieved and cited like any other passage. The curated corpus stays authoritative:
when a cited learned passage states a figure that a retrieved curated passage on the same
question states differently, the answer cites both and says so (:func:`reconcile`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.documents import Document

from tandem.workers.grounding import Span, content_words, find_spans, unsupported_spans
from tandem.workers.records import MemoryGrounding

__all__ = [
    "LEARNED_PREFIX",
    "MEMORY_EMBED_KEY",
    "Conflict",
    "asks_else",
    "figures",
    "find_conflicts",
    "is_learned",
    "learned_metadata",
    "learned_text",
    "memory_grounding",
    "reconcile",
    "recorded",
]

LEARNED_PREFIX = "learned:"
"""Source of a learned passage: ``learned:<record id>``."""

MEMORY_EMBED_KEY = "tandem_memory_embed_model"
"""Metadata key of a memory collection: the embedding model that filled it."""

_ANSWER_MARK = "Learned answer to"


def is_learned(source: str) -> bool:
    """Whether a passage/citation source is answer memory."""
    return source.startswith(LEARNED_PREFIX)


def learned_text(question: str, answer: str) -> str:
    """The passage text: ``Learned answer to "<question>": <answer>``.

    The question comes first and inside the same sentence as the answer's start: the same
    or a paraphrased question retrieves the passage (an embedding model that truncates long
    texts still sees the question), and a reader meets question and answer together.
    """
    answer = " ".join(answer.split())
    question = " ".join(question.split()).replace('"', "'")
    return f'{_ANSWER_MARK} "{question}": {answer}'


_LEARNED = re.compile(rf'^{_ANSWER_MARK} "(?P<q>.*?)": (?P<a>.*)$', re.S)


def recorded(text: str) -> tuple[str, str] | None:
    """The recorded question and the remembered answer of a learned passage's text (the
    inverse of :func:`learned_text`); ``None`` for any other text."""
    m = _LEARNED.match(text)
    return (m.group("q"), m.group("a")) if m else None


SWAP_SHARE = 0.4
"""A question with at least this share of its content words in a recorded question, that
adds a content word neither the recorded question nor its answer has, asks something else
("Which organ produces bile?" beside "Which organ produces insulin?"). Chosen with the
near-miss questions of ``benchmarks/data/memory_near_miss.jsonl`` (see
``benchmarks/bench_memory_guard.py``): every near miss of the repeat workload shares at least
0.22 of its words, every paraphrase at most 0.6, most below 0.35."""

_ACRONYM = re.compile(r"\b[A-Za-z]*[A-Z][A-Za-z]*[A-Z][A-Za-z]*\b")


def _stem(word: str) -> str:
    """A crude stem: "produce", "produces", "produced" and "producing" are one word here."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def asks_else(question: str, recorded_question: str, answer: str) -> str:
    """Why ``question`` may ask something other than ``recorded_question`` (whose remembered
    answer is ``answer``) although the two are close in meaning, or ``""``.

    Embeddings score a question that swaps one term of a recorded question ("low" for
    "high" blood pressure, "EPC" for "HMO") as close as a paraphrase, often closer; two
    lexical checks catch the swap:

    * **a new name** — an acronym, name, figure or date of the question that neither the
      recorded question nor its answer states;
    * **a swapped word** — the question mostly repeats the recorded question's words
      (:data:`SWAP_SHARE`) but adds a content word that neither of them has.
    """
    known = f"{recorded_question} {answer}"
    acronyms = [
        a[:-1] if a[-1] == "s" and a[:-1].isupper() else a for a in _ACRONYM.findall(question)
    ]
    spans = find_spans(question) + [Span("name", a) for a in acronyms]  # "ETFs" is "ETF"
    new = unsupported_spans(spans, known)
    if new:
        return f"it names {new[0].text!r}, which the recorded question does not"
    mine = content_words(question)
    words = {_stem(w) for w in mine}
    theirs = {_stem(w) for w in content_words(recorded_question)}
    added = words - theirs - {_stem(w) for w in content_words(answer)}
    if words and added and len(words & theirs) / len(words) >= SWAP_SHARE:
        new_words = sorted(w for w in mine if _stem(w) in added)
        return (
            f"it repeats most of the recorded question's words but asks about "
            f"{', '.join(repr(w) for w in new_words)}"
        )
    return ""


def learned_metadata(
    *,
    record_id: int,
    worker: str,
    date: str,
    model: str,
    sensitivity: str,
    text: str,
) -> dict[str, Any]:
    """Chroma metadata of a learned passage (provenance travels with the passage)."""
    return {
        "source": f"{LEARNED_PREFIX}{record_id}",
        "chunk": 0,
        "worker": worker,
        "learned": True,
        "record": record_id,
        "date": date,
        "model": model,
        "sensitivity": sensitivity,
        "hash": hashlib.sha256(text.encode()).hexdigest()[:16],
    }


# Figures: amounts with a currency, percentages, and numbers with a unit of time or dose.
_UNIT = (
    r"%|per ?cent|percent|days?|weeks?|months?|years?|hours?|minutes?|mg|mcg|ml|g|kg|"
    r"times?|doses?|tablets?"
)
_FIGURE = re.compile(
    rf"(?P<cur>VC|\$|£|€|USD|EUR|GBP)\s?(?P<a>\d[\d,]*(?:\.\d+)?)"
    rf"|(?P<b>\d[\d,]*(?:\.\d+)?)\s?(?P<unit>{_UNIT})(?![a-z])",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = (
    "a an and are as at be by can do does for from how i if in is it my of on or the to what "
    "when which who why will with you your me we our this that there their them they not no "
    "learned answer"
)
_STOP = frozenset(_STOP_WORDS.split())


def _unit(match: re.Match[str]) -> str:
    if match.group("cur"):
        return "money"
    unit = match.group("unit").lower().rstrip("s")
    if unit in ("%", "per cent", "percent", "per cen"):
        return "%"
    return unit


def figures(text: str) -> dict[str, set[str]]:
    """The figures ``text`` states, by kind (``money``, ``%``, ``day``, ``mg`` …)."""
    out: dict[str, set[str]] = {}
    for m in _FIGURE.finditer(text):
        value = (m.group("a") or m.group("b") or "").replace(",", "")
        if value.endswith(".0"):
            value = value[:-2]
        out.setdefault(_unit(m), set()).add(value)
    return out


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


@dataclass(frozen=True)
class Conflict:
    """A learned passage and a curated one that state different figures of the same kind."""

    learned: str
    """The learned passage's source (``learned:<id>``)."""
    curated: str
    """The curated passage's source."""
    chunk: int
    kind: str
    learned_values: tuple[str, ...]
    curated_values: tuple[str, ...]

    def describe(self) -> str:
        mine = ", ".join(self.learned_values)
        theirs = ", ".join(self.curated_values)
        return (
            (
                f"the learned answer ({self.learned}) says {mine} {self.kind} but the curated "
                f"source {self.curated} says {theirs} {self.kind}"
            )
            .replace(" money", "")
            .replace(" %", "%")
        )


def find_conflicts(
    text: str, curated: Sequence[Document], question: str, *, source: str = ""
) -> list[Conflict]:
    """Curated passages on ``question`` whose figures differ from those ``text`` states.

    A curated passage is on the question when it shares at least half of the question's
    content words (two at least); figures conflict when both state figures of one kind and
    none of them agree.
    """
    mine = figures(text)
    if not mine:
        return []
    qwords = _words(question)
    need = max(2, (len(qwords) + 1) // 2)
    out: list[Conflict] = []
    for doc in curated:
        src = str(doc.metadata.get("source", "?"))
        if is_learned(src):
            continue
        if len(qwords & _words(doc.page_content)) < need:
            continue
        theirs = figures(doc.page_content)
        for kind, values in mine.items():
            other = theirs.get(kind)
            if other and not (values & other):
                out.append(
                    Conflict(
                        learned=source,
                        curated=src,
                        chunk=int(doc.metadata.get("chunk", 0)),
                        kind=kind,
                        learned_values=tuple(sorted(values)),
                        curated_values=tuple(sorted(other)),
                    )
                )
    return out


def reconcile(
    answer: str, question: str, passages: Sequence[Document], cited: Sequence[str]
) -> tuple[str, list[Conflict]]:
    """When the answer rests on a learned passage that disagrees with a curated one, say so.

    Args:
        answer: The worker's answer.
        question: What it was asked.
        passages: Every passage the worker saw.
        cited: Sources the answer cites.

    Returns:
        The answer (with a sentence naming both sources and that the curated one is the
        reviewed source, when they conflict) and the conflicts found.
    """
    learned = [d for d in passages if is_learned(str(d.metadata.get("source", "")))]
    curated = [d for d in passages if not is_learned(str(d.metadata.get("source", "")))]
    conflicts: list[Conflict] = []
    for doc in learned:
        src = str(doc.metadata.get("source"))
        if src not in cited:
            continue
        conflicts.extend(find_conflicts(doc.page_content, curated, question, source=src))
    if not conflicts:
        return answer, []
    said = "; ".join(dict.fromkeys(c.describe() for c in conflicts))
    note = (
        f"Note: {said}. The curated source is the reviewed one; the learned answer came from "
        "an earlier escalation."
    )
    return f"{answer.rstrip()}\n\n{note}", conflicts


def _asks_else_of(question: str, text: str) -> str:
    found = recorded(text) if question else None
    return asks_else(question, *found) if found is not None else ""


def memory_grounding(
    answer: str,
    passages: Sequence[Document],
    cited: Sequence[str],
    conflicts: Sequence[Conflict] = (),
    *,
    question: str = "",
) -> MemoryGrounding | None:
    """How ``answer`` rests on the learned passages it cites: for the best-supported one
    (fewest unsupported spans, then most similar), its similarity to the question, the
    answer's checkable spans it does not back and the share of the answer's content words it
    holds. ``None`` when the answer cites no learned passage.

    Args:
        answer: The worker's answer as the model wrote it (before any conflict note).
        passages: The passages the worker saw (learned ones carry their ``score``).
        cited: Sources the answer cites.
        conflicts: What :func:`reconcile` found for this answer.
        question: What the worker was asked: when given, whether it asks something else
            than the learned passage's recorded question (:func:`asks_else`).
    """
    spans = find_spans(answer)
    words = content_words(answer)
    clashing = {c.learned for c in conflicts}
    best: MemoryGrounding | None = None
    for doc in passages:
        src = str(doc.metadata.get("source", ""))
        if not is_learned(src) or src not in cited:
            continue
        text = doc.page_content
        held = content_words(text)
        found = MemoryGrounding(
            source=src,
            record=int(doc.metadata.get("record", src.removeprefix(LEARNED_PREFIX) or 0)),
            similarity=round(float(doc.metadata.get("score", -1.0)), 4),
            spans=len(spans),
            unsupported=[str(s) for s in unsupported_spans(spans, text)],
            overlap=round(len(words & held) / len(words), 4) if words else 0.0,
            conflict=src in clashing,
            asks_else=_asks_else_of(question, text),
        )
        if best is None or (len(found.unsupported), -found.similarity) < (
            len(best.unsupported),
            -best.similarity,
        ):
            best = found
    return best
