"""What a run does when something fails: deadline, fallbacks, escalation, local synthesis.

The order for a subtask whose worker fails (model down, missing, busy after retries,
bad output twice):

1. the worker's configured fallback (``[reliability.fallbacks.<worker>]``: another model
   and/or Ollama host), same prompt and store;
2. the supervisor answers that subtask itself, when ``escalate_failed`` is on and the
   privacy guard lets the query reach it (under ``local_only`` only a local supervisor);
3. otherwise the answer names the part that is missing and why.

The supervisor unreachable → the worker results are joined locally, with a note. A locked
or corrupt store → workers answer without retrieval (``grounded=False``) and the store
error is reported once per run, with its fix. The run deadline (``[reliability] deadline``)
bounds every node: whatever finished in time is answered, the rest is named.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from langchain_core.messages import AnyMessage, RemoveMessage

from tandem.agents.supervisor import Supervisor
from tandem.graphs.runtime import Runtime, embedded_models
from tandem.workers.backends import TokenCallback, make_backend
from tandem.workers.errors import DeadlineExceeded, RunError, StoreError
from tandem.workers.records import CallRecord, Subtask, WorkerResult
from tandem.workers.worker import Worker, WorkerRun

__all__ = [
    "deadline_at",
    "escalate_failed",
    "local_synthesis",
    "missing_parts",
    "run_worker",
    "store_note",
    "trim_thread",
    "within",
]

T = TypeVar("T")

_FALLBACK_WORKERS: weakref.WeakKeyDictionary[Runtime, dict[str, Worker]] = (
    weakref.WeakKeyDictionary()
)


def deadline_at(rt: Runtime) -> float | None:
    """The wall-clock time (epoch seconds) a run starting now must end by, if any."""
    seconds = _deadline_seconds(rt)
    return None if seconds is None else time.time() + seconds


def _deadline_seconds(rt: Runtime) -> float | None:
    settings = rt.config.reliability
    return settings.embedded_deadline if embedded_models(rt) else settings.deadline


def _deadline_error(rt: Runtime | None, what: str) -> DeadlineExceeded:
    seconds = _deadline_seconds(rt) if rt is not None else None
    limit = f" of {seconds:g} s" if seconds else ""
    return DeadlineExceeded(
        f"the run reached its deadline{limit} before {what} finished",
        hint="raise [reliability] deadline (embedded_deadline for CPU models) in tandem.toml,"
        " or use faster models",
    )


async def within(
    deadline: float | None, aw: Awaitable[T], what: str, rt: Runtime | None = None
) -> T:
    """Await ``aw``, raising :class:`DeadlineExceeded` (a ``RunError``) at ``deadline``."""
    if deadline is None:
        return await aw
    left = deadline - time.time()
    if left <= 0:
        if asyncio.iscoroutine(aw):
            aw.close()
        raise _deadline_error(rt, what)
    try:
        async with asyncio.timeout(left) as scope:
            return await aw
    except TimeoutError:
        if scope.expired():
            raise _deadline_error(rt, what) from None
        raise


def _fallback_worker(rt: Runtime, name: str) -> Worker | None:
    """The worker's configured fallback (another model and/or host), built once."""
    spec_fb = rt.config.reliability.fallbacks.get(name)
    primary = rt.workers.get(name)
    if spec_fb is None or primary is None:
        return None
    cache = _FALLBACK_WORKERS.setdefault(rt, {})
    if name not in cache:
        model = spec_fb.model or primary.spec.model
        backend = make_backend(model, rt.fallback_settings(spec_fb.host), worker=name)
        rt.check_backend(f"fallback of worker {name}", model, backend, primary.spec)
        cache[name] = Worker(
            primary.spec,
            backend,
            primary.store,
            primary.embedder,
            retry=primary.retry,
            max_tokens=primary.max_tokens,
            calibration=rt.cascade_for(primary.spec, model).calibration,
        )
    return cache[name]


def _where(worker: Worker) -> str:
    host = worker.backend.host
    return str(worker.backend.ref) + (f" on {host}" if host else "")


def store_note(error: StoreError) -> str:
    """The one note a run gets for a failing store (identical for every worker)."""
    what = {"locked": "is locked", "corrupt": "is damaged"}.get(error.problem, "failed")
    path = error.message.split(" at ", 1)[1].split(" ", 1)[0] if " at " in error.message else ""
    where = f" ({path})" if path else ""
    fix = f": {error.hint}" if error.hint else ""
    return (
        f"the knowledge store{where} {what}; workers answered without retrieval (ungrounded){fix}"
    )


