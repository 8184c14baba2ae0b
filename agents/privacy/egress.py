"""The egress audit: one JSONL record per remote model call, in the data dir.

Each record says when, to which model and host, how many bytes, which entity
types were redacted (by placeholder count) and the SHA-256 of the exact JSON
payload. The payload itself is stored only when ``[privacy] audit_payloads``
is true (it is already redacted, but it is still the user's text).

The log is written ahead: a line with ``outcome = "sending"`` is appended (and synced to
disk) *before* a request leaves, and a second line with the same ``id`` completes it
with the outcome once the call ends. A process killed mid-request leaves the first line:
:func:`read_egress_log` reports it as sent (``sending``), never as nothing. A call that
failed before anything left the machine (no API key, connection refused) is completed
with ``outcome = "not sent: …"`` and ``bytes_sent = 0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

__all__ = [
    "EgressRecord",
    "EgressSummary",
    "append_egress",
    "egress_log_path",
    "payload_digest",
    "read_egress_log",
    "summarize_egress",
]

_LOCK = threading.Lock()


class EgressRecord(BaseModel):
    """One remote model call, as the audit log keeps it."""

    id: str = ""
    """Joins the line written before sending to the one completing it."""
    time: str
    """When the call was made (ISO 8601, UTC)."""
    model: str
    """The remote model."""
    host: str | None = None
    """Its endpoint (``None``: the provider's default)."""
    purpose: str = ""
    """``plan``, ``synthesize`` or ``answer``."""
    bytes_sent: int = 0
    """Size of the JSON payload (the chat messages)."""
    redacted: dict[str, int] = Field(default_factory=dict)
    """Placeholders in the payload, by entity type."""
    sha256: str = ""
    """SHA-256 of the payload, to match a provider-side log without keeping the text."""
    policy: str = ""
    """The privacy policy in force."""
    approved: Literal["policy", "user"] = "policy"
    """Who allowed the call: the policy, or the user answering an ``ask`` prompt."""
    outcome: str = "ok"
    """``sending`` (written before the request left; still so if the process died),
    ``ok``, ``error: …`` (sent, then failed) or ``not sent: …`` (failed before leaving)."""
    thread_id: str | None = None
    """The conversation thread, when the run had one."""
    payload: list[dict[str, Any]] | None = None
    """The messages sent; only with ``[privacy] audit_payloads = true``."""

    @property
    def sent(self) -> bool:
        """Whether the request left (or may have left) this machine."""
        return not self.outcome.startswith("not sent")


class EgressSummary(BaseModel):
    """Totals over egress records (a run's, a thread's or the whole log)."""

    requests: int = 0
    """Remote requests that left (or may have left) the machine."""
    not_sent: int = 0
    """Remote calls that failed before anything was sent."""
    bytes_sent: int = 0
    """Bytes sent to remote models."""
    redacted: dict[str, int] = Field(default_factory=dict)
    """Placeholders sent instead of sensitive values, by entity type."""
    by_model: dict[str, int] = Field(default_factory=dict)
    """Remote calls by model."""
    user_approved: int = 0
    """Calls a user approved at an ``ask`` prompt."""


def egress_log_path(data_dir: Path) -> Path:
    """Where the egress log lives for a data dir."""
    return Path(data_dir) / "egress.jsonl"


def payload_digest(messages: Sequence[Any]) -> tuple[bytes, str]:
    """The payload as UTF-8 JSON and its SHA-256 hex digest."""
    data = json.dumps(list(messages), ensure_ascii=False).encode()
    return data, hashlib.sha256(data).hexdigest()


def append_egress(path: Path, record: EgressRecord, *, sync: bool = False) -> None:
    """Append one record (one line, flushed; ``sync``: on disk) to the log at ``path``."""
    line = record.model_dump_json(exclude_none=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def read_egress_log(path: Path) -> tuple[list[EgressRecord], int]:
    """Records in the log at ``path`` and the number of unreadable lines (skipped)."""
    if not path.exists():
        return [], 0
    records: list[EgressRecord] = []
    by_id: dict[str, int] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = EgressRecord.model_validate_json(line)
        except ValidationError:
            bad += 1
            continue
        if record.id and record.id in by_id:  # the completion of a request written ahead
            records[by_id[record.id]] = record
            continue
        if record.id:
            by_id[record.id] = len(records)
        records.append(record)
    return records, bad


def summarize_egress(records: Iterable[EgressRecord]) -> EgressSummary:
    """Totals over ``records``."""
    s = EgressSummary()
    for r in records:
        if not r.sent:
            s.not_sent += 1
            continue
        s.requests += 1
        s.bytes_sent += r.bytes_sent
        s.user_approved += r.approved == "user"
        s.by_model[r.model] = s.by_model.get(r.model, 0) + 1
        for kind, n in r.redacted.items():
            s.redacted[kind] = s.redacted.get(kind, 0) + n
    return s


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
