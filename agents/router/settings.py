"""The router's settings (``[router]`` in tandem.toml) and its decision."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.workers.modelref import parse_model_ref

__all__ = ["RouteDecision", "RoutePart", "RouterSettings"]


class RouterSettings(BaseModel):
    """Routing model and thresholds (``[router]`` in tandem.toml).

    The threshold defaults are what threshold tuning (4-fold cross-validation, see
    ``tune``) chooses on the built-in workers' labelled set
    (``benchmarks/data/routing_eval.jsonl``); its cross-validated figures, where every fold
    tunes on its own training folds, are in ``benchmarks/RESULTS.md``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["learned", "centroid"] = "learned"
    """``learned``: a small multi-label model fitted on the workers' examples (and ``train``)
    at start-up, cached on disk; ``centroid``: the earlier router (cosine to each worker's
    centred profile centroid, no training)."""
    embed_model: str = "embedded:minilm"
    """Embedding model for routing and for every worker store (``ollama:…``/``embedded:…``):
    the bundled all-MiniLM-L6-v2 by default; ``ollama:nomic-embed-text`` style models with
    Ollama; ``embedded:qwen2.5-coder-0.5b`` mean-pools the chat model (slow, weaker)."""
    train: Path | None = None
    """Labelled routes to learn from besides the workers' examples: a JSONL file in the
    ``tandem eval`` format (``question``, ``expected_workers``: one worker, several, or
    ``[]`` for a question no specialist should take). Relative to tandem.toml. Rows naming
    an unknown worker are skipped. With only the built-in workers, their bundled labelled
    set is used too."""
    offtopic: bool = True
    """Learn "no specialist" from the bundled list of general questions; turn off when a
    worker covers general knowledge."""
    tune: bool = True
    """When ``train`` has at least 30 rows, choose the thresholds below by 4-fold
    cross-validation on the labelled rows when fitting (cached with the model); otherwise
    they are used as given. ``tandem router eval --cv`` tunes inside every fold."""
    multi_label: float = Field(default=0.7, ge=0, le=1)
    """A worker is chosen when its probability reaches this — several can be (a
    cross-domain question)."""
    clause: float = Field(default=0.5, ge=0, le=1)
    """A clause that asks something counts for its best worker when that worker holds at
    least this share of the clause's not-none probability. Two or more clauses counting
    for different workers make a plan of those workers."""
    clause_statement: float = Field(default=1.0, ge=0, le=1)
    """A clause that only tells ("I rent a room from my dad") counts when its best worker's
    probability reaches this (1.0: never)."""
    clause_max_none: float = Field(default=0.5, ge=0, le=1)
    """An asking clause whose none-probability is above this counts for no worker ("is
    that right?")."""
    min_probability: float = Field(default=0.05, ge=0, le=1)
    """With no worker chosen, the best one still answers alone when its probability
    reaches this …"""
    max_none: float = Field(default=0.7, ge=0, le=1)
    """… and the question's none-probability is below this; otherwise no specialist fits
    and the supervisor answers alone (1.0: never decide "none" this way)."""
    second_stage: str = "off"
    """``off``, or a *local* chat model (``embedded:qwen2.5-coder-0.5b``,
    ``ollama:qwen2.5:1.5b`` on this machine …) asked to choose the workers, with a JSON
    schema, when the learned router is unsure (see ``second_stage_band``). A model whose
    endpoint is not local is refused at start-up. Off by default: held out on the bundled
    labelled set, the 0.5B routed worse than the fast router and the 1.5B gained 2 of 245
    questions but lost cross-domain recall (``benchmarks/RESULTS.md`` §4)."""
    second_stage_band: float = Field(default=0.44, ge=0)
    """A question goes to the second stage when a worker's probability or its
    none-probability lies within this many log-odds of the threshold that decides it. The
    default sends 9 % of the bundled labelled set's questions, scored out of fold (4-fold
    CV, default thresholds); ``tandem``'s benchmark chooses it inside every fold."""
    second_stage_timeout: float = Field(default=20.0, gt=0)
    """Seconds the second stage may take; then the fast decision stands (with a note)."""
    max_workers: int = Field(default=3, ge=1, le=16)
    """At most this many workers in a routed plan."""
    min_score: float = Field(default=0.125, ge=-1, le=1)
    """``centroid`` only: a worker fits a query when its centred score reaches this; below
    it for all → the supervisor answers alone."""
    plan_margin: float = Field(default=0.0, ge=0, le=2)
    """``centroid`` only: plan across workers whose scores are within this margin of the
    best one."""
    part_min_score: float | None = 0.1
    """``centroid`` only: score a part of a multi-part query needs to count (``None`` =
    ``min_score``)."""

    @field_validator("second_stage")
    @classmethod
    def _check_second_stage(cls, value: str) -> str:
        value = value.strip()
        if value != "off":
            parse_model_ref(value)  # a ValueError names the accepted forms
        return value


