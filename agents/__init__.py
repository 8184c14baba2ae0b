"""tandem.agents — the large-model side: router, supervisor and its model clients, privacy, cost.

The command line, the REPL and their renderers live in :mod:`tandem.agents.shell`, the top
layer: it is not imported here (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Re-exports load on first use (PEP 562): importing one light module of the package
# (its errors, a setting) must not pay for every heavy one (chromadb, langgraph, …).
_LAZY = {
    "BackendLLM": "tandem.agents.llm",
    "LangChainLLM": "tandem.agents.llm",
    "LiteLLM": "tandem.agents.llm",
    "LLMReply": "tandem.agents.llm",
    "SupervisorLLM": "tandem.agents.llm",
    "Detector": "tandem.agents.privacy",
    "EgressRecord": "tandem.agents.privacy",
    "EgressRequest": "tandem.agents.privacy",
    "Finding": "tandem.agents.privacy",
    "GuardReport": "tandem.agents.privacy",
    "Redactor": "tandem.agents.privacy",
    "find_sensitive": "tandem.agents.privacy",
    "neutralize_links": "tandem.agents.privacy",
    "read_egress_log": "tandem.agents.privacy",
    "restore": "tandem.agents.privacy",
    "RouteDecision": "tandem.agents.router",
    "Router": "tandem.agents.router",
    "RouterSettings": "tandem.agents.router",
    "Plan": "tandem.agents.supervisor",
    "PlanStep": "tandem.agents.supervisor",
    "Supervisor": "tandem.agents.supervisor",
}

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


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
