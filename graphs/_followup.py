"""Follow-up questions: "and what about pets?" only makes sense after the previous turn.

When a question on its own matches no specialist but the thread has an earlier question,
the router tries again on both together (condensed); if that finds a specialist, the
question is routed there and the worker sees the earlier question as context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

from tandem.agents.router import RouteDecision, Router
from tandem.workers.errors import RunError
from tandem.workers.records import CallRecord

__all__ = ["FOLLOW_UP", "context_query", "previous_question", "route_follow_up"]

FOLLOW_UP = "follow-up: "
"""Prefix of the route reason when the previous question decided the route."""
MAX_CONTEXT_CHARS = 300


def previous_question(messages: Sequence[AnyMessage]) -> str:
    """The thread's last user question, whitespace-condensed and cut to a few hundred chars."""
    for message in reversed(list(messages)):
        if isinstance(message, HumanMessage):
            text = " ".join(str(message.content).split())
            return text[:MAX_CONTEXT_CHARS]
    return ""


async def route_follow_up(
    router: Router,
    query: str,
    messages: Sequence[AnyMessage],
    decision: RouteDecision,
    vector: list[float],
    calls: list[CallRecord],
) -> tuple[RouteDecision, list[float]]:
    """Re-route an unmatched question together with the previous one (see module doc)."""
    previous = previous_question(messages)
    if decision.kind != "supervisor" or not previous:
        return decision, vector
    try:
        again, again_vector = await router.decide(f"{previous}\n{query}", calls)
    except RunError:
        return decision, vector
    if again.kind == "supervisor":
        return decision, vector
    reason = f"{FOLLOW_UP}{again.reason} (read with the previous question)"
    return again.model_copy(update={"reason": reason}), again_vector


def context_query(state: Mapping[str, Any]) -> str:
    """The question a worker should read: with the previous one when it decided the route."""
    query = str(state["query"])
    route = state.get("route")
    if route is not None and route.reason.startswith(FOLLOW_UP):
        previous = previous_question(state.get("messages") or [])
        if previous:
            return f"{previous}\n{query}"
    return query
