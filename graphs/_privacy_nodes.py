"""Privacy, egress and budget enforcement for the hybrid graph's supervisor calls.

Every supervisor call of a run goes through :class:`GuardedLLM`, which, in order:

1. stops the call if a per-run budget would be exceeded (``[cost]``) — the node then
   degrades to the worker results it has and the answer says the budget stopped it;
2. for a remote model: redacts the whole payload (``redact``/``ask``), pauses the graph
   with an :class:`~tandem.agents.privacy.EgressRequest` interrupt under ``ask`` (a refusal
   sends nothing and hands the call to the local supervisor), and appends one record
   per request to the egress log;
3. prices the reply (custom prices win) and neutralises off-allowlist links in its text.

Node bodies stay in ``hybrid.py``; :func:`collect` wraps each node so what these helpers
decide (egress records, a refusal, a budget stop, values found in passages, new
placeholders) is merged into the node's state update.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.documents import Document

from tandem.agents._cost import price_tokens, worst_case_cost
from tandem.agents._egress import (
    EgressRecord,
    append_egress,
    egress_log_path,
    now_iso,
    payload_digest,
)
from tandem.agents._hygiene import neutralize_links
from tandem.agents._llm import LLMReply
from tandem.agents.privacy import PLACEHOLDER, EgressRequest, Redactor, detector_for, restore
from tandem.agents.supervisor import Supervisor
from tandem.graphs.ledger import BUDGET_STOP, Ledger, build_ledger
from tandem.graphs.runtime import Runtime
from tandem.workers.backends import ChatMessage, TokenCallback
from tandem.workers.errors import BackendRejected, RunError
from tandem.workers.records import WorkerResult

__all__ = [
    "BudgetExceeded",
    "GuardedLLM",
    "collect",
    "final_text",
    "guarded_supervisor",
    "note_passages",
    "outbound",
    "run_ledger",
    "timed_detect",
]

BUDGET_NOTE = (
    "The run's budget stopped escalation to the large model; this answer comes from the "
    "specialists' results only."
)


NEW_TURN: dict[str, Any] = {"egress": None, "egress_denied": False, "budget_stop": ""}
"""State a new turn resets (the guard node returns it). ``held`` stays for the thread: a later
turn's history may quote values found in an earlier turn's passages."""


class BudgetExceeded(RunError):
    """A per-run budget would be exceeded by the next large-model call; nothing was sent."""

    retryable = False


@dataclass
class _Box:
    """What the helpers decided during one node execution (merged into its update)."""

    egress: list[EgressRecord] = field(default_factory=list)
    held: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    denied: bool = False
    budget_stop: str = ""
    redactor: Redactor | None = None
    approved: set[str] = field(default_factory=set)
    calls_made: int = 0
    spent: float = 0.0

    def updates(self, state: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.egress:
            out["egress"] = self.egress
        if self.held:
            out["held"] = [list(h) for h in self.held]
        if self.notes:
            out["notes"] = self.notes
        if self.denied:
            out["egress_denied"] = True
        if self.budget_stop:
            out["budget_stop"] = self.budget_stop
        guard = state.get("guard") if isinstance(state, dict) else None
        if (
            self.redactor is not None
            and guard is not None
            and self.redactor.mapping != guard.mapping
        ):
            out["guard"] = guard.model_copy(update={"mapping": dict(self.redactor.mapping)})
        return out


_BOX: contextvars.ContextVar[_Box | None] = contextvars.ContextVar("tandem_egress", default=None)


def _box() -> _Box:
    box = _BOX.get()
    if box is None:  # called outside a collected node (tests, direct use)
        box = _Box()
        _BOX.set(box)
    return box


def collect(
    fn: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]],
) -> Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]:
    """Wrap a node so the privacy helpers' decisions join its state update."""

    async def node(state: Any) -> dict[str, Any]:
        token = _BOX.set(_Box())
        try:
            result = await fn(state)
            box = _BOX.get() or _Box()
        finally:
            _BOX.reset(token)
        extra = box.updates(state)
        if "notes" in extra:
            extra["notes"] = [*(result.get("notes") or []), *extra["notes"]]
        if "guard" in extra and "guard" in result:
            del extra["guard"]  # the node set its own guard (a new turn)
        return {**result, **extra}

    node.__name__ = getattr(fn, "__name__", "node")
    return node


