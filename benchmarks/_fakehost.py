"""Fake Ollama + OpenAI servers in their own process (as real model servers would be).

In-process fakes share the interpreter (and its GIL) with the code being timed;
for latency figures the servers run here instead. Usage (by :func:`remote_fakes`)::

    python benchmarks/_fakehost.py CHAT_LATENCY SUP_LATENCY [echo]

prints one JSON line ``{"ollama": url, "openai": api_base}`` and serves until
stdin closes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REF = re.compile(r"\bref (zq\d{4})\b")
"""The reference token a cross-talk check puts in each question."""


@dataclass
class Endpoint:
    """Where a fake in another process listens (duck-types ``url``/``api_base``)."""

    url: str
    api_base: str = ""


@contextmanager
def remote_fakes(
    chat_latency: float, sup_latency: float, *, echo: bool = False
) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Start the fakes in a child process; yield their endpoints; stop them on exit.

    ``echo``: the worker model answers with the ``ref zqNNNN`` token of its own task, so a
    caller can tell that every answer belongs to its own question.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__)),
            str(chat_latency),
            str(sup_latency),
            *(["echo"] if echo else []),
        ],
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


def echo_reply(request: dict[str, Any]) -> str:
    """A worker reply quoting the ``ref zqNNNN`` token of its own task (cross-talk checks)."""
    task = next(
        (m["content"] for m in reversed(request["messages"]) if m["content"].startswith("Task:")),
        "",
    )
    token = REF.search(task)
    answer = f"Deposits come back within 14 days (ref {token.group(1) if token else 'none'})."
    return json.dumps(
        {"answer": answer, "confidence": 0.9, "citations": [], "needs_escalation": False}
    )


def _serve(chat_latency: float, sup_latency: float, echo: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import CHAT_MODEL, ChatLatencyOllama

    from tandem.workers.testing import FakeOpenAI

    with ChatLatencyOllama(chat_latency) as ol, FakeOpenAI(latency=sup_latency) as oa:
        if echo:
            ol.respond_with(CHAT_MODEL, echo_reply)
        print(json.dumps({"ollama": ol.url, "openai": oa.api_base}), flush=True)
        sys.stdin.read()  # until the parent closes the pipe


if __name__ == "__main__":
    _serve(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:4] == ["echo"])
