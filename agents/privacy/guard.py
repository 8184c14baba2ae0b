"""The guarded supervisor model: budgets, redaction, ``ask`` approval and the egress audit.

Every call through :class:`GuardedLLM`, in order:

1. stops if a per-run budget would be exceeded (:class:`~tandem.agents.cost.RunBudget`) —
   nothing is sent and the caller degrades to the worker results it has;
2. for a remote model: redacts the whole payload (``redact``/``ask``), asks
   :attr:`GuardScope.approve` under ``ask`` (a refusal sends nothing and hands the call to
   the local model), and records the request in the egress log (:class:`EgressAudit`);
3. prices the reply (custom prices win) and neutralises off-allowlist links in its text.

Its collaborators are explicit: a :class:`GuardScope` holds the policy, the redactor, the
budget, the audit, the approval callback and the local model for one step of a run, and
collects what the guard decided there (refusals, notes, egress records). The graph
(``tandem.graphs``) creates one per step and merges its decisions into the run's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from tandem.agents.cost import RunBudget, price_tokens, worst_case_cost
from tandem.agents.llm import LLMReply, SupervisorLLM
from tandem.agents.privacy.egress import EgressRecord, append_egress, now_iso, payload_digest
from tandem.agents.privacy.hygiene import neutralize_links
from tandem.agents.privacy.redact import PLACEHOLDER, Redactor, restore
from tandem.agents.privacy.settings import Policy, PrivacySettings
from tandem.workers.backends import ChatMessage, TokenCallback
from tandem.workers.errors import BackendRejected, BackendTimeout, RunError

__all__ = [
    "EgressAudit",
    "EgressRequest",
    "GuardReport",
    "GuardScope",
    "GuardedLLM",
    "NoEgressLLM",
    "placeholders",
]


class GuardReport(BaseModel):
    """What the guard found in a query and what may leave the machine."""

    policy: Policy = "redact"
    """The egress policy in force for this run."""
    findings: dict[str, int] = Field(default_factory=dict)
    """Count of sensitive spans by type."""
    redacted_query: str = ""
    """The query with placeholders, as a remote model would see it."""
    mapping: dict[str, str] = Field(default_factory=dict, repr=False)
    """Placeholder → original (kept locally, used to restore the answer)."""
    supervisor_where: Literal["local", "remote"] = "local"
    """Where the supervisor chosen for this run runs."""
    detect_ms: float = 0.0
    """Milliseconds spent detecting sensitive spans in the query."""
    scanned: bool = True
    """Whether the query was scanned at all: not when every model runs on this machine
    (nothing can leave; ``[privacy] scan_local_runs`` turns the scan on anyway)."""


class EgressRequest(TypedDict):
    """The interrupt value under ``policy = "ask"``: exactly what would be sent.

    Resume the graph with ``Command(resume=True)`` to send it, ``Command(resume=False)``
    to refuse (the run then continues with the local supervisor, nothing is sent).
    """

    kind: Literal["egress_approval"]
    """Always ``"egress_approval"`` (tells this interrupt apart from others)."""
    model: str
    """The remote model that would receive the payload."""
    host: str | None
    """Its endpoint host, when known."""
    purpose: str
    """What the call is for: ``plan``, ``synthesize`` or ``answer``."""
    messages: list[dict[str, str]]
    """The chat messages, exactly as they would be sent (already redacted)."""
    bytes: int
    """Size of the payload in bytes."""
    redacted: dict[str, int]
    """Placeholders in the payload, by entity type."""


def placeholders(messages: Sequence[ChatMessage]) -> dict[str, int]:
    """Distinct placeholders in ``messages``, by entity type."""
    seen: dict[str, set[str]] = {}
    for m in messages:
        for match in PLACEHOLDER.finditer(str(m.get("content", ""))):
            seen.setdefault(match.group(1), set()).add(match.group(0))
    return {kind: len(v) for kind, v in sorted(seen.items())}


class NoEgressLLM:
    """Stands in for a remote supervisor under ``local_only``: refuses every call."""

    where: Literal["local", "remote"] = "local"

    def __init__(self, model: str) -> None:
        self.model = model

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        raise BackendRejected(
            "the privacy policy is local_only and this supervisor is not on this machine; "
            "nothing was sent",
            model=self.model,
            hint="set [privacy] local_supervisor to a model that runs on this machine",
        )


class EgressAudit:
    """Appends one record per remote request to the egress log; keeps this step's records.

    Args:
        path: The egress log (``<data_dir>/egress.jsonl``).
        policy: The privacy policy in force (recorded with every request).
        thread_id: The conversation thread, when the run has one.
        keep_payloads: Store the (redacted) messages too (``[privacy] audit_payloads``).
    """

    def __init__(
        self, path: Path, *, policy: str, thread_id: str | None, keep_payloads: bool
    ) -> None:
        self.path = path
        self.policy = policy
        self.thread_id = thread_id
        self.keep_payloads = keep_payloads
        self.records: list[EgressRecord] = []

    def begin(
        self,
        *,
        model: str,
        host: str | None,
        purpose: str,
        messages: Sequence[ChatMessage],
        data: bytes,
        digest: str,
        approved: Literal["policy", "user"],
    ) -> EgressRecord:
        """Log a request about to leave (synced to disk before it is sent)."""
        record = EgressRecord(
            id=uuid.uuid4().hex,
            time=now_iso(),
            model=model,
            host=host,
            purpose=purpose,
            bytes_sent=len(data),
            redacted=placeholders(messages),
            sha256=digest,
            policy=self.policy,
            approved=approved,
            outcome="sending",
            thread_id=self.thread_id,
            payload=[dict(m) for m in messages] if self.keep_payloads else None,
        )
        append_egress(self.path, record, sync=True)
        return record

    def complete(self, record: EgressRecord, outcome: str, *, sent: bool) -> EgressRecord:
        """Complete a logged request with how it ended (and remember it for the ledger)."""
        done = record.model_copy(
            update={"outcome": outcome[:300], "bytes_sent": record.bytes_sent if sent else 0}
        )
        append_egress(self.path, done)
        self.records.append(done)
        return done


@dataclass
class GuardScope:
    """The guard's collaborators for one step of a run, and what it decided there.

    Args:
        policy: The run's egress policy.
        settings: The ``[privacy]`` settings (link allowlist).
        budget: The run's budget (``[cost]`` limits and custom prices).
        audit: Where remote requests are recorded.
        approve: Under ``ask``: shown each payload before it is sent; a falsy answer refuses
            it (the graph passes LangGraph's ``interrupt``).
        local_llm: The model a refused call goes to instead (built when first needed).
        make_redactor: Builds this step's redactor (the query's placeholders plus values
            found in retrieved passages) when first needed.
        mapping: The query's placeholders (restored before a call goes to the local model).
        refused_earlier: The user refused a remote call earlier in this run.
    """

    policy: Policy
    settings: PrivacySettings
    budget: RunBudget
    audit: EgressAudit
    approve: Callable[[EgressRequest], object]
    local_llm: Callable[[], SupervisorLLM]
    make_redactor: Callable[[], Redactor]
    mapping: dict[str, str] = field(default_factory=dict)
    refused_earlier: bool = False
    refused: bool = False
    """The user refused a remote call in this step (the rest of the run stays local)."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about this step's decisions."""
    approved: set[str] = field(default_factory=set)
    """Digests of payloads the user approved in this step (asked once each)."""
    _redactor: Redactor | None = field(default=None, init=False, repr=False)

    def redactor(self) -> Redactor:
        """This step's redactor (built once)."""
        if self._redactor is None:
            self._redactor = self.make_redactor()
        return self._redactor

    @property
    def redactor_built(self) -> Redactor | None:
        """The redactor, if this step has needed one."""
        return self._redactor

    def restore_mapping(self) -> dict[str, str]:
        """Every placeholder this step knows → its original value."""
        return {**self.mapping, **(self._redactor.mapping if self._redactor else {})}


