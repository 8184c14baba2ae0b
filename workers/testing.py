"""Test doubles for tandem and for plugin authors.

* :class:`FakeOllama` — a real HTTP server speaking Ollama's API (``/api/chat``,
  ``/api/embed``, ``/api/tags`` …) with deterministic models, request recording,
  concurrency counters, latency and fault injection.
* :class:`FakeOpenAI` — an OpenAI-compatible ``/v1/chat/completions`` server that
  litellm reaches like any hosted supervisor.
* :class:`ScriptedSupervisor` — a strict in-process supervisor model: it returns
  the scripted replies in order and fails the test on any unexpected call.
* :func:`hash_embed` — the deterministic embedding the fakes use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from tandem.workers._fakes._http import RecordedRequest
from tandem.workers._fakes.ollama_server import FakeOllama, grounded_reply, hash_embed
from tandem.workers._fakes.openai_server import FakeOpenAI, rule_supervisor

__all__ = [
    "FakeOllama",
    "FakeOpenAI",
    "RecordedRequest",
    "ScriptedSupervisor",
    "grounded_reply",
    "hash_embed",
    "rule_supervisor",
]


class ScriptedSupervisor:
    """A strict scripted supervisor model (implements ``SupervisorLLM``).

    Args:
        replies: Replies in call order; dicts are JSON-encoded.
        where: Whether it pretends to be ``local`` or ``remote``.
    """

    def __init__(
        self, *replies: str | dict[str, Any], where: Literal["local", "remote"] = "remote"
    ) -> None:
        self.model = "scripted/supervisor"
        self.where = where
        self._replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.calls: list[list[dict[str, str]]] = []

    async def complete(
        self,
        messages: Sequence[Any],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: Any = None,
    ) -> Any:
        from tandem.agents._llm import LLMReply

        self.calls.append([dict(m) for m in messages])
        if not self._replies:
            raise AssertionError(
                f"ScriptedSupervisor: unexpected call #{len(self.calls)} ({schema_name})"
            )
        content = self._replies.pop(0)
        if on_token is not None:
            on_token(content)
        return LLMReply(
            content=content,
            model=self.model,
            where=self.where,
            tokens_in=sum(len(str(m["content"]).split()) for m in messages),
            tokens_out=len(content.split()),
            bytes_sent=len(json.dumps([dict(m) for m in messages]).encode()),
        )

    @property
    def remaining(self) -> int:
        """Replies not consumed yet."""
        return len(self._replies)
