"""Typed records that cross module boundaries: subtasks, worker results, model calls."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnswerSignals",
    "CallRecord",
    "Citation",
    "MemoryGrounding",
    "Subtask",
    "WorkerReply",
    "WorkerResult",
]

Role = Literal["worker", "supervisor", "embed"]
Where = Literal["local", "remote"]


class CallRecord(BaseModel):
    """One model call, as the ledger accounts for it."""

    model_config = ConfigDict(frozen=True)

    role: Role
    """Who made the call: a worker, the supervisor, or an embedding for routing/retrieval."""
    model: str
    """The model reference as configured (``ollama:qwen2.5:1.5b``, ``openai/gpt-4o-mini`` …)."""
    where: Where
    """``local`` when the call stayed on this machine, ``remote`` when it left it."""
    tokens_in: int = 0
    """Prompt tokens (the server's own counter when it reports one)."""
    tokens_out: int = 0
    """Completion tokens."""
    seconds: float = 0.0
    """Wall time of the call, including retries."""
    cost_usd: float = 0.0
    """Dollars spent (litellm's price for remote calls; 0 for local ones)."""
    worker: str | None = None
    """The worker the call was made for, if any."""
    host: str | None = None
    """The server that answered, when there is one."""
    purpose: str = ""
    """What the call was for: ``answer``, ``repair``, ``plan``, ``synthesize``, ``route`` …"""
    bytes_sent: int = 0
    """Size of the request payload; counts as egress when ``where`` is ``remote``."""
    attempts: int = 1
    """Attempts made (the retry layer's count)."""
    error: str = ""
    """Empty on success; the translated error when the call failed."""


class Citation(BaseModel):
    """A passage a worker relied on."""

    model_config = ConfigDict(frozen=True)

    worker: str
    """The worker whose store held the passage."""
    source: str
    """The source file (relative to the ingested folder) the passage came from."""
    chunk: int = 0
    """The chunk index within that source."""


class Subtask(BaseModel):
    """One unit of work for one worker."""

    worker: str
    """Name of the worker to ask."""
    instruction: str
    """What the worker should answer (for a direct route, the query itself)."""
    query: str
    """The user's original query, for context."""


class WorkerReply(BaseModel):
    """The JSON object a worker model must produce."""

    answer: str = Field(description="The answer, grounded in the passages.")
    confidence: float = Field(ge=0.0, le=1.0, description="0..1: how well the passages support it.")
    citations: list[str] = Field(default_factory=list, description="Ids of the passages used.")
    needs_escalation: bool = Field(
        description="True when the question needs another specialist or a larger model."
    )


class AnswerSignals(BaseModel):
    """What a worker's answer can be judged by, beside the model's own word.

    Computed by :func:`tandem.workers.signals.compute_signals`; turned into the probability
    that the answer is right by :mod:`tandem.workers.calibration`.
    """

    answer_tokens: int = 0
    """Tokens of the ``answer`` field that carry a log-probability (0: the engine gave none)."""
    logprob_mean: float | None = None
    """Mean log-probability of the answer's tokens."""
    logprob_min: float | None = None
    """The least likely answer token's log-probability."""
    logprob_p10: float | None = None
    """10th percentile of the answer tokens' log-probabilities."""
    top_entropy: float | None = None
    """Mean entropy (nats) of the model's choice at each answer token, over its likeliest
    tokens (:attr:`~tandem.workers.backends.TokenLogprob.top`) and the rest of the
    probability as one more outcome (``None``: the engine gave no alternatives)."""
    top_margin: float | None = None
    """Mean lead of each answer token's log-probability over the likeliest *other* token
    (negative where a less likely token was chosen)."""
    passages: int = 0
    """Passages retrieved."""
    retrieval_best: float | None = None
    """Similarity score of the best passage (cosine, -1..1)."""
    retrieval_margin: float | None = None
    """Best passage's score minus the second's."""
    spans: list[str] = Field(default_factory=list)
    """The answer's checkable spans (``amount VC 1,661``, ``duration 21 days`` …)."""
    unsupported: list[str] = Field(default_factory=list)
    """Spans not found in the passages the answer cites."""
    unsupported_anywhere: list[str] = Field(default_factory=list)
    """Spans found in no retrieved passage at all."""
    citations: int = 0
    """Valid citations (ids of retrieved passages)."""
    citations_valid: bool = False
    """The answer cites at least one passage and every id it cites exists."""
    not_covered: bool = False
    """The answer says the passages do not cover the question."""
    question_overlap: float = 0.0
    """Share of the answer's content words that only restate the question."""
    ask_support: float | None = None
    """Share of the answer's terms found in the passage sentences that match the question
    best (``None``: no passages, or nothing to check)."""
    answer_locus: float | None = None
    """Similarity (cosine, under the worker's embedder) of the question to the passage
    sentence that holds the answer (``None``: no sentence holds it, "not covered", or no
    local embedder)."""
    asked_kind: str | None = None
    """The kind of quantity the question asks for (``duration``, ``percentage``, ``amount``)."""
    kind_missing: bool = False
    """The question asks for a kind of quantity the answer states none of."""
    answer_words: int = 0
    """Length of the answer in words."""
    self_confidence: float = 0.0
    """The confidence the model reported."""
    needs_escalation: bool = False
    """The model asked to escalate."""
    truncated: bool = False
    """The reply was cut off by the token cap (and closed locally)."""
    repaired: bool = False
    """The first reply was invalid and a second call was needed."""
    seconds: float = 0.0
    """Time spent computing these signals."""


class MemoryGrounding(BaseModel):
    """How an answer rests on the learned passage (answer memory) it cites — what
    ``[learning] trust_memory_above`` judges (:func:`tandem.graphs.cascade.trusted_memory`)."""

    source: str
    """The cited learned passage: ``learned:<record id>``."""
    record: int
    """Its learning record."""
    similarity: float
    """Its retrieval score for this question (cosine, -1..1)."""
    spans: int = 0
    """Checkable spans of the answer (figures, dates, names)."""
    unsupported: list[str] = Field(default_factory=list)
    """Spans the learned passage does not back."""
    overlap: float = 0.0
    """Share of the answer's content words found in the learned passage."""
    conflict: bool = False
    """The learned passage disagrees with a retrieved curated passage (the answer says so)."""
    asks_else: str = ""
    """Why the question asks something other than the passage's recorded question although
    close in wording (a new name or figure, a swapped word), or ``""``."""


class WorkerResult(BaseModel):
    """What a worker produced for one subtask; never an exception."""

    worker: str
    """The worker's name."""
    instruction: str
    """The instruction it answered."""
    status: Literal["ok", "failed"]
    """``failed`` when no valid answer could be produced (see ``reason``)."""
    answer: str = ""
    """The answer text (empty when failed)."""
    confidence: float = 0.0
    """Self-reported confidence 0..1 (0 when failed)."""
    citations: list[Citation] = Field(default_factory=list)
    """Passages cited, resolved to sources in the worker's store."""
    needs_escalation: bool = False
    """The worker asked for a larger model or another specialist."""
    reason: str = ""
    """Why it failed or escalated, in words."""
    grounded: bool = True
    """False when the worker answered without retrieval (store unavailable or empty)."""
    model: str = ""
    """The model that answered."""
    signals: AnswerSignals | None = None
    """What the answer can be judged by (``None`` when the worker failed)."""
    p_correct: float | None = None
    """Calibrated probability that the answer is right (``None`` when the worker failed)."""
    memory: MemoryGrounding | None = None
    """The cited learned passage the answer rests on best (``None``: it cites none)."""
