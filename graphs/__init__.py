"""tandem.graphs — the LangGraph state machine wiring supervisor and workers, its runtime,
the session API (:class:`Session`) and evaluation."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# Checkpoints only deserialize types the graph's state declares (LangGraph's
# strict msgpack mode, a published CVE's fix); must be set before LangGraph loads.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

if TYPE_CHECKING:
    from tandem.graphs.checkpoint import open_checkpointer, open_checkpointer_sync
    from tandem.graphs.config import PrivacySettings, SupervisorSettings, TandemConfig, load_config
    from tandem.graphs.evaluate import EvalCase, EvalReport, EvalRow, evaluate, load_dataset
    from tandem.graphs.hybrid import TandemGraph, build_graph
    from tandem.graphs.ledger import Ledger, LedgerTotals, SessionLedger, build_ledger
    from tandem.graphs.runtime import Runtime
    from tandem.graphs.session import Session
    from tandem.graphs.state import Answer, TandemState

# Re-exports load on first use (PEP 562): importing one light module of the package
# (its errors, a setting) must not pay for every heavy one (chromadb, langgraph, …).
_LAZY = {
    "open_checkpointer": "tandem.graphs.checkpoint",
    "open_checkpointer_sync": "tandem.graphs.checkpoint",
    "PrivacySettings": "tandem.graphs.config",
    "SupervisorSettings": "tandem.graphs.config",
    "TandemConfig": "tandem.graphs.config",
    "load_config": "tandem.graphs.config",
    "EvalCase": "tandem.graphs.evaluate",
    "EvalReport": "tandem.graphs.evaluate",
    "EvalRow": "tandem.graphs.evaluate",
    "evaluate": "tandem.graphs.evaluate",
    "load_dataset": "tandem.graphs.evaluate",
    "TandemGraph": "tandem.graphs.hybrid",
    "build_graph": "tandem.graphs.hybrid",
    "Ledger": "tandem.graphs.ledger",
    "LedgerTotals": "tandem.graphs.ledger",
    "SessionLedger": "tandem.graphs.ledger",
    "build_ledger": "tandem.graphs.ledger",
    "Runtime": "tandem.graphs.runtime",
    "Session": "tandem.graphs.session",
    "Answer": "tandem.graphs.state",
    "TandemState": "tandem.graphs.state",
}

__all__ = [
    "Answer",
    "EvalCase",
    "EvalReport",
    "EvalRow",
    "Ledger",
    "LedgerTotals",
    "PrivacySettings",
    "Runtime",
    "Session",
    "SessionLedger",
    "SupervisorSettings",
    "TandemConfig",
    "TandemGraph",
    "TandemState",
    "build_graph",
    "build_ledger",
    "evaluate",
    "load_config",
    "load_dataset",
    "open_checkpointer",
    "open_checkpointer_sync",
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