def _thread_id() -> str | None:
    try:
        from langgraph.config import get_config

        return get_config().get("configurable", {}).get("thread_id")
    except Exception:
        return None


def run_redactor(rt: Runtime, state: Any) -> Redactor:
    """This node's redactor: the query's placeholders plus values found in passages."""
    box = _box()
    if box.redactor is None:
        guard = state.get("guard")
        redactor = Redactor(guard.mapping if guard else {}, detector_for(rt.config.privacy))
        private = _local_only_workers(rt)
        allow = guard is not None and guard.policy == "allow"
        for item in state.get("held") or []:
            if not allow or (len(item) > 2 and item[2] in private):
                redactor.add(item[0], item[1])
        box.redactor = redactor
    return box.redactor


def note_passages(rt: Runtime, worker: str, passages: Sequence[Document]) -> None:
    """Scan a worker's retrieved passages; values found are redacted wherever they reappear."""
    spec = rt.specs.get(worker)
    sensitive = getattr(spec, "sensitivity", "normal") == "local_only"
    if not (rt.config.privacy.scan_passages or sensitive):
        return
    detector = detector_for(rt.config.privacy)
    box = _box()
    for doc in passages:
        for f in detector.find(doc.page_content):
            if (f.type, f.text, worker) not in box.held:
                box.held.append((f.type, f.text, worker))


def _local_only_workers(rt: Runtime) -> set[str]:
    return {n for n, s in rt.specs.items() if getattr(s, "sensitivity", "normal") == "local_only"}


def outbound(
    rt: Runtime, state: Any, sup: Supervisor, query: str, history: str
) -> tuple[Redactor | None, str, str, list[WorkerResult]]:
    """Query, history and worker results as ``sup`` may see them (redacted if remote).

    Under ``redact``/``ask`` everything is redacted; under ``allow`` only the answers of
    workers with ``sensitivity = "local_only"``. Links in worker answers are neutralised
    whatever the policy (they are model output passed to another model).
    """
    allowed = rt.config.privacy.allowed_link_hosts
    results = [
        r.model_copy(update={"answer": neutralize_links(r.answer, allowed)})
        for r in state.get("results") or []
    ]
    if sup.llm.where != "remote":
        return None, query, history, results
    redactor = run_redactor(rt, state)
    policy = state["guard"].policy
    if policy in ("redact", "ask"):
        query, history = redactor.redact(query), redactor.redact(history)
        results = [r.model_copy(update={"answer": redactor.redact(r.answer)}) for r in results]
        return redactor, query, history, results
    private = _local_only_workers(rt)
    # allow: only what came from a local_only worker's store is held back, in this turn's
    # results and in the history (an earlier answer may quote it).
    history = redactor.redact(history, detect=False)
    results = [
        r.model_copy(update={"answer": redactor.redact(r.answer)}) if r.worker in private else r
        for r in results
    ]
    return redactor, query, history, results


class _NoEgress:
    """Stands in for a remote supervisor under ``local_only``: refuses every call."""

    where: Literal["local", "remote"] = "local"

    def __init__(self, model: str) -> None:
        self.model = model

    async def complete(self, messages: Any, **kwargs: Any) -> LLMReply:
        raise BackendRejected(
            "the privacy policy is local_only and this supervisor is not on this machine; "
            "nothing was sent",
            model=self.model,
            hint="set [privacy] local_supervisor to a model that runs on this machine",
        )


def _local_llm(rt: Runtime) -> Any:
    llm = rt.local_supervisor().llm
    return _NoEgress(llm.model) if llm.where == "remote" else llm


