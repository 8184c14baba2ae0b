"""Serving the app: who may connect (keys, bind address) and a graceful shutdown."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tandem.workers.errors import UsageError

__all__ = ["access_line", "is_loopback", "serve_app"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` accepts connections from this machine only."""
    name = host.strip().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos)


def access_line(host: str, keys: int) -> str:
    """What the start-up banner says about access.

    Raises:
        UsageError: ``host`` is reachable from other machines and no API key is configured.
    """
    if keys:
        return f"{keys} API key(s): clients send Authorization: Bearer <key>"
    if not is_loopback(host):
        raise UsageError(
            f"refusing to listen on {host} without API keys: anyone who can reach this "
            "machine could run (and spend) through it",
            hint="set [serve] api_keys or TANDEM_API_KEYS, or listen on 127.0.0.1",
        )
    return (
        "no API keys: listening on loopback only (this machine); set [serve] api_keys or "
        "TANDEM_API_KEYS to serve other machines"
    )


async def serve_app(
    app: Any, host: str, port: int, *, grace: float, on_stop: Callable[[], None]
) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM.

    On the signal, ``on_stop`` runs (the app stops taking requests and reports not ready),
    the listening socket closes, and in-flight requests get ``grace`` seconds to finish
    before they are cancelled; a second signal stops at once.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Ours instead of uvicorn's: it re-raises the signal after shutting down,
            # which would kill the process before the checkpointer is closed.
            loop = asyncio.get_running_loop()
            sigs = (signal.SIGINT, signal.SIGTERM)
            for sig in sigs:
                loop.add_signal_handler(sig, self.stop, sig)
            try:
                yield
            finally:
                for sig in sigs:
                    loop.remove_signal_handler(sig)

        def stop(self, sig: int) -> None:
            if not self.should_exit:
                on_stop()
            self.handle_exit(sig, None)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=max(1, round(grace)),
        lifespan="on",
        access_log=False,
        log_level="info",
        server_header=False,
    )
    await _Server(config).serve()
