"""Prometheus metrics for ``tandem serve`` (``GET /metrics``), one registry per app."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    """Counters, gauges and histograms of one server; :meth:`render` is the scrape body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "tandem_runs", "Runs finished, by route kind.", ["route", "forced"], registry=r
        )
        self.escalations = Counter(
            "tandem_escalations", "Direct answers escalated to the supervisor.", registry=r
        )
        self.model_calls = Counter(
            "tandem_model_calls",
            "Model calls made by runs, by role (worker/supervisor/embed) and where they ran.",
            ["role", "where", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "tandem_tokens",
            "Tokens of model calls, by role, where and direction (in/out).",
            ["role", "where", "direction"],
            registry=r,
        )
        self.remote_cost = Counter(
            "tandem_remote_cost_usd", "Dollars spent on remote model calls.", registry=r
        )
        self.counterfactual = Counter(
            "tandem_counterfactual_usd",
            "What the same chat tokens would have cost on the supervisor model.",
            registry=r,
        )
        self.savings = Counter(
            "tandem_savings_usd",
            "Counterfactual minus actual cost (what running locally saved).",
            registry=r,
        )
        self.egress_bytes = Counter(
            "tandem_egress_bytes", "Bytes of prompts sent to remote models.", registry=r
        )
        self.errors = Counter(
            "tandem_errors", "Requests that ended in an error, by type.", ["type"], registry=r
        )
        self.run_seconds = Histogram(
            "tandem_run_duration_seconds",
            "Wall time of a run, by route kind.",
            ["route"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "tandem_time_to_first_token_seconds",
            "Streaming: seconds from request to the first content token.",
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.call_seconds = Histogram(
            "tandem_model_call_duration_seconds",
            "Wall time of a model call, by role and where.",
            ["role", "where"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.http = Counter(
            "tandem_http_requests",
            "HTTP requests, by path and status.",
            ["path", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "tandem_http_request_duration_seconds",
            "HTTP request wall time (streams: until the last byte), by path.",
            ["path"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge("tandem_runs_in_progress", "Runs holding a slot.", registry=r)
        self.queued = Gauge("tandem_requests_queued", "Requests waiting for a slot.", registry=r)
        self.rejected = Counter(
            "tandem_rejected", "Requests turned away with 429, by reason.", ["reason"], registry=r
        )

    def observe_answer(self, answer: Any, seconds: float, *, forced: bool) -> None:
        """Account for one finished run from its :class:`~tandem.graphs.Answer`."""
        route = str(answer.route.kind)
        self.runs.labels(route=route, forced=str(forced).lower()).inc()
        self.run_seconds.labels(route=route).observe(seconds)
        if answer.escalated:
            self.escalations.inc()
        for call in answer.ledger.calls:
            self.model_calls.labels(
                role=call.role, where=call.where, outcome="error" if call.error else "ok"
            ).inc()
            self.tokens.labels(role=call.role, where=call.where, direction="in").inc(call.tokens_in)
            self.tokens.labels(role=call.role, where=call.where, direction="out").inc(
                call.tokens_out
            )
            self.call_seconds.labels(role=call.role, where=call.where).observe(call.seconds)
        totals = answer.ledger.totals
        self.remote_cost.inc(max(0.0, totals.cost_usd))
        self.counterfactual.inc(max(0.0, totals.counterfactual_usd))
        self.savings.inc(max(0.0, totals.counterfactual_usd - totals.cost_usd))
        self.egress_bytes.inc(totals.bytes_sent_remote)

    def render(self) -> bytes:
        return generate_latest(self.registry)
