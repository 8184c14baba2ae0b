"""tandem.graphs — the LangGraph state machine wiring supervisor and workers, its runtime,
the session API (:class:`Session`) and evaluation."""

from __future__ import annotations

import os

# Checkpoints only deserialize types the graph's state declares (LangGraph's
# strict msgpack mode, a published CVE's fix); must be set before LangGraph loads.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

from tandem.graphs.checkpoint import open_checkpointer, open_checkpointer_sync
from tandem.graphs.config import PrivacySettings, SupervisorSettings, TandemConfig, load_config
from tandem.graphs.evaluate import EvalCase, EvalReport, EvalRow, evaluate, load_dataset
from tandem.graphs.hybrid import TandemGraph, build_graph
from tandem.graphs.ledger import Ledger, LedgerTotals, SessionLedger, build_ledger
from tandem.graphs.runtime import Runtime
from tandem.graphs.session import Session
from tandem.graphs.state import Answer, TandemState

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
