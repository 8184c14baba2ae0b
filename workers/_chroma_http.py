"""Chroma in client/server mode: every worker store on one ``chroma run`` server.

``[stores] url = "http://host:port"`` switches tandem from a Chroma directory per
machine to a shared Chroma server. The server keeps vectors, documents and
metadata; embeddings are still computed by tandem (the client passes them on every
write and query), so the server needs no model and never downloads one.

Chroma's ``HttpClient`` is synchronous and, left alone, waits forever (its HTTP
session has no timeout) and talks to the server while it is being constructed.
:class:`LazyHttpClient` therefore connects on first use — which the store always
makes from a worker thread — and puts an explicit timeout on every request.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.workers.errors import BackendTimeout, BackendUnavailable, RunError, StoreError

__all__ = ["LazyHttpClient", "StoreSettings", "translate_chroma_error"]


class StoreSettings(BaseModel):
    """Where the worker stores live (``[stores]``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    """A Chroma server (``http://host:8000``, started with ``chroma run``); every worker store
    becomes a collection there. ``None``: a local Chroma directory under ``data_dir/stores``."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds to wait for one request to the Chroma server."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for the TCP connection; a dead server fails fast."""
    tenant: str = "default_tenant"
    """The Chroma tenant on the server."""
    database: str = "default_database"
    """The Chroma database on the server."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for every request (e.g. ``Authorization`` behind a proxy)."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if "://" not in value:
            value = f"http://{value}"
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s)://host:port URL")
        if parts.path not in ("", "/"):
            raise ValueError(f"'{value}': give the server's base URL, without a path")
        return value


def translate_chroma_error(exc: BaseException, *, url: str, what: str) -> RunError:
    """Map a failure talking to a Chroma server to tandem's error tree.

    Args:
        exc: What chromadb/httpx raised.
        url: The server's base URL.
        what: What tandem was doing (``"cannot query 'tandem-tenancy'"``).

    Returns:
        :class:`BackendTimeout` for a timeout, :class:`BackendUnavailable` when the server
        cannot be reached, :class:`StoreError` for anything else; each names the server.
    """
    if isinstance(exc, RunError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return BackendTimeout(
            f"{what}: the Chroma server at {url} did not answer in time",
            host=url,
            hint="check the server's load, or raise [stores] timeout in tandem.toml",
        )
    if isinstance(exc, httpx.TransportError | ConnectionError) or "Could not connect" in str(exc):
        return BackendUnavailable(
            f"{what}: cannot connect to the Chroma server at {url}",
            host=url,
            hint="start it with `chroma run --path DIR --host HOST --port PORT`, "
            "or fix [stores] url in tandem.toml",
        )
    return StoreError(f"{what} on the Chroma server at {url}: {exc}", host=url)


class LazyHttpClient:
    """A Chroma ``HttpClient`` that connects on first use, with timeouts on every request.

    Only the attribute access that starts a call touches the network; construct it
    anywhere (even inside an event loop) and use it from a thread.

    Args:
        settings: The server URL, timeouts, tenant and database.
    """

    def __init__(self, settings: StoreSettings) -> None:
        if settings.url is None:
            raise ValueError("LazyHttpClient needs [stores] url")
        self.settings = settings
        self.url = settings.url
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        parts = urlsplit(self.url)
        ssl = parts.scheme == "https"
        try:
            client = chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (443 if ssl else 8000),
                ssl=ssl,
                headers=dict(self.settings.headers) or None,
                settings=Settings(anonymized_telemetry=False),
                tenant=self.settings.tenant,
                database=self.settings.database,
            )
        except Exception as exc:
            raise translate_chroma_error(exc, url=self.url, what="cannot open the stores") from exc
        # chromadb's session waits forever by default: every request gets our timeouts.
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(
                self.settings.timeout, connect=self.settings.connect_timeout
            )
        return client

    def client(self) -> Any:
        """The connected ``chromadb`` client (connects on the first call; blocking)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client(), name)

    def __repr__(self) -> str:
        return f"LazyHttpClient({self.url!r})"
