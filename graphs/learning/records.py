"""What a learning record is: one part of one run that the supervisor answered for a specialist."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from tandem.workers.records import Citation

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

RecordKind = Literal["escalated", "covered", "planned"]
"""``escalated``: a direct answer the specialist was unsure of, answered by the supervisor;
``covered``: a failed subtask the supervisor answered itself; ``planned``: a part of a planned
answer where the specialist was unsure and the synthesis supplied it."""

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
