"""Local checks on a synthesized answer: does it cover every part, and which passages
do the kept answers really rest on? No model calls.

* :func:`key_facts` — the spans that carry a specialist's answer: numbers with their units
  (``5.5%``, ``VC 1,000``, ``14 days``, ``section 12``), else its distinctive words.
* :func:`missing_parts` — successful subtask answers whose key facts are absent from the
  final text (the synthesis dropped that part).
* :func:`supporting` — of the passages a worker cited, those that contain its answer's
  facts (a small model tends to cite every passage it was shown).
* :func:`structured_answer` — one paragraph per part plus a joint conclusion.
* :func:`with_context` — a bare figure ("15%", "105") with the passage sentence that
  states it, so the part reads as an answer and keeps its conditions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tandem.agents.supervisor import PlanStep
from tandem.workers.grounding import sentences
from tandem.workers.records import WorkerResult

__all__ = [
    "NOT_ANSWERED",
    "TERSE_WORDS",
    "answer_part",
    "checked_conclusion",
    "is_answer",
    "key_facts",
    "missing_parts",
    "numbers",
    "parts_in_order",
    "states_only_known",
    "structured_answer",
    "supporting",
    "with_context",
]

TERSE_WORDS = 4
"""An answer of at most this many words with a figure in it is a bare figure."""

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{4,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
NOT_ANSWERED = re.compile(
    r"^\W*(?:not covered|the passages do(?: not|n't)|i (?:do not|don't|cannot|can't) "
    r"(?:know|answer|find)|no information)",
    re.I,
)
"""An answer that opens by saying the passages do not answer the question."""
_STOP = frozenset(
    (
        "about",
        "above",
        "after",
        "again",
        "against",
        "along",
        "among",
        "another",
        "answer",
        "around",
        "because",
        "before",
        "being",
        "below",
        "between",
        "cannot",
        "could",
        "every",
        "first",
        "further",
        "hours",
        "landlord",
        "landlords",
        "might",
        "months",
        "passage",
        "passages",
        "people",
        "question",
        "shall",
        "should",
        "tenant",
        "tenants",
        "their",
        "there",
        "these",
        "thing",
        "those",
        "through",
        "under",
        "until",
        "weeks",
        "where",
        "which",
        "while",
        "whose",
        "within",
        "without",
        "would",
        "years",
    )
)


def numbers(text: str) -> set[str]:
    """The numbers in ``text``, normalised (``1,000`` → ``1000``, ``5.50`` → ``5.5``)."""
    out = set()
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", raw) else raw
        value = value.replace(",", ".")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        out.add(value)
    return out


def is_answer(result: WorkerResult) -> bool:
    """A successful result with an actual answer (not "not covered" / an escalation)."""
    return (
        result.status == "ok"
        and bool(result.answer.strip())
        and not result.needs_escalation
        and not NOT_ANSWERED.match(result.answer)
    )


def _lead(text: str, sentences: int = 2) -> str:
    return " ".join(_SENTENCE_END.split(text.strip())[:sentences])


def key_facts(answer: str, question: str = "") -> list[str]:
    """The spans that carry ``answer``: the numbers of its first two sentences (the short
    answer), else of the whole answer, else up to four distinctive words (not in
    ``question``), longest first."""
    for text in (_lead(answer), answer):
        found = sorted(numbers(text) - numbers(question), key=lambda n: (-len(n), n))
        if found:
            return found[:6]
    asked = {w.lower() for w in _WORD.findall(question)}
    words = {w.lower() for w in _WORD.findall(_lead(answer))} - asked - _STOP
    return sorted(words, key=lambda w: (-len(w), w))[:4]


def _present(facts: Sequence[str], text: str) -> bool:
    """All numeric facts, or at least half of the word facts, occur in ``text``."""
    if not facts:
        return True
    have = numbers(text)
    lower = text.lower()
    if facts[0][0].isdigit():
        return all(f in have for f in facts)
    hits = sum(f in lower for f in facts)
    return 2 * hits >= len(facts)


def missing_parts(text: str, results: Sequence[WorkerResult]) -> list[WorkerResult]:
    """Successful subtask answers whose key facts the final ``text`` leaves out."""
    return [
        r
        for r in results
        if is_answer(r) and not _present(key_facts(r.answer, r.instruction), text)
    ]


def supporting(answer: str, passages: Sequence[str], question: str = "") -> list[int]:
    """Indexes of the ``passages`` that state ``answer``'s key facts.

    A passage counts when it holds at least one of the facts; when none does (a paraphrased
    answer), the one sharing the most words with the answer is kept, so a grounded answer
    keeps one citation.
    """
    if not passages:
        return []
    facts = key_facts(answer, question)
    keep = []
    for i, passage in enumerate(passages):
        have = numbers(passage)
        lower = passage.lower()
        if any((f in have) if f[0].isdigit() else (f in lower) for f in facts):
            keep.append(i)
    if keep:
        return keep
    words = {w.lower() for w in _WORD.findall(answer)} - _STOP
    overlap = [len(words & {w.lower() for w in _WORD.findall(p)}) for p in passages]
    best = max(range(len(passages)), key=lambda i: overlap[i])
    return [best] if overlap[best] else []


def answer_part(result: WorkerResult) -> str:
    """One paragraph of a structured answer: the specialist's answer, attributed."""
    if is_answer(result):
        return f"{result.answer.strip()} [{result.worker}]"
    # A failure's error text goes to the run's notes, never into the answer.
    why = "failed" if result.status == "failed" else "not covered"
    return f"{result.instruction.strip()} — not answered ({result.worker}: {why})."


