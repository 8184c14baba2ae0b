"""Plans the router already knows, and how a planned answer is put together.

When the router split a question into parts and matched every part to a specialist with
confidence (:attr:`~tandem.agents.router.RouteDecision.parts` with
:attr:`~tandem.agents.router.RouteDecision.split` set), the plan is built from
those parts directly — one subtask per part, the part's own words as the instruction —
and the supervisor's planning call is skipped. So it is when the router chose a specialist
by the whole question's probability but matched no clause to it and gave it its best
clause or the whole question (:attr:`~tandem.agents.router.RouteDecision.filled`). The
supervisor still plans when the decomposition is unclear — no clause of the question is
about any specialist (the router gave no parts), a part without a specialist, a chosen
specialist without a part, an escalated direct answer, ``mode = "supervisor"`` — and it
always synthesizes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tandem.agents.router import RouteDecision
from tandem.agents.supervisor import Plan, PlanStep

__all__ = ["PlannerSettings", "router_plan", "synthesis_style"]


class PlannerSettings(BaseModel):
    """Who plans and how the answer is synthesized (``[planner]`` in tandem.toml)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "supervisor"] = "auto"
    """``auto``: build the plan from the router's parts when it split the question with
    confidence (no planning call); ``supervisor``: the supervisor always plans."""
    min_part_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    """A bar on top of the router's own: every part needs at least this probability for a
    router-built plan (0: the router's split is trusted as it is)."""
    synthesis: Literal["auto", "structured", "prose"] = "auto"
    """``structured``: one paragraph per part (the specialists' own answers) and a short
    joint conclusion from the supervisor; ``prose``: the supervisor writes the whole answer;
    ``auto``: structured for the embedded CPU engine (a small supervisor; every token costs
    seconds), prose for any other."""
    repair: Literal["auto", "append", "reask"] = "auto"
    """When the synthesis leaves out a part: ``append`` adds that part's answer (no model
    call), ``reask`` asks the supervisor once more and appends if still missing; ``auto``:
    ``reask`` for a remote supervisor, ``append`` for a local one."""
    conclusion_tokens: int = Field(default=96, ge=16, le=1024)
    """Cap on the joint conclusion of a structured synthesis."""


def router_plan(
    route: RouteDecision,
    workers: Collection[str],
    settings: PlannerSettings,
    max_subtasks: int,
) -> Plan | None:
    """The plan the router's parts already give, or ``None`` when the supervisor must plan.

    Args:
        route: The router's decision.
        workers: The workers that may take a part (the route's, minus any without
            knowledge).
        settings: The ``[planner]`` settings.
        max_subtasks: Upper bound on subtasks (a longer split is left to the supervisor).
    """
    if settings.mode != "auto" or route.kind != "plan" or not route.parts:
        return None
    if not (route.split or route.filled):
        return None
    parts = route.parts
    if len(parts) > max_subtasks or any(
        not p.text.strip()
        or p.worker is None
        or p.worker not in workers
        or p.probability < settings.min_part_probability
        for p in parts
    ):
        return None
    if {p.worker for p in parts} < set(route.workers):
        return None  # a chosen specialist has no part of its own: the split is incomplete
    steps = [PlanStep(worker=str(p.worker), instruction=p.text.strip()) for p in parts]
    return Plan(
        subtasks=steps,
        rationale="built by the router from the question's parts: "
        + "; ".join(
            f"{s.worker}{p.how} ← {s.instruction!r}" for s, p in zip(steps, parts, strict=True)
        ),
        source="router",
    )


def synthesis_style(settings: PlannerSettings, model: str) -> Literal["structured", "prose"]:
    """The synthesis style for the supervisor ``model``: ``auto`` is structured for the
    in-process CPU engine (``embedded:…``, a small model where every token costs seconds)."""
    if settings.synthesis != "auto":
        return settings.synthesis
    return "structured" if model.startswith("embedded:") else "prose"
