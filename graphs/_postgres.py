"""PostgreSQL checkpointer: ``checkpointer = "postgresql://user:pass@host:5432/db"``.

Threads live in PostgreSQL through LangGraph's own ``PostgresSaver`` (package
``langgraph-checkpoint-postgres``), so several tandem processes — on one machine or
many — share conversations: a thread started by one process is resumed by another.
The tables are created on first use (``setup()``, idempotent). Connecting has a
timeout (``connect_timeout``, 10 s unless the URL sets one) and failures name the
server (never the password) and say what to do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver

from tandem.graphs.config import TandemConfig
from tandem.workers.errors import BackendUnavailable, ConfigError, RunError

__all__ = ["CONNECT_TIMEOUT", "open_postgres", "open_postgres_sync", "postgres_url", "safe_url"]

CONNECT_TIMEOUT = 10
"""Seconds to wait for the PostgreSQL connection when the URL does not say."""

SCHEMES = ("postgresql", "postgres")


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def postgres_url(url: str) -> str:
    """The connection string handed to psycopg: ``connect_timeout`` added when missing."""
    parts = urlsplit(url.strip())
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error(exc: BaseException, url: str, config: TandemConfig) -> RunError | ConfigError:
    import psycopg

    where = safe_url(url)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        low = text.lower()
        if "password" in low or "authentication" in low or "does not exist" in low:
            error = ConfigError(
                f"PostgreSQL at {where} refused the connection: {text}",
                file=config.source,
                hint="check the user, password and database in checkpointer",
            )
            error.key = "checkpointer"
            return error
        return BackendUnavailable(
            f"cannot connect to PostgreSQL at {where}: {text}",
            host=where,
            hint="start PostgreSQL (see examples/deploy) or fix checkpointer in tandem.toml",
        )
    return BackendUnavailable(f"PostgreSQL at {where} failed: {text}", host=where)


@asynccontextmanager
async def open_postgres(config: TandemConfig, url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An ``AsyncPostgresSaver`` on ``url``, tables created; closed on exit.

    Raises:
        BackendUnavailable: The server cannot be reached.
        ConfigError: It refused the credentials or the database does not exist.
    """
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    try:
        manager = AsyncPostgresSaver.from_conn_string(postgres_url(url))
        saver = await manager.__aenter__()
    except (psycopg.Error, OSError) as exc:
        raise _error(exc, url, config) from None
    try:
        try:
            await saver.setup()
        except (psycopg.Error, OSError) as exc:
            raise _error(exc, url, config) from None
        yield saver
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await manager.__aexit__(None, None, None)


@contextmanager
def open_postgres_sync(config: TandemConfig, url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """A ``PostgresSaver`` on ``url``, tables created; closed on exit.

    Raises:
        BackendUnavailable: The server cannot be reached.
        ConfigError: It refused the credentials or the database does not exist.
    """
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    try:
        manager = PostgresSaver.from_conn_string(postgres_url(url))
        saver = manager.__enter__()
    except (psycopg.Error, OSError) as exc:
        raise _error(exc, url, config) from None
    try:
        try:
            saver.setup()
        except (psycopg.Error, OSError) as exc:
            raise _error(exc, url, config) from None
        yield saver
    except BaseException as exc:
        if not manager.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        manager.__exit__(None, None, None)
