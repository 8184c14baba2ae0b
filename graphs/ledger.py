"""Cost, latency and egress accounting: one row per model call, plus totals."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from tandem.workers.records import CallRecord

__all__ = ["Ledger", "LedgerTotals", "build_ledger"]


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
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    """Sum of call durations (parallel calls overlap, so this can exceed wall time)."""
    cost_usd: float = 0.0
    local_share: float = 1.0
    """Share of calls answered locally (1.0 = nothing left the machine)."""
    bytes_sent_remote: int = 0
    """Bytes of prompts sent to remote models (the egress)."""


class Ledger(BaseModel):
    """Every model call of a run and their totals."""

    calls: list[CallRecord] = Field(default_factory=list)
    totals: LedgerTotals = Field(default_factory=LedgerTotals)


def build_ledger(calls: Iterable[CallRecord]) -> Ledger:
    """Compute totals for ``calls``."""
    rows = list(calls)
    t = LedgerTotals()
    for c in rows:
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
    t.seconds = round(t.seconds, 4)
    t.cost_usd = round(t.cost_usd, 8)
    t.local_share = round(t.local_calls / t.calls, 4) if t.calls else 1.0
    return Ledger(calls=rows, totals=t)