_HOW = {"clause": "", "best clause": " (its best clause)", "question": " (the whole question)"}


class RoutePart(BaseModel):
    """A part of the question and the specialist it is about."""

    text: str
    """The part's own words (clauses of the question, in order)."""
    worker: str | None = None
    """The specialist this part is about (``None``: no confident match)."""
    probability: float = 0.0
    """How sure the router is of ``worker`` for this part (0–1)."""
    by: Literal["clause", "best clause", "question"] = "clause"
    """How the part got its worker: ``clause`` — the decision rule matched a clause to it;
    ``best clause`` — the rule left this chosen specialist without a clause, so it was given
    the clause it scores highest on (its probability is that clause's); ``question`` — no
    clause could be given, the part is the whole question (its probability is the
    question's)."""

    @property
    def how(self) -> str:
        """How the part got its worker, as said after the worker's name in a reason or a
        plan's rationale: nothing for ``clause``, else `` (its best clause)`` / `` (the
        whole question)``."""
        return _HOW[self.by]


class RouteDecision(BaseModel):
    """The router's decision, explainable."""

    kind: Literal["direct", "plan", "supervisor"]
    """``direct``: one worker answers; ``plan``: the supervisor splits the work; ``supervisor``:
    no worker fits."""
    workers: list[str] = Field(default_factory=list)
    """Workers chosen (in the order the question raises them)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Per worker: the probability (learned router) or centred cosine (centroid router);
    kept for compatibility — prefer ``probabilities``."""
    probabilities: dict[str, float] = Field(default_factory=dict)
    """Per worker: the probability that the question needs it (multi-label: they need not
    sum to 1). Empty for the centroid router."""
    none_probability: float | None = None
    """The probability that no specialist fits (learned router)."""
    parts: list[RoutePart] = Field(default_factory=list)
    """The question cut into parts with their worker: one part for ``direct``; for
    ``plan``, the clauses grouped by worker; empty for ``supervisor``."""
    split: bool = False
    """``plan`` only: the parts decided the plan — every chosen worker has a part of its
    own, with its own text (a plan can be built from ``parts`` directly)."""
    filled: bool = False
    """``plan`` only, not ``split``: the decision rule chose a specialist (its probability
    reached the multi-label threshold) but matched no clause to it, and the router gave it
    its best clause or the whole question (:attr:`RoutePart.by`), so every chosen
    specialist has a part (a plan can be built from ``parts`` directly). Left unset when no
    clause of the question is about any specialist: the decomposition is unclear."""
    reason: str = ""
    """Why, in one sentence."""
    best_match: bool = False
    """``direct`` only (learned router): no specialist reached the multi-label threshold, and
    the best one answers alone because its probability reached ``min_probability`` while the
    none-probability stayed under ``max_none`` — the router was unsure. (A specialist whose
    answer memory holds a learned passage at least ``[learning] trust_memory_above`` close to
    the question then answers instead: see ``Learning.memory_route``.)"""
    stage: Literal["fast", "second"] = "fast"
    """Who decided: the learned router (``fast``) or the local model of its second stage."""
    second_stage: str | None = None
    """When the second stage was asked (a grey-zone question): what it chose, or why its
    answer was not used (the fast decision then stands)."""
    second_stage_ms: float | None = None
    """How long the second stage took."""
    fast_workers: list[str] | None = None
    """When the second stage was asked: the workers the fast router had chosen."""
