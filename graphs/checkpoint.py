"""Checkpointers for conversations: where threads persist between runs and restarts.

``TandemConfig.checkpointer`` picks the store:

* ``"sqlite"`` (default) — ``<data_dir>/threads.sqlite``;
* ``"sqlite:///abs/path.sqlite"`` — an explicit SQLite file;
* ``"memory"`` — in-process only (lost on exit; tests, notebooks).

Open one with :func:`open_checkpointer` (async code: ``ainvoke``/``astream``) or
:func:`open_checkpointer_sync` (``invoke``/``stream``) and pass it to
:func:`~tandem.graphs.build_graph`. A graph built with a checkpointer runs with
``durability=DURABILITY`` unless a run passes another: each step is on disk before the
next one starts (resume after a crash or restart).
"""

from __future__ import annotations

import copy
import sqlite3
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from tandem.graphs._postgres import SCHEMES as POSTGRES_SCHEMES
from tandem.graphs._postgres import open_postgres, open_postgres_sync
from tandem.graphs.config import TandemConfig
from tandem.workers.errors import ConfigError

__all__ = [
    "DURABILITY",
    "list_threads",
    "open_checkpointer",
    "open_checkpointer_sync",
    "sqlite_path",
    "state_types",
    "strict_checkpointer",
]

DURABILITY: Literal["sync"] = "sync"
"""Pass as ``durability=`` to ``invoke``/``astream``: each step is written before the next."""

_SCHEMES = '"sqlite", "sqlite:///abs/path.sqlite", "memory" or "postgresql://user@host/db"'

AsyncOpener = Callable[[TandemConfig, str], AbstractAsyncContextManager[BaseCheckpointSaver[Any]]]
SyncOpener = Callable[[TandemConfig, str], AbstractContextManager[BaseCheckpointSaver[Any]]]

ASYNC_OPENERS: dict[str, AsyncOpener] = dict.fromkeys(POSTGRES_SCHEMES, open_postgres)
"""Extra schemes (``"postgresql"`` …) → async opener; extensions register here."""
SYNC_OPENERS: dict[str, SyncOpener] = dict.fromkeys(POSTGRES_SCHEMES, open_postgres_sync)
"""Extra schemes → sync opener."""


def state_types(*schemas: Any) -> set[tuple[str, str]]:
    """``(module, name)`` of every pydantic model the ``schemas`` (TypedDicts, models) hold,
    however nested (lists, unions, ``Annotated``, model fields)."""
    found: set[tuple[str, str]] = set()
    seen: set[int] = set()

    def visit(tp: Any) -> None:
        if id(tp) in seen:
            return
        seen.add(id(tp))
        for arg in typing.get_args(tp):
            visit(arg)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found.add((tp.__module__, tp.__name__))
            for field in tp.model_fields.values():
                visit(field.annotation)
        elif typing.is_typeddict(tp):
            for hint in typing.get_type_hints(tp, include_extras=True).values():
                visit(hint)

    for schema in schemas:
        visit(schema)
    return found


def strict_checkpointer(
    saver: BaseCheckpointSaver[Any], allowed: set[tuple[str, str]]
) -> BaseCheckpointSaver[Any]:
    """``saver`` deserializing only ``allowed`` types (and LangGraph's safe ones).

    A checkpointer created before ``tandem.graphs`` was imported (``from
    langgraph.checkpoint.memory import InMemorySaver`` first, a common order) gets
    LangGraph's permissive serializer: it ignores a graph's types and logs "Deserializing
    unregistered type …" for every tandem record on each turn. Such a serializer is
    replaced — on a shallow copy: the caller's object is unchanged and the storage shared —
    by a strict one that knows the graph's types. Any other serializer is left as it is.
    """
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = getattr(saver, "serde", None)
    if type(serde) is not JsonPlusSerializer or serde._allowed_msgpack_modules is not True:
        return saver
    clone = copy.copy(saver)
    clone.serde = JsonPlusSerializer(
        pickle_fallback=serde.pickle_fallback, allowed_msgpack_modules=sorted(allowed)
    )
    return clone


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else url.lower()


