"""Evaluate a tandem graph on a labelled dataset (``tandem eval DATASET.jsonl``).

Dataset format: JSON Lines, one object per question::

    {"question": "What is the basic rate of income tax in Veloria?",
     "expected_workers": ["finance"],
     "facts": ["18%"]}

* ``question`` (required; ``query`` is accepted too) — what to ask.
* ``expected_workers`` (``expected`` accepted) — the specialist(s) the router should
  pick: one name for a direct answer, several for a cross-domain plan, ``[]`` when
  no specialist fits (the supervisor answers alone).
* ``facts`` — reference facts; each must appear in the answer (case-insensitive,
  whitespace-normalised substring) for the question to count as answered.

Per question the report keeps the route, whether it matched, which facts were
found, the local share of model calls, the cost and the latency; the summary has
route accuracy, fact recall, fully-answered share, mean local share, total cost
and latency p50/p95.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from tandem.graphs.hybrid import TandemGraph
from tandem.graphs.state import Answer
from tandem.workers.errors import ConfigError, RunError

__all__ = ["EvalCase", "EvalReport", "EvalRow", "evaluate", "load_dataset", "summarize"]


class EvalCase(BaseModel):
    """One labelled question."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    question: str = Field(validation_alias=AliasChoices("question", "query"), min_length=1)
    """The question to ask."""
    expected_workers: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("expected_workers", "expected")
    )
    """Specialists the router should choose (``[]``: none fits)."""
    facts: list[str] = Field(default_factory=list)
    """Reference facts the answer must contain."""


class EvalRow(BaseModel):
    """The outcome for one question."""

    question: str
    """The question asked."""
    expected_workers: list[str]
    """The labelled specialists."""
    route: str
    """The router's decision: ``direct``, ``plan`` or ``supervisor`` (``error`` if it failed)."""
    workers: list[str]
    """Specialists the router chose."""
    route_ok: bool
    """The chosen set equals the labelled set."""
    facts_found: list[str] = Field(default_factory=list)
    """Reference facts present in the answer."""
    facts_missing: list[str] = Field(default_factory=list)
    """Reference facts absent from the answer."""
    escalated: bool = False
    """A direct answer was not confident and went to the supervisor."""
    local_share: float = 1.0
    """Share of the run's model calls that stayed on this machine."""
    supervisor_calls: int = 0
    """Large-model calls the run made."""
    cost_usd: float = 0.0
    """Dollars spent on remote models."""
    seconds: float = 0.0
    """Wall time of the run."""
    answer: str = ""
    """The answer text."""
    error: str = ""
    """Set when the run itself failed."""


class EvalReport(BaseModel):
    """Per-question rows and the summary."""

    rows: list[EvalRow] = Field(default_factory=list)
    """One row per evaluated question, in dataset order."""
    questions: int = 0
    """Questions evaluated."""
    route_accuracy: float = 0.0
    """Share of questions routed to exactly the labelled specialists."""
    fact_recall: float = 0.0
    """Found reference facts / all reference facts."""
    answered: float = 0.0
    """Share of questions whose answer contains every reference fact."""
    local_share: float = 1.0
    """Mean local share of model calls."""
    supervisor_calls: int = 0
    """Large-model calls in total."""
    cost_usd: float = 0.0
    """Total remote cost."""
    p50_seconds: float = 0.0
    """Median latency per question."""
    p95_seconds: float = 0.0
    """95th-percentile latency per question."""


def load_dataset(path: Path | str) -> list[EvalCase]:
    """Read a JSONL dataset (blank lines and ``#`` comments skipped).

    Raises:
        ConfigError: When the file is missing or a line is not a valid case.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the dataset {p}: {exc.strerror or exc}") from None
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cases.append(EvalCase.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"{p}:{n}: not a valid eval case ({first})",
                hint='each line is {"question": …, "expected_workers": […], "facts": […]}',
            ) from None
    return cases


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    xs = sorted(values)
    return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]


def _row(case: EvalCase, answer: Answer, seconds: float) -> EvalRow:
    text = _norm(answer.text)
    found = [f for f in case.facts if _norm(f) in text]
    route = answer.route
    workers = list(route.workers) if route.kind != "supervisor" else []
    t = answer.ledger.totals
    return EvalRow(
        question=case.question,
        expected_workers=case.expected_workers,
        route=route.kind,
        workers=workers,
        route_ok=sorted(workers) == sorted(case.expected_workers),
        facts_found=found,
        facts_missing=[f for f in case.facts if f not in found],
        escalated=answer.escalated,
        local_share=t.local_share,
        supervisor_calls=t.supervisor_calls,
        cost_usd=t.cost_usd,
        seconds=round(seconds, 3),
        answer=answer.text,
    )


def summarize(rows: Sequence[EvalRow], cases: Sequence[EvalCase]) -> EvalReport:
    """The summary over evaluated rows."""
    n = len(rows)
    facts = sum(len(c.facts) for c in cases)
    secs = [r.seconds for r in rows]
    return EvalReport(
        rows=list(rows),
        questions=n,
        route_accuracy=round(sum(r.route_ok for r in rows) / n, 4) if n else 0.0,
        fact_recall=round(sum(len(r.facts_found) for r in rows) / facts, 4) if facts else 0.0,
        answered=round(sum(not r.facts_missing and not r.error for r in rows) / n, 4) if n else 0.0,
        local_share=round(sum(r.local_share for r in rows) / n, 4) if n else 1.0,
        supervisor_calls=sum(r.supervisor_calls for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), 8),
        p50_seconds=round(_percentile(secs, 50), 3),
        p95_seconds=round(_percentile(secs, 95), 3),
    )


async def evaluate(
    graph: TandemGraph,
    cases: Sequence[EvalCase],
    *,
    limit: int | None = None,
    on_row: Callable[[int, EvalRow], None] | None = None,
) -> EvalReport:
    """Run each case through ``graph`` (sequentially) and score it.

    Args:
        graph: A graph from :func:`~tandem.graphs.build_graph`.
        cases: The labelled questions.
        limit: Evaluate only the first ``limit`` cases.
        on_row: Called after each question with its index and row (progress).

    Returns:
        The per-question rows and the summary. A run that fails with a tandem error is
        recorded as a row with ``error`` set, never raised.
    """
    chosen = list(cases)[:limit] if limit is not None else list(cases)
    rows = []
    for i, case in enumerate(chosen):
        started = time.perf_counter()
        try:
            state = await graph.ainvoke({"query": case.question})
            row = _row(case, state["answer"], time.perf_counter() - started)
        except RunError as exc:
            row = EvalRow(
                question=case.question,
                expected_workers=case.expected_workers,
                route="error",
                workers=[],
                route_ok=False,
                facts_missing=list(case.facts),
                seconds=round(time.perf_counter() - started, 3),
                error=str(exc),
            )
        rows.append(row)
        if on_row is not None:
            on_row(i, row)
    return summarize(rows, chosen)
