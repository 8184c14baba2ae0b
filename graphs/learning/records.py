"""What a learning record is: one part of one run that the supervisor answered for a specialist."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from tandem.workers.records import Citation

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = [
    "Candidate",
    "LearnedPassage",
    "LearningReport",
    "LearningSettings",
    "Record",
    "RecordKind",
    "RecordStatus",
    "normalize_question",
]

RecordKind = Literal["escalated", "covered", "planned", "unrouted"]
"""``escalated``: a direct answer the specialist was unsure of, answered by the supervisor;
``covered``: a failed subtask the supervisor answered itself; ``planned``: a part of a planned
answer where the specialist was unsure and the synthesis supplied it; ``unrouted``: the
router found no specialist and the supervisor answered alone, but with that answer the
question falls to this specialist (it never saw the question)."""

RecordStatus = Literal["pending", "kept", "dropped"]
"""Answer memory: ``pending`` waits for approval, ``kept`` is a passage in the specialist's store,
``dropped`` was refused (never becomes memory; excluded from exports)."""

Policy = Literal["off", "approve", "auto"]


class LearningSettings(BaseModel):
    """``[learning]``: what escalations teach the specialists. Nothing of it leaves the machine."""

    record: bool = True
    """Write a learning record whenever the supervisor supplied what a specialist could not."""
    memory: Policy = "approve"
    """Answer memory: ``off`` (recorded answers never become passages), ``approve`` (``/keep``
    or ``tandem memory keep ID`` makes one a passage), ``auto`` (kept when its checks pass)."""
    routing: Policy | None = None
    """Router feedback: approval of candidate routing examples (default: same as ``memory``)."""
    memory_k: int = Field(default=2, ge=0, le=10)
    """Learned passages retrieved per subtask, besides the curated top_k."""
    memory_min_score: float = Field(default=-1.0, ge=-1.0, le=1.0)
    """A learned passage is shown to the specialist only when its retrieval score (1 − distance)
    reaches this."""
    trust_memory_above: float | None = Field(default=0.6, ge=-1.0, le=1.0)
    """A direct answer grounded in a learned passage stays local, whatever the cascade's
    ``p_correct`` threshold, when that passage matched the question at least this well
    (retrieval cosine) and the answer cites it, every checkable span of the answer (figure,
    date, name) is in it, at least half of the answer's words are in it, some of them are
    not the question's own (an echo such as "HMO" is not an answer), the model did not
    ask to escalate or say "not covered", and the passage does not conflict with a retrieved
    curated passage (then the cascade decides as usual, and the answer names both sources).
    The answer carries a note: ``answered from learned memory (record 12, similarity 0.83)``.
    The same threshold sends a question the router gives to the supervisor alone to the
    specialist holding a learned passage that close to it. A learned passage exists only
    once approved (``/keep``, or ``auto`` with its checks passed). ``None``: never (every
    direct answer faces the cascade). The default 0.6 is for the bundled MiniLM embeddings:
    a paraphrase of a recorded question scores 0.38–0.77 against its learned passage
    (median 0.62), the nearest *other* question's passage at most 0.63 (median 0.38), on
    the 40 questions of ``benchmarks/data/repeat_workload.jsonl``."""
    answer_memory_above: float | None = Field(default=0.82, ge=-1.0, le=1.0)
    """The cascade's memory step (local model → answer memory → supervisor): a direct answer
    that may not stay local is replaced by the remembered supervisor answer of the learned
    passage the specialist retrieved — when that passage matched at least
    ``trust_memory_above``, the question asks nothing else in the recorded question's words
    (no new name or figure, no swapped word), the curated corpus does not contradict it, and
    either the specialist's answer rests on it or the question is at least this close to the
    recorded question (cosine). ``None``: only when the specialist's answer rests on it.
    Embeddings score a question that asks something else in similar words (``What BMI counts
    as overweight?`` beside ``What does BMI stand for?``) as close as a paraphrase: on the
    bundled MiniLM, 0.67 served none of 40 labelled near misses and 22 of 40 paraphrases of
    the repeat workload, but 4 of 40 near misses written separately; the default 0.82
    serves none of either set, and 4 of the 40 paraphrases (exact repeats: all).
    ``benchmarks/_memory_guard.py`` measures it."""
    unrouted: bool = True
    """Learn from answers the supervisor gave alone (the router found no specialist): when
    the router, shown the question with that answer, routes it to one specialist — or gives
    one specialist at least ``[router] min_probability`` and twice any other's — the run
    writes a record (kind ``unrouted``) and a routing example for that specialist."""
    max_answer_chars: int = Field(default=4000, ge=100)
    """Longer answers are recorded but never kept automatically."""

    def routing_policy(self) -> Policy:
        """The approval policy for routing examples."""
        return self.routing or self.memory


class LearnedPassage(BaseModel):
    """A retrieved passage as a learning record keeps it (the export rebuilds the prompt)."""

    source: str
    chunk: int = 0
    text: str
    score: float | None = None
    """Its embedding similarity to the question."""
    rank: float | None = None
    """What the specialist ranked it by: ``score`` plus its keyword bonus
    (``WorkerSpec.keyword_weight``); ``None`` when it was ranked by ``score`` alone."""

    @property
    def order(self) -> float:
        """Its place among the passages, best highest (``rank``, else ``score``)."""
        if self.rank is not None:
            return self.rank
        return self.score if self.score is not None else 1.0

    @classmethod
    def of(cls, doc: Document) -> LearnedPassage:
        """A retrieved document (its ``source``, ``chunk``, ``score`` and ``rank`` metadata)."""
        return cls(
            source=str(doc.metadata.get("source", "?")),
            chunk=int(doc.metadata.get("chunk", 0)),
            text=doc.page_content,
            score=doc.metadata.get("score"),
            rank=doc.metadata.get("rank"),
        )


class Candidate(BaseModel):
    """A candidate routing example (``tandem eval`` format)."""

    question: str
    expected_workers: list[str]
    facts: list[str] = Field(default_factory=list)


class Record(BaseModel):
    """One learning record (a row of ``<data_dir>/learning/learning.sqlite``)."""

    id: int = 0
    created: str = ""
    """UTC time, ISO 8601."""
    worker: str
    kind: RecordKind
    question: str
    """The user's question (placeholders restored)."""
    instruction: str
    """What the specialist was asked (the question itself for a direct answer)."""
    attempt: str = ""
    """The specialist's own answer ('' when it failed)."""
    attempt_status: str = "ok"
    attempt_confidence: float | None = None
    p_correct: float | None = None
    """The calibrated probability that the attempt was right, when the worker reports one."""
    attempt_reason: str = ""
    answer: str
    """The supervisor's final text for this part, placeholders restored locally."""
    answer_redacted: str = ""
    """The same with sensitive values replaced by placeholders (what exports write)."""
    instruction_redacted: str = ""
    citations: list[Citation] = Field(default_factory=list)
    passages: list[LearnedPassage] = Field(default_factory=list)
    passages_redacted: list[LearnedPassage] = Field(default_factory=list)
    route_kind: str = ""
    route_workers: list[str] = Field(default_factory=list)
    worker_model: str = ""
    source_model: str = ""
    """The supervisor model that supplied the answer."""
    thread_id: str | None = None
    sensitivity: Literal["normal", "local_only"] = "normal"
    """``local_only``: as sensitive as the specialist's store (never sent to a remote model)."""
    status: RecordStatus = "pending"
    checks: dict[str, bool] = Field(default_factory=dict)
    """The ``auto`` checks and whether each passed."""
    conflict: str = ""
    """Why the answer disagrees with the specialist's curated passages, if it does."""

    @property
    def checks_passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    @property
    def failed_checks(self) -> list[str]:
        return [k for k, ok in self.checks.items() if not ok]

    @property
    def source(self) -> str:
        """The provenance a kept record's passage carries: ``learned:<id>``."""
        return f"learned:{self.id}"


class LearningReport(BaseModel):
    """What a run taught (``Answer.learning``)."""

    records: list[int] = Field(default_factory=list)
    """Ids of the learning records this run wrote."""
    kept: list[int] = Field(default_factory=list)
    """Of those, the ones kept as answer memory (``auto`` with passing checks)."""
    pending: list[int] = Field(default_factory=list)
    """Waiting for ``/keep`` (or ``tandem memory keep ID``)."""
    routing: list[int] = Field(default_factory=list)
    """Candidate routing examples this run wrote (approved with the records)."""
    policy: Policy = "approve"
    used: list[str] = Field(default_factory=list)
    """Learned passages (``learned:<id>``) the answer cites."""
    notes: list[str] = Field(default_factory=list)


_PUNCT = re.compile(r"[^\w\s%]")


def normalize_question(text: str) -> str:
    """Lower-cased, punctuation-free, whitespace-collapsed: the key for duplicates."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())
