"""tandem.workers — the small-model side: specialists, their stores and engines."""

from __future__ import annotations

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
