"""Test doubles for tandem's whole stack, for tandem's own tests and for plugin authors.

Everything in :mod:`tandem.workers.testing` (the fake Ollama and OpenAI-compatible
servers, :func:`fake_config_toml`, :func:`hash_embed` …) is re-exported here, plus what
needs the layers above the workers:

* :func:`check_worker` — the worker conformance check of :mod:`tandem.workers.testing`,
  and with ``competitors=`` also the routing check: each question must score highest for
  the worker in tandem's router, against the competitors' profiles;
* :class:`ScriptedSupervisor` — a strict in-process supervisor model: it returns the
  scripted replies in order and fails the test on any unexpected call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from tandem.agents.llm import LLMReply
from tandem.agents.router import Router, RouterSettings
from tandem.workers import testing as _workers_testing
from tandem.workers.backends import Backend, ChatMessage, TokenCallback
from tandem.workers.spec import WorkerSpec
from tandem.workers.testing import (
    FakeOllama,
    FakeOpenAI,
    QuestionCheck,
    RecordedRequest,
    WorkerCheck,
    fake_config_toml,
    grounded_reply,
    hash_embed,
    rule_supervisor,
)

__all__ = [
    "FakeOllama",
    "FakeOpenAI",
    "QuestionCheck",
    "RecordedRequest",
    "ScriptedSupervisor",
    "WorkerCheck",
    "acheck_worker",
    "check_worker",
    "fake_config_toml",
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
        self.where: Literal["local", "remote"] = where
        self._replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.calls: list[list[dict[str, str]]] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        self.calls.append([{k: str(v) for k, v in m.items()} for m in messages])
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


def _router_scores(
    spec: WorkerSpec, competitors: Sequence[WorkerSpec]
) -> Callable[[Backend], Callable[[str], Awaitable[dict[str, float]]]]:
    """Scores from tandem's router over ``spec`` and its competitors' profiles."""

    def build(embedder: Backend) -> Callable[[str], Awaitable[dict[str, float]]]:
        others = [c for c in competitors if c.name != spec.name]
        router = Router([*others, spec], embedder, RouterSettings(embed_model=embedder.ref))

        async def score(question: str) -> dict[str, float]:
            decision, _ = await router.decide(question)
            return decision.scores

        return score

    return build


async def acheck_worker(
    spec: WorkerSpec,
    *,
    questions: Sequence[str] | None = None,
    competitors: Sequence[WorkerSpec] = (),
) -> WorkerCheck:
    """Async form of :func:`check_worker`."""
    return await _workers_testing.acheck_worker(
        spec,
        questions=questions,
        route_scores=_router_scores(spec, competitors) if competitors else None,
    )


def check_worker(
    spec: WorkerSpec,
    *,
    questions: Sequence[str] | None = None,
    competitors: Sequence[WorkerSpec] = (),
) -> WorkerCheck:
    """Run a worker through registration → ingestion → (routing) → retrieval → answer →
    validation, against a fake Ollama in a temporary store (fast and offline)::

        from tandem.graphs.testing import check_worker
        from tandem.workers.builtin import specs as builtin_specs
        from my_plugin import specs

        def test_conformance():
            for spec in specs():
                check_worker(spec, competitors=builtin_specs())

    Args:
        spec: The worker to check (its model is not called; a fake stands in).
        questions: Questions to ask (default: every example in the spec).
        competitors: Other workers (e.g. tandem's built-ins); when given, each question must
            score highest for ``spec`` in tandem's router.

    Returns:
        A :class:`WorkerCheck` with, per question, the retrieved sources, the answer, its
        citations and (with competitors) the best-scoring worker.

    Raises:
        AssertionError: Naming the stage that failed and why.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acheck_worker(spec, questions=questions, competitors=competitors))
    raise RuntimeError("check_worker() cannot run inside an event loop; await acheck_worker()")
