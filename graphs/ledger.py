"""Cost, latency and egress accounting: one row per model call, plus totals.

Remote calls are priced (litellm's price list, or ``[cost.prices]``); local calls
cost 0 and report their compute seconds. Each run's ledger also prices the
same token volume as if every chat call had gone to the supervisor model (the
counterfactual) and the resulting savings — :func:`tandem.agents.cost.savings`, the one
savings computation. :class:`SessionLedger` adds runs up per thread and per session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, Field

from tandem.agents.cost import BUDGET_STOP, ModelPrice, savings, savings_pct
from tandem.agents.privacy import EgressRecord, EgressSummary, summarize_egress
from tandem.workers.records import CallRecord

__all__ = [
    "BUDGET_STOP",
    "EgressSummary",
    "Ledger",
    "LedgerTotals",
    "SessionLedger",
    "build_ledger",
]


class LedgerTotals(BaseModel):
    """Sums over a run's (or a session's) calls."""

    calls: int = 0
    """Model calls made (embeddings included)."""
    local_calls: int = 0
    """Calls that stayed on this machine."""
    remote_calls: int = 0
    """Calls that left the machine."""
    supervisor_calls: int = 0
    """Calls to the large model."""
    worker_calls: int = 0
    """Calls to specialist small models."""
    failed_calls: int = 0
    """Calls that ended in an error."""
    budget_stops: int = 0
    """Large-model calls a per-run budget stopped (never made, not counted as calls)."""
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    """Sum of call durations (parallel calls overlap, so this can exceed wall time)."""
    local_seconds: float = 0.0
    """Compute seconds of local calls (they cost no dollars)."""
    cost_usd: float = 0.0
    local_share: float = 1.0
    """Share of calls answered locally (1.0 = nothing left the machine)."""
    bytes_sent_remote: int = 0
    """Bytes of prompts sent to remote models (the egress)."""
    counterfactual_usd: float = 0.0
    """What the same chat tokens would have cost had every call gone to the supervisor model."""
    savings_pct: float | None = None
    """``100 × (counterfactual − cost) / counterfactual``; ``None`` when the supervisor model
    has no known price (nothing to compare against)."""
    router_plans: int = 0
    """Plans the router built from the question's parts (no planning call)."""
    supervisor_plans: int = 0
    """Plans the supervisor made (a planning call)."""

    def __add__(self, other: LedgerTotals) -> LedgerTotals:
        t = LedgerTotals()
        for name in (
            "calls",
            "local_calls",
            "remote_calls",
            "supervisor_calls",
            "worker_calls",
            "failed_calls",
            "budget_stops",
            "tokens_in",
            "tokens_out",
            "bytes_sent_remote",
            "router_plans",
            "supervisor_plans",
        ):
            setattr(t, name, getattr(self, name) + getattr(other, name))
        t.seconds = round(self.seconds + other.seconds, 4)
        t.local_seconds = round(self.local_seconds + other.local_seconds, 4)
        t.cost_usd = round(self.cost_usd + other.cost_usd, 8)
        t.counterfactual_usd = round(self.counterfactual_usd + other.counterfactual_usd, 8)
        t.local_share = round(t.local_calls / t.calls, 4) if t.calls else 1.0
        t.savings_pct = savings_pct(t.cost_usd, t.counterfactual_usd)
        return t


class Ledger(BaseModel):
    """Every model call of a run, the run's egress, and their totals."""

    calls: list[CallRecord] = Field(default_factory=list)
    totals: LedgerTotals = Field(default_factory=LedgerTotals)
    egress: EgressSummary = Field(default_factory=EgressSummary)
    """Remote requests of the run as the egress log recorded them."""
    supervisor_model: str = ""
    """The model the counterfactual is priced on."""
    planned_by: Literal["router", "supervisor"] | None = None
    """Who planned the run: the router (from the question's parts, no planning call) or the
    supervisor; ``None`` when nothing was planned."""
    plan_rationale: str = ""
    """The plan's rationale, when planned: for a router-built plan, each specialist's part
    and how it got it (a clause matched to it, its best clause, or the whole question)."""


def build_ledger(
    calls: Iterable[CallRecord],
    *,
    egress: Iterable[EgressRecord] = (),
    supervisor_model: str | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    planned_by: Literal["router", "supervisor"] | None = None,
    plan_rationale: str = "",
) -> Ledger:
    """Compute totals for ``calls``.

    Args:
        calls: The run's model calls.
        egress: The run's egress records (summarised into :attr:`Ledger.egress`).
        supervisor_model: Prices the counterfactual: every worker and supervisor chat
            call's tokens (embeddings excluded) at this model's price.
        prices: Custom prices (``[cost.prices]``), winning over litellm's.
        planned_by: Who planned the run, if it was planned.
        plan_rationale: The plan's rationale, if it was planned.
    """
    rows = list(calls)
    t = LedgerTotals(
        router_plans=int(planned_by == "router"),
        supervisor_plans=int(planned_by == "supervisor"),
    )
    for c in rows:
        if BUDGET_STOP in c.error:
            t.budget_stops += 1
            continue
        t.calls += 1
        t.local_calls += c.where == "local"
        t.remote_calls += c.where == "remote"
        t.supervisor_calls += c.role == "supervisor"
        t.worker_calls += c.role == "worker"
        t.failed_calls += bool(c.error)
        t.tokens_in += c.tokens_in
        t.tokens_out += c.tokens_out
        t.seconds += c.seconds
        t.cost_usd += c.cost_usd
        if c.where == "remote":
            t.bytes_sent_remote += c.bytes_sent
        else:
            t.local_seconds += c.seconds
    t.seconds = round(t.seconds, 4)
    t.local_seconds = round(t.local_seconds, 4)
    t.cost_usd = round(t.cost_usd, 8)
    t.local_share = round(t.local_calls / t.calls, 4) if t.calls else 1.0
    if supervisor_model:
        saved = savings(rows, supervisor_model, prices or {})
        t.counterfactual_usd = saved.counterfactual_usd or 0.0
        t.savings_pct = saved.pct
    return Ledger(
        calls=rows,
        totals=t,
        egress=summarize_egress(egress),
        supervisor_model=supervisor_model or "",
        planned_by=planned_by,
        plan_rationale=plan_rationale,
    )


class SessionLedger(BaseModel):
    """Totals over many runs: per thread and for the whole session (the REPL's ``/cost``)."""

    runs: int = 0
    """Runs added."""
    totals: LedgerTotals = Field(default_factory=LedgerTotals)
    """Sum over every run added."""
    egress: EgressSummary = Field(default_factory=EgressSummary)
    """Remote requests over every run added."""
    threads: dict[str, LedgerTotals] = Field(default_factory=dict)
    """Sums per conversation thread."""

    def add(self, ledger: Ledger, thread_id: str | None = None) -> None:
        """Account for one run's ledger (optionally under a thread)."""
        self.runs += 1
        self.totals = self.totals + ledger.totals
        e, o = self.egress, ledger.egress
        e.requests += o.requests
        e.bytes_sent += o.bytes_sent
        e.user_approved += o.user_approved
        for kind, n in o.redacted.items():
            e.redacted[kind] = e.redacted.get(kind, 0) + n
        for model, n in o.by_model.items():
            e.by_model[model] = e.by_model.get(model, 0) + n
        if thread_id is not None:
            self.threads[thread_id] = self.threads.get(thread_id, LedgerTotals()) + ledger.totals