async def run_worker(
    rt: Runtime,
    worker: Worker,
    subtask: Subtask,
    *,
    query_vector: Sequence[float] | None,
    on_token: TokenCallback | None,
    deadline: float | None,
) -> tuple[WorkerRun, list[str]]:
    """Run one subtask on ``worker``, then on its fallback if it failed, within the deadline.

    Returns:
        The run (result + every call made, both attempts) and notes for the user.
    """
    notes: list[str] = []
    name = subtask.worker
    try:
        run = await within(
            deadline,
            worker.run(subtask, query_vector=query_vector, on_token=on_token),
            f"worker '{name}'",
            rt,
        )
    except DeadlineExceeded as exc:
        failed = worker._failed(subtask, str(exc), "")
        return WorkerRun(result=failed), [f"worker '{name}' was stopped: {exc}"]
    store_error = getattr(run, "store_error", None)
    if isinstance(store_error, StoreError):
        notes.append(store_note(store_error))
    fallback = _fallback_worker(rt, name) if run.result.status == "failed" else None
    if fallback is None:
        return run, notes
    first = run.result.reason
    try:
        second = await within(
            deadline,
            fallback.run(subtask, query_vector=query_vector, on_token=on_token),
            f"the fallback of worker '{name}'",
            rt,
        )
    except DeadlineExceeded as exc:
        notes.append(f"worker '{name}' failed and its fallback was stopped: {exc}")
        return run, notes
    calls = [*run.calls, *second.calls]
    if second.result.status == "ok":
        notes.append(
            f"worker '{name}' failed on {_where(worker)} ({first}); "
            f"its fallback {_where(fallback)} answered"
        )
        used = f"fallback {fallback.backend.ref}"
        reason = "; ".join(r for r in (used, second.result.reason) if r)
        result = second.result.model_copy(update={"reason": reason})
        return WorkerRun(result=result, calls=calls, passages=second.passages), notes
    notes.append(
        f"worker '{name}' failed on {_where(worker)} and on its fallback {_where(fallback)}"
    )
    reason = f"{first}; fallback {_where(fallback)}: {second.result.reason}"
    result = run.result.model_copy(update={"reason": reason})
    return WorkerRun(result=result, calls=calls, passages=run.passages), notes


def _unanswered(results: Sequence[WorkerResult]) -> list[WorkerResult]:
    """Failed results whose subtask no later result (fallback, supervisor) answered."""
    answered = {(r.worker, r.instruction) for r in results if r.status == "ok"}
    seen: set[tuple[str, str]] = set()
    out = []
    for r in results:
        key = (r.worker, r.instruction)
        if r.status == "failed" and key not in answered and key not in seen:
            seen.add(key)
            out.append(r)
    return out


async def escalate_failed(
    rt: Runtime,
    sup: Supervisor,
    results: Sequence[WorkerResult],
    *,
    redact: Callable[[str], str],
    history: str,
    deadline: float | None,
) -> tuple[list[WorkerResult], list[CallRecord], list[str], RunError | None]:
    """Ask the supervisor to answer each subtask no worker could, when allowed.

    Args:
        rt: The runtime.
        sup: The (privacy-guarded) supervisor for this run.
        results: The worker results so far.
        redact: ``redact(text) -> text`` as the privacy guard prepares outgoing text.
        history: The conversation history as the supervisor may see it.
        deadline: The run deadline.

    Returns:
        New results (``model`` = the supervisor's), calls, notes, and the error that stopped
        escalation (the supervisor unreachable), if any.
    """
    if not rt.config.reliability.escalate_failed:
        return [], [], [], None
    added: list[WorkerResult] = []
    calls: list[CallRecord] = []
    notes: list[str] = []
    for failed in _unanswered(results):
        try:
            text, made = await within(
                deadline,
                sup.answer(redact(failed.instruction), history=history),
                "the supervisor's answer",
                rt,
            )
        except RunError as exc:
            calls.append(sup.failed_record(exc, "escalate"))
            notes.append(f"could not escalate '{failed.worker}' to the supervisor: {exc}")
            return added, calls, notes, exc
        calls.extend(c.model_copy(update={"purpose": "escalate"}) for c in made)
        added.append(
            WorkerResult(
                worker=failed.worker,
                instruction=failed.instruction,
                status="ok",
                answer=text,
                confidence=0.5,
                reason=f"answered by the supervisor: the worker failed ({failed.reason})",
                grounded=False,
                model=sup.model,
            )
        )
        notes.append(f"'{failed.worker}' failed; the supervisor answered that part instead")
    return added, calls, notes, None


def missing_parts(results: Sequence[WorkerResult]) -> list[str]:
    """The parts of the question no worker (nor the supervisor standing in) answered."""
    return [f"{r.instruction.strip()} ({r.worker})" for r in _unanswered(results)]


def local_synthesis(results: Sequence[WorkerResult]) -> str:
    """An answer built on this machine from the worker results, naming what is missing.

    A missing part is named by its question and specialist, never by the error text (that
    goes to the run's notes): errors are not answers.
    """
    parts = [f"{r.answer} [{r.worker}]" for r in results if r.status == "ok" and r.answer]
    missing = [f"'{r.instruction.strip()}' ({r.worker} failed)" for r in _unanswered(results)]
    text = " ".join(parts)
    if missing:
        gap = "Not answered: " + "; ".join(missing) + "."
        text = f"{text}\n\n{gap}" if text else f"No specialist could answer this question. {gap}"
    return text or "No specialist could answer this question."


def trim_thread(
    messages: Sequence[AnyMessage], limit: int, adding: int = 2
) -> tuple[list[RemoveMessage], str]:
    """Messages to drop so the thread keeps at most ``limit`` after ``adding`` more."""
    excess = len(messages) + adding - limit
    if excess <= 0:
        return [], ""
    drop = [RemoveMessage(id=str(m.id)) for m in list(messages)[:excess] if m.id]
    note = f"the conversation is long: dropped its {len(drop)} oldest messages (limit {limit})"
    return drop, note
