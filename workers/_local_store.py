"""A local Chroma store that cannot hang a run: lazy open, bounded calls, clear errors.

Chroma's ``PersistentClient`` takes SQLite locks: while another process holds
the store directory (a long ``tandem ingest``, a second tandem), opening or
querying blocks until it lets go, and a damaged directory fails with SQLite's
own words. Here every store call runs in a daemon thread with a deadline, the
client is opened on first use (inside that bounded call, so building a runtime
never blocks), and failures become a :class:`StoreError` that says whether the
store is *locked* or *corrupt* and what to do about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import chromadb
from chromadb.api import ClientAPI
from chromadb.config import Settings

from tandem.workers.errors import StoreError

__all__ = ["DEFAULT_STORE_TIMEOUT", "LazyPersistentClient", "bounded_call", "store_error"]

DEFAULT_STORE_TIMEOUT = 20.0
"""Seconds one store operation may take before the store counts as locked."""

T = TypeVar("T")

_CORRUPT = ("file is not a database", "malformed", "no such table", "corrupt", "disk image")
_LOCKED = ("database is locked", "locked", "busy")


class LazyPersistentClient:
    """A ``chromadb.PersistentClient`` for ``path``, opened on first attribute access."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()

    def _open(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                _probe(Path(self.path) / "chroma.sqlite3")
                self._client = chromadb.PersistentClient(
                    path=self.path, settings=Settings(anonymized_telemetry=False)
                )
            return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._open(), name)


def _probe(db: Path, seconds: float = 5.0) -> None:
    """Fail fast if another process holds the store's SQLite write lock, or it is damaged.

    Chroma's own open waits on that lock without releasing Python's GIL, freezing the
    whole process; Python's ``sqlite3`` waits politely and then says "database is locked".
    """
    if not db.exists():
        return
    con = sqlite3.connect(db, timeout=seconds)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    finally:
        con.close()


def store_error(
    what: str, exc: BaseException, *, path: str, worker: str | None, model: str | None
) -> StoreError:
    """Translate a local Chroma/SQLite failure, naming the directory and the fix."""
    text = str(exc).strip() or type(exc).__name__
    low = text.lower()
    common: dict[str, Any] = {"worker": worker, "model": model}
    if isinstance(exc, TimeoutError) or any(k in low for k in _LOCKED):
        return StoreError(
            f"the knowledge store at {path} is locked ({what}: {text})",
            hint="another process is using it (a running `tandem ingest` or a second tandem): "
            "wait for it or stop it; to share stores between processes run a Chroma server "
            "and set [stores] url",
            problem="locked",
            retryable=True,
            **common,
        )
    if any(k in low for k in _CORRUPT):
        return StoreError(
            f"the knowledge store at {path} is damaged ({what}: {text})",
            hint=f"delete {path} and run `tandem ingest` to rebuild it",
            problem="corrupt",
            **common,
        )
    return StoreError(
        f"{what}: {text}",
        hint="if the embedding model changed, delete the store directory and re-ingest",
        **common,
    )


async def bounded_call(fn: Callable[[], T], seconds: float) -> T:
    """Run blocking ``fn`` in a daemon thread; raise ``TimeoutError`` after ``seconds``.

    A daemon thread (not the loop's executor) so a call stuck on a lock neither blocks
    the event loop's shutdown nor the process's exit.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    def target() -> None:
        try:
            value: Any = fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            error: BaseException | None = exc
            value = None
        else:
            error = None
        with contextlib.suppress(RuntimeError):  # the loop is gone; nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="tandem-store", daemon=True).start()
    async with asyncio.timeout(seconds):
        return await fut
