"""Why a second-pass question of the repeat workload still reached the large model.

For each paraphrase that made a supervisor request, one cause, checked in this order:

* no learned passage came out of the first ask, because ``pass 1 stayed local`` (no
  escalation to learn from), ``pass 1 supervisor alone, no specialist found`` (the router
  found none, and none with the answer either: nothing recorded) or ``pass 1 not kept``
  (recorded, but the answer failed the keep checks);
* ``routed to the supervisor`` / ``planned`` / ``routed to another specialist``: the
  paraphrase did not reach the specialist holding the learned passage;
* ``memory not retrieved``: it did, but the learned passage was not among what the
  specialist saw;
* ``memory retrieved, escalated``: the specialist saw the passage and still escalated;
* ``other``: answered locally yet some other step called the large model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

CAUSES = (
    "pass 1 stayed local",
    "pass 1 supervisor alone, no specialist found",
    "pass 1 not kept",
    "routed to the supervisor",
    "planned",
    "routed to another specialist",
    "memory not retrieved",
    "memory retrieved, escalated",
    "other",
)


def kept_sources(state: dict[str, Any], store: Any) -> dict[str, str]:
    """The learned passages kept by a run: ``{"learned:<id>": worker}``; with nothing kept,
    ``{"": how the run ended}`` (a cause above)."""
    answer = state["answer"]
    out: dict[str, str] = {}
    for rid in answer.learning.kept:
        record = store.get(rid)
        if record is not None:
            out[f"learned:{rid}"] = record.worker
    if out:
        return out
    if not answer.ledger.totals.supervisor_calls:
        return {"": "pass 1 stayed local"}
    if answer.route.kind == "supervisor" and not answer.learning.records:
        return {"": "pass 1 supervisor alone, no specialist found"}
    return {"": "pass 1 not kept"}


def cause(state: dict[str, Any], first: dict[str, str]) -> str:
    """Why a run that made supervisor requests did (``first``: :func:`kept_sources` of the
    first ask; see the module doc)."""
    answer = state["answer"]
    kept = {k: v for k, v in first.items() if k}
    if not kept:
        return first.get("", "pass 1 not kept")
    route = answer.route
    if route.kind == "supervisor":
        return "routed to the supervisor"
    if route.kind == "plan":
        return "planned"
    if not set(route.workers) & set(kept.values()):
        return "routed to another specialist"
    seen = {p.source for s in state.get("seen") or [] for p in s.passages}
    if not seen & set(kept):
        return "memory not retrieved"
    if answer.escalated:
        return "memory retrieved, escalated"
    return "other"


def summary(causes: Iterable[str]) -> str:
    """``"3 routed to another specialist, 1 memory not retrieved"`` (``"none"``)."""
    counts = Counter(causes)
    parts = [f"{counts[c]} {c}" for c in CAUSES if counts[c]]
    return ", ".join(parts) or "none"
