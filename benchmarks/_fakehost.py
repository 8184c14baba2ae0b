"""Fake Ollama + OpenAI servers in their own process (as real model servers would be).

In-process fakes share the interpreter (and its GIL) with the code being timed;
for latency figures the servers run here instead. Usage (by :func:`remote_fakes`)::

    python benchmarks/_fakehost.py CHAT_LATENCY SUP_LATENCY

prints one JSON line ``{"ollama": url, "openai": api_base}`` and serves until
stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Endpoint:
    """Where a fake in another process listens (duck-types ``url``/``api_base``)."""

    url: str
    api_base: str = ""


@contextmanager
def remote_fakes(chat_latency: float, sup_latency: float) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Start the fakes in a child process; yield their endpoints; stop them on exit."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__)), str(chat_latency), str(sup_latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        yield Endpoint(urls["ollama"]), Endpoint(urls["openai"], urls["openai"])
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _serve(chat_latency: float, sup_latency: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import ChatLatencyOllama

    from tandem.workers.testing import FakeOpenAI

    with ChatLatencyOllama(chat_latency) as ol, FakeOpenAI(latency=sup_latency) as oa:
        print(json.dumps({"ollama": ol.url, "openai": oa.api_base}), flush=True)
        sys.stdin.read()  # until the parent closes the pipe


if __name__ == "__main__":
    _serve(float(sys.argv[1]), float(sys.argv[2]))