class GuardedLLM:
    """A supervisor model with budgets, redaction, ``ask`` approval and the egress audit."""

    def __init__(self, inner: Any, rt: Runtime, state: Any) -> None:
        self.inner = inner
        self.rt = rt
        self.state = state
        self.model: str = inner.model
        self.where: Literal["local", "remote"] = inner.where

    def _check_budget(self, payload_bytes: int) -> None:
        cost = self.rt.config.cost
        box = _box()
        calls = [
            c
            for c in self.state.get("calls") or []
            if c.role == "supervisor" and BUDGET_STOP not in c.error
        ]
        made = len(calls) + box.calls_made
        limit = cost.max_supervisor_calls_per_run
        reason = ""
        if limit is not None and made >= limit:
            reason = f"max_supervisor_calls_per_run = {limit} reached"
        elif cost.max_remote_usd_per_run is not None and self.where == "remote":
            spent = sum(c.cost_usd for c in calls if c.where == "remote") + box.spent
            max_tokens = int(getattr(self.inner, "max_tokens", 1024) or 1024)
            worst = worst_case_cost(self.model, payload_bytes, max_tokens, cost.prices)
            if worst is None:
                reason = (
                    f"no price is known for {self.model}, so max_remote_usd_per_run "
                    "cannot be guaranteed (set [cost.prices])"
                )
            elif spent + worst > cost.max_remote_usd_per_run:
                reason = (
                    f"max_remote_usd_per_run = ${cost.max_remote_usd_per_run:g} would be "
                    f"exceeded (spent ${spent:.6f}, next call up to ${worst:.6f})"
                )
        if reason:
            box.budget_stop = box.budget_stop or reason
            raise BudgetExceeded(
                f"{BUDGET_STOP}: {reason}; nothing was sent",
                model=self.model,
                hint="raise the budget in [cost] to let the large model help",
            )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        box = _box()
        guard = self.state["guard"]
        if self.where == "remote" and (box.denied or self.state.get("egress_denied")):
            return await self._local(messages, schema, schema_name, on_token)
        if self.where == "remote" and guard.policy in ("redact", "ask"):
            redactor = run_redactor(self.rt, self.state)
            messages = [{**m, "content": redactor.redact(m["content"])} for m in messages]
        data, digest = payload_digest(messages)
        self._check_budget(len(data))
        approved: Literal["policy", "user"] = "policy"
        if self.where == "remote" and guard.policy == "ask" and digest not in box.approved:
            from langgraph.types import interrupt

            request: EgressRequest = {
                "kind": "egress_approval",
                "model": self.model,
                "host": getattr(self.inner, "host", None),
                "purpose": schema_name,
                "messages": [{k: str(v) for k, v in m.items()} for m in messages],
                "bytes": len(data),
                "redacted": _placeholders(messages),
            }
            if not interrupt(request):
                box.denied = True
                box.notes.append(
                    f"egress refused at the prompt: nothing was sent to {self.model}; "
                    "the local supervisor continued"
                )
                return await self._local(messages, schema, schema_name, on_token)
            box.approved.add(digest)
        if self.where == "remote":
            approved = "user" if guard.policy == "ask" else "policy"
        box.calls_made += 1
        outcome = "ok"
        try:
            reply: LLMReply = await self.inner.complete(
                messages, schema=schema, schema_name=schema_name, on_token=on_token
            )
        except RunError as exc:
            outcome = f"error: {exc.message}"[:300]
            raise
        finally:
            if self.where == "remote":
                self._audit(messages, data, digest, schema_name, approved, outcome)
        return self._finish(reply)

    def _finish(self, reply: LLMReply) -> LLMReply:
        box = _box()
        update: dict[str, Any] = {
            "content": neutralize_links(reply.content, self.rt.config.privacy.allowed_link_hosts)
        }
        if reply.where == "remote":
            priced = price_tokens(
                reply.model, reply.tokens_in, reply.tokens_out, self.rt.config.cost.prices
            )
            if reply.model in self.rt.config.cost.prices and priced is not None:
                update["cost_usd"] = priced
            box.spent += float(update.get("cost_usd", reply.cost_usd))
        return reply.model_copy(update=update)

    async def _local(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any] | None,
        schema_name: str,
        on_token: TokenCallback | None,
    ) -> LLMReply:
        guard = self.state["guard"]
        redactor = _box().redactor
        mapping = {**guard.mapping, **(redactor.mapping if redactor else {})}
        local = [{**m, "content": restore(m["content"], mapping)} for m in messages]
        _box().calls_made += 1
        reply: LLMReply = await _local_llm(self.rt).complete(
            local, schema=schema, schema_name=schema_name, on_token=on_token
        )
        return self._finish(reply)

    def _audit(
        self,
        messages: Sequence[ChatMessage],
        data: bytes,
        digest: str,
        purpose: str,
        approved: Literal["policy", "user"],
        outcome: str,
    ) -> None:
        privacy = self.rt.config.privacy
        record = EgressRecord(
            time=now_iso(),
            model=self.model,
            host=getattr(self.inner, "host", None),
            purpose=purpose,
            bytes_sent=len(data),
            redacted=_placeholders(messages),
            sha256=digest,
            policy=self.state["guard"].policy,
            approved=approved,
            outcome=outcome,
            thread_id=_thread_id(),
            payload=[dict(m) for m in messages] if privacy.audit_payloads else None,
        )
        append_egress(egress_log_path(self.rt.config.data_dir), record)
        _box().egress.append(record)


