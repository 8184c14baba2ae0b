"""tandem.agents — the large-model side: supervisor, router, privacy guard, CLI and REPL."""

from __future__ import annotations

from tandem.agents._egress import EgressRecord, read_egress_log
from tandem.agents._hygiene import neutralize_links
from tandem.agents._llm import BackendLLM, LangChainLLM, LiteLLM, LLMReply, SupervisorLLM
from tandem.agents.privacy import (
    Detector,
    EgressRequest,
    Finding,
    GuardReport,
    Redactor,
    find_sensitive,
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