def sqlite_path(config: TandemConfig) -> Path | None:
    """The SQLite file threads go to, or ``None`` when the checkpointer is not SQLite.

    Raises:
        ConfigError: A ``sqlite://`` URL without an absolute path.
    """
    url = config.checkpointer.strip()
    if url.lower() == "sqlite":
        return config.data_dir / "threads.sqlite"
    if _scheme(url) != "sqlite":
        return None
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(
            f"checkpointer '{url}' needs an absolute path",
            file=config.source,
            hint="write sqlite:///abs/path/threads.sqlite (three slashes, then the path)",
        )
    return Path(rest[1:] if rest.startswith("//") else rest).expanduser()


def _unsupported(config: TandemConfig) -> ConfigError:
    error = ConfigError(
        f"unsupported checkpointer '{config.checkpointer}'",
        file=config.source,
        hint=f"use {_SCHEMES}",
    )
    error.key = "checkpointer"
    return error


def _prepare(path: Path, config: TandemConfig) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory for {path} ({exc})",
            file=config.source,
            hint="set data_dir (or TANDEM_HOME) to a writable directory",
        ) from None


@asynccontextmanager
async def open_checkpointer(config: TandemConfig) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Open the configured checkpointer for async runs; closed on exit.

    Raises:
        ConfigError: Unsupported scheme or an unusable path.
    """
    url = config.checkpointer.strip()
    if url.lower() == "memory":
        yield InMemorySaver()
        return
    path = sqlite_path(config)
    if path is not None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        _prepare(path, config)
        try:
            async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
                await saver.setup()
                yield saver
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot use the thread store {path} ({exc})",
                file=config.source,
                hint="move the file aside (threads are lost) or set checkpointer to another path",
            ) from None
        return
    opener = ASYNC_OPENERS.get(_scheme(url))
    if opener is None:
        raise _unsupported(config)
    async with opener(config, url) as saver:
        yield saver


@contextmanager
def open_checkpointer_sync(config: TandemConfig) -> Iterator[BaseCheckpointSaver[Any]]:
    """Open the configured checkpointer for sync runs (``invoke``); closed on exit.

    Raises:
        ConfigError: Unsupported scheme or an unusable path.
    """
    url = config.checkpointer.strip()
    if url.lower() == "memory":
        yield InMemorySaver()
        return
    path = sqlite_path(config)
    if path is not None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        _prepare(path, config)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        try:
            sqlite_saver = SqliteSaver(conn)
            try:
                sqlite_saver.setup()
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"cannot use the thread store {path} ({exc})",
                    file=config.source,
                    hint="move the file aside (threads are lost) or set checkpointer elsewhere",
                ) from None
            yield sqlite_saver
        finally:
            conn.close()
        return
    opener = SYNC_OPENERS.get(_scheme(url))
    if opener is None:
        raise _unsupported(config)
    with opener(config, url) as saver:
        yield saver


async def list_threads(saver: BaseCheckpointSaver[Any], limit: int = 50) -> list[str]:
    """Thread ids in ``saver``, most recently updated first (without loading checkpoints)."""
    if isinstance(saver, InMemorySaver):
        return list(reversed(list(saver.storage)))[:limit]
    conn = getattr(saver, "conn", None)
    module = type(conn).__module__ if conn is not None else ""
    if isinstance(conn, sqlite3.Connection) or module.startswith("aiosqlite"):
        sql = (
            "SELECT thread_id, MAX(checkpoint_id) AS last FROM checkpoints "
            "WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY last DESC LIMIT ?"
        )
        if isinstance(conn, sqlite3.Connection):
            return [str(r[0]) for r in conn.execute(sql, (limit,)).fetchall()]
        async with conn.execute(sql, (limit,)) as cur:  # type: ignore[union-attr]
            return [str(r[0]) for r in await cur.fetchall()]
    seen: list[str] = []
    async for item in saver.alist(None):
        tid = str(item.config["configurable"]["thread_id"])
        if tid not in seen:
            seen.append(tid)
            if len(seen) >= limit:
                break
    return seen
