"""tandem.agents — the large-model side: router, supervisor and its model clients, privacy, cost.

The command line, the REPL and their renderers live in :mod:`tandem.agents.shell`, the top
layer: it is not imported here (see docs/architecture.md).
"""

from __future__ import annotations

from tandem.agents.llm import BackendLLM, LangChainLLM, LiteLLM, LLMReply, SupervisorLLM
from tandem.agents.privacy import (
    Detector,
    EgressRecord,
    EgressRequest,
    Finding,
    GuardReport,
    Redactor,
    find_sensitive,
    neutralize_links,
    read_egress_log,
    restore,
)
from tandem.agents.router import RouteDecision, Router, RouterSettings
from tandem.agents.supervisor import Plan, PlanStep, Supervisor

__all__ = [
    "BackendLLM",
    "Detector",
    "EgressRecord",
    "EgressRequest",
    "Finding",
    "GuardReport",
    "LLMReply",
    "LangChainLLM",
    "LiteLLM",
    "Plan",
    "PlanStep",
    "Redactor",
    "RouteDecision",
    "Router",
    "RouterSettings",
    "Supervisor",
    "SupervisorLLM",
    "find_sensitive",
    "neutralize_links",
    "read_egress_log",
    "restore",
]
