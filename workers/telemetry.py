"""Where finished model calls are reported as they happen (tracing hooks in here).

Every :class:`~tandem.workers.records.CallRecord` a run makes passes through
:func:`call_finished` right after the call returned or failed, inside the graph node that
made it. Nothing observes by default (one empty-list check per call); the graph layer's
tracing (:mod:`tandem.graphs.tracing`) adds an observer that turns each call into a span.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tandem.workers.records import CallRecord

if TYPE_CHECKING:
    from tandem.workers.backends import Backend, ChatResult

__all__ = [
    "CallObserver",
    "add_call_observer",
    "call_finished",
    "chat_finished",
    "remove_call_observer",
]

CallObserver = Callable[[CallRecord], None]
"""Called with each finished call, in the task (and context) that made it."""

_OBSERVERS: list[CallObserver] = []


def add_call_observer(observer: CallObserver) -> None:
    """Report every finished model call to ``observer`` (once, however often it is added)."""
    if observer not in _OBSERVERS:
        _OBSERVERS.append(observer)


def remove_call_observer(observer: CallObserver) -> None:
    """Stop reporting to ``observer`` (no error if it was not added)."""
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


def call_finished(call: CallRecord) -> CallRecord:
    """Report ``call`` to the observers; returns it (``return call_finished(CallRecord(…))``).

    An observer that raises is a bug in it, never a reason to fail the run: it is skipped.
    """
    for observer in list(_OBSERVERS):
        try:
            observer(call)
        except Exception:  # telemetry must never break a run
            continue
    return call


def chat_finished(
    backend: Backend, res: ChatResult | None, seconds: float, **fields: Any
) -> CallRecord:
    """The ledger row of a chat call on a worker-side model (a specialist's answer or
    repair, the router's second stage), reported like :func:`call_finished`; ``host`` is
    who answered. ``res`` is ``None`` when the call failed; ``fields`` are the rest of the
    row (``purpose``, ``worker``, ``error``, …)."""
    return call_finished(
        CallRecord(
            role="worker",
            model=backend.ref,
            where=backend.where,
            tokens_in=res.tokens_in if res else 0,
            tokens_out=res.tokens_out if res else 0,
            seconds=seconds,
            host=res.host if res and res.host else backend.host,
            **fields,
        )
    )