def structured_answer(results: Sequence[WorkerResult], conclusion: str = "") -> str:
    """One paragraph per part, in order, then the joint conclusion (if any)."""
    paragraphs = [answer_part(r) for r in results]
    if conclusion.strip():
        paragraphs.append(conclusion.strip())
    return "\n\n".join(paragraphs)


def parts_in_order(
    steps: Sequence[PlanStep], results: Sequence[WorkerResult]
) -> list[WorkerResult]:
    """One result per plan step, in plan order (an answered one when there is one).

    Results of no step (an escalated direct attempt) are left out, unless the plan has no
    steps at all.
    """
    if not steps:
        return list(results)
    out = []
    for step in steps:
        mine = [r for r in results if (r.worker, r.instruction) == (step.worker, step.instruction)]
        answered = [r for r in mine if r.status == "ok"]
        if answered or mine:
            out.append((answered or mine)[-1])
    return out


def states_only_known(text: str, sources: Iterable[str]) -> bool:
    """Whether every number ``text`` states is held by one of ``sources``: a small model's
    figure that no source states (invented, or another part's) must not pass as checked."""
    return numbers(text) <= set().union(*(numbers(s) for s in sources))


def checked_conclusion(conclusion: str, results: Sequence[WorkerResult], query: str) -> str:
    """``conclusion`` unless it states a number no answer (nor the query) holds: a small
    supervisor's invented figure must not sit next to the specialists' real ones."""
    known = [query, *(r.answer for r in results)]
    return conclusion if states_only_known(conclusion, known) else ""


def with_context(result: WorkerResult, passages: Sequence[str]) -> WorkerResult:
    """``result`` with its bare figure ("15%", "105", "28": at most :data:`TERSE_WORDS`
    words, a number the question does not hold) followed by the passage sentence that
    states that figure and shares the most words with the question ("15%: The credit is
    15% of the rent paid …, capped at VC 1,000 …"). Unchanged when no sentence states it,
    or shares no word with the question (``passages`` in preference order)."""
    answer = result.answer.strip()
    if not is_answer(result) or len(answer.split()) > TERSE_WORDS:
        return result
    figures = numbers(answer) - numbers(result.instruction)
    if not figures:
        return result
    asked = {w.lower() for w in _WORD.findall(result.instruction)} - _STOP
    best, best_overlap = "", 0
    for sentence in (s for p in passages for s in sentences(p)):
        if figures <= numbers(sentence):
            overlap = len(asked & {w.lower() for w in _WORD.findall(sentence)})
            if overlap > best_overlap:
                best, best_overlap = sentence, overlap
    if not best:
        return result
    return result.model_copy(update={"answer": f"{answer.rstrip('.')}: {best}"})
