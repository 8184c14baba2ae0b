"""The egress log for model calls the graph does not make itself: remote worker and
embedding endpoints.

The supervisor's requests are logged by :class:`~tandem.agents.privacy.GuardedLLM`. A
worker or embedding model that is remote (allowed only under ``[privacy] policy =
"allow"``: an Ollama host that is not this machine nor trusted, or an Ollama cloud model)
receives the query and retrieved passages through its backend; the runtime hands such a
backend an :func:`egress_hook`, so each of its requests is written to ``egress.jsonl``
before it leaves (synced, ``sending``) and completed with its outcome — the same records,
in the same log, as the supervisor's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tandem.agents.privacy import EgressAudit, egress_log_path

__all__ = ["egress_hook", "install_egress_hook", "thread_id"]

Done = Callable[[str, bool], None]


def thread_id() -> str | None:
    """The thread of the run being executed (``None`` outside a run or without one)."""
    try:
        from langgraph.config import get_config

        thread: str | None = get_config().get("configurable", {}).get("thread_id")
    except Exception:  # outside a run (a warm-up, `tandem ingest`)
        return None
    return thread


def egress_hook(
    data_dir: Path, policy: str, worker: str | None
) -> Callable[[str, str | None, str, bytes], Done]:
    """``hook(model, host, purpose, payload)`` → ``done(outcome, sent)`` for one endpoint."""
    path = egress_log_path(data_dir)

    def begin(model: str, host: str | None, purpose: str, payload: bytes) -> Done:
        audit = EgressAudit(path, policy=policy, thread_id=thread_id(), keep_payloads=False)
        record = audit.begin(
            model=model,
            host=host,
            purpose=f"{purpose} ({worker})" if worker else purpose,
            messages=[],
            data=payload,
            digest=hashlib.sha256(payload).hexdigest(),
            approved="policy",
        )

        def done(outcome: str, sent: bool) -> None:
            audit.complete(record, outcome, sent=sent)

        return done

    return begin


def install_egress_hook(backend: Any, hook: Callable[[str, str | None, str, bytes], Done]) -> None:
    """Give ``backend`` (and each host of a pool) the hook, where the engine supports one."""
    for target in [backend, *getattr(backend, "backends", {}).values()]:
        if hasattr(target, "egress"):
            target.egress = hook
