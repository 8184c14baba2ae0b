"""tandem.workers — the small-model side: specialists, their stores and engines."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.workers.errors import (
        BackendBusy,
        BackendRejected,
        BackendTimeout,
        BackendUnavailable,
        BadModelOutput,
        BudgetExceeded,
        ConfigError,
        ModelAssetError,
        ModelNotFound,
        PluginError,
        RunError,
        StoreError,
        TandemError,
        UsageError,
    )
    from tandem.workers.plugins import PluginReport, PluginSettings, discover, register
    from tandem.workers.records import CallRecord, Citation, Subtask, WorkerReply, WorkerResult
    from tandem.workers.retry import RetryPolicy
    from tandem.workers.spec import WorkerSpec, parse_model_ref
    from tandem.workers.store import IngestReport, WorkerStore
    from tandem.workers.worker import Worker, WorkerRun

# Re-exports load on first use (PEP 562): importing one light module of the package
# (its errors, a setting) must not pay for every heavy one (chromadb, langgraph, …).
_LAZY = {
    "BackendBusy": "tandem.workers.errors",
    "BackendRejected": "tandem.workers.errors",
    "BackendTimeout": "tandem.workers.errors",
    "BackendUnavailable": "tandem.workers.errors",
    "BadModelOutput": "tandem.workers.errors",
    "BudgetExceeded": "tandem.workers.errors",
    "ConfigError": "tandem.workers.errors",
    "ModelAssetError": "tandem.workers.errors",
    "ModelNotFound": "tandem.workers.errors",
    "PluginError": "tandem.workers.errors",
    "RunError": "tandem.workers.errors",
    "StoreError": "tandem.workers.errors",
    "TandemError": "tandem.workers.errors",
    "UsageError": "tandem.workers.errors",
    "PluginReport": "tandem.workers.plugins",
    "PluginSettings": "tandem.workers.plugins",
    "discover": "tandem.workers.plugins",
    "register": "tandem.workers.plugins",
    "CallRecord": "tandem.workers.records",
    "Citation": "tandem.workers.records",
    "Subtask": "tandem.workers.records",
    "WorkerReply": "tandem.workers.records",
    "WorkerResult": "tandem.workers.records",
    "RetryPolicy": "tandem.workers.retry",
    "WorkerSpec": "tandem.workers.spec",
    "parse_model_ref": "tandem.workers.spec",
    "IngestReport": "tandem.workers.store",
    "WorkerStore": "tandem.workers.store",
    "Worker": "tandem.workers.worker",
    "WorkerRun": "tandem.workers.worker",
}

__all__ = [
    "BackendBusy",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "BadModelOutput",
    "BudgetExceeded",
    "CallRecord",
    "Citation",
    "ConfigError",
    "IngestReport",
    "ModelAssetError",
    "ModelNotFound",
    "PluginError",
    "PluginReport",
    "PluginSettings",
    "RetryPolicy",
    "RunError",
    "StoreError",
    "Subtask",
    "TandemError",
    "UsageError",
    "Worker",
    "WorkerReply",
    "WorkerResult",
    "WorkerRun",
    "WorkerSpec",
    "WorkerStore",
    "discover",
    "parse_model_ref",
    "register",
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