class GuardedLLM:
    """A supervisor model with budgets, redaction, ``ask`` approval and the egress audit.

    Args:
        inner: The model the calls go to.
        scope: The guard's collaborators for this step (see :class:`GuardScope`).
    """

    def __init__(self, inner: SupervisorLLM, scope: GuardScope) -> None:
        self.inner = inner
        self.scope = scope
        self.model: str = inner.model
        self.where: Literal["local", "remote"] = inner.where

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        scope = self.scope
        remote = self.where == "remote"
        if remote and (scope.refused or scope.refused_earlier):
            return await self._local(messages, schema, schema_name, on_token)
        if remote and scope.policy in ("redact", "ask"):
            redactor = scope.redactor()
            messages = [{**m, "content": redactor.redact(m["content"])} for m in messages]
        data, digest = payload_digest(messages)
        max_tokens = int(getattr(self.inner, "max_tokens", 1024) or 1024)
        scope.budget.check(self.model, self.where, len(data), max_tokens)
        approved: Literal["policy", "user"] = "policy"
        host = getattr(self.inner, "host", None)
        if remote and scope.policy == "ask" and digest not in scope.approved:
            request: EgressRequest = {
                "kind": "egress_approval",
                "model": self.model,
                "host": host,
                "purpose": schema_name,
                "messages": [{k: str(v) for k, v in m.items()} for m in messages],
                "bytes": len(data),
                "redacted": placeholders(messages),
            }
            if not scope.approve(request):
                scope.refused = True
                scope.notes.append(
                    f"egress refused at the prompt: nothing was sent to {self.model}; "
                    "the local supervisor continued"
                )
                return await self._local(messages, schema, schema_name, on_token)
            scope.approved.add(digest)
        if remote:
            approved = "user" if scope.policy == "ask" else "policy"
        scope.budget.record_call()  # every attempt counts (retries go through here too)
        # Written ahead: the log holds the request before it leaves.
        record = (
            scope.audit.begin(
                model=self.model,
                host=host,
                purpose=schema_name,
                messages=messages,
                data=data,
                digest=digest,
                approved=approved,
            )
            if remote
            else None
        )
        outcome, sent = "sending", True
        try:
            reply = await self.inner.complete(
                messages, schema=schema, schema_name=schema_name, on_token=on_token
            )
            outcome = "ok"
        except RunError as exc:
            sent = not exc.not_sent
            outcome = f"{'error' if sent else 'not sent'}: {exc.message}"
            if remote and sent and isinstance(exc, BackendTimeout):
                # The provider may have processed (and billed) a request we gave up on.
                worst = worst_case_cost(
                    self.model, len(data), max_tokens, scope.budget.settings.prices
                )
                if worst:
                    scope.budget.charge(worst)
                    exc.cost_usd += worst
            raise
        except BaseException:
            outcome = "error: cancelled while in flight"
            raise
        finally:
            if record is not None:
                scope.audit.complete(record, outcome, sent=sent)
        return self._finish(reply)

    def _finish(self, reply: LLMReply) -> LLMReply:
        scope = self.scope
        update: dict[str, Any] = {
            "content": neutralize_links(reply.content, scope.settings.allowed_link_hosts)
        }
        if reply.where == "remote":
            prices = scope.budget.settings.prices
            priced = price_tokens(reply.model, reply.tokens_in, reply.tokens_out, prices)
            if reply.model in prices and priced is not None:
                update["cost_usd"] = priced
            scope.budget.charge(float(update.get("cost_usd", reply.cost_usd)))
        return reply.model_copy(update=update)

    async def _local(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any] | None,
        schema_name: str,
        on_token: TokenCallback | None,
    ) -> LLMReply:
        mapping = self.scope.restore_mapping()
        local: list[ChatMessage] = [
            {**m, "content": restore(m["content"], mapping)} for m in messages
        ]
        self.scope.budget.record_call()
        reply = await self.scope.local_llm().complete(
            local, schema=schema, schema_name=schema_name, on_token=on_token
        )
        return self._finish(reply)