def _placeholders(messages: Sequence[ChatMessage]) -> dict[str, int]:
    seen: dict[str, set[str]] = {}
    for m in messages:
        for match in PLACEHOLDER.finditer(str(m.get("content", ""))):
            seen.setdefault(match.group(1), set()).add(match.group(0))
    return {kind: len(v) for kind, v in sorted(seen.items())}


def guarded_supervisor(rt: Runtime, state: Any) -> Supervisor:
    """The supervisor this node may use, wrapped in :class:`GuardedLLM`."""
    policy = state["guard"].policy
    sup = rt.supervisor_for(policy)
    llm: Any = sup.llm
    if policy == "local_only" and llm.where == "remote":
        # Never send under local_only, whatever the supervisor configuration says.
        llm = _NoEgress(llm.model)
    elif state.get("egress_denied") and llm.where == "remote":
        llm = _local_llm(rt)
    return Supervisor(GuardedLLM(llm, rt, state), max_subtasks=sup.max_subtasks, retry=sup.retry)


def final_text(rt: Runtime, state: Any) -> str:
    """The draft with placeholders restored locally, links neutralised, budget stop stated."""
    text = restore(state.get("draft") or "", state["guard"].mapping)
    text = neutralize_links(text, rt.config.privacy.allowed_link_hosts)
    if state.get("budget_stop") and BUDGET_NOTE not in text:
        text = f"{text}\n\n{BUDGET_NOTE}".strip()
    return text


def run_ledger(rt: Runtime, state: Any) -> Ledger:
    """The run's ledger: calls, egress records, and the all-supervisor counterfactual."""
    return build_ledger(
        state.get("calls") or [],
        egress=state.get("egress") or [],
        supervisor_model=rt.supervisor.llm.model,
        prices=rt.config.cost.prices,
    )


def timed_detect(rt: Runtime, text: str) -> tuple[Redactor, str, dict[str, int], float]:
    """Redact ``text`` with the configured detector; also returns counts and milliseconds."""
    started = time.perf_counter()
    redactor = Redactor(detector=detector_for(rt.config.privacy))
    redacted = redactor.redact(text)
    ms = (time.perf_counter() - started) * 1000
    return redactor, redacted, dict(redactor.last_counts), round(ms, 2)
