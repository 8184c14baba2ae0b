"""A fake OpenAI-compatible server (``/v1/chat/completions``) acting as a supervisor.

litellm reaches it with ``model="openai/<name>"`` and ``api_base=<url>/v1``, exactly
as it would reach a hosted model. Replies come from a strict script when one is
queued; otherwise a deterministic rule-based supervisor answers: it plans by word
overlap between the query and the listed workers, and synthesizes by joining the
worker answers it was given.
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tandem.workers._fakes._http import FakeHTTPServer, Reply
from tandem.workers._fakes.ollama_server import stream_pieces, words

__all__ = ["FakeOpenAI", "rule_supervisor"]

_WORKER = re.compile(r'<worker name="([a-z0-9_]+)">(.*?)</worker>', re.S)
_RESULT = re.compile(
    r'<result(?: [a-z]+="[^"]*")*? worker="([a-z0-9_]+)"[^>]*>(.*?)</result>', re.S
)
_ANSWER = re.compile(r"^Answer: ", re.M)
# The innermost <query>…</query>: system prompts mention the tag itself.
_QUERY = re.compile(r"<query>((?:(?!<query>).)*?)</query>", re.S)


def _all_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []))


def rule_supervisor(request: dict[str, Any]) -> str:
    """Deterministic supervisor behaviour used when no reply is scripted."""
    text = _all_text(request)
    query_match = _QUERY.findall(text)
    query = query_match[-1].strip() if query_match else text[-500:]
    schema = json.dumps(request.get("response_format") or {})
    if '"subtasks"' in schema:
        workers = [(name, set(words(desc + " " + name))) for name, desc in _WORKER.findall(text)]
        parts = [p.strip() for p in re.split(r"\?\s+|;\s+", query) if p.strip()] or [query]
        subtasks: list[dict[str, str]] = []
        for part in parts:
            pwords = set(words(part))
            scored = [(len(pwords & vocab), name) for name, vocab in workers]
            best = max(scored, default=(0, ""))
            if best[0] > 0 and best[1] not in {s["worker"] for s in subtasks}:
                subtasks.append({"worker": best[1], "instruction": part.rstrip("?") + "?"})
        return json.dumps({"subtasks": subtasks, "rationale": "matched workers by topic words"})
    results = _RESULT.findall(text)
    if results:
        body = " ".join(
            f"{_ANSWER.split(answer, maxsplit=1)[-1].strip()} [{name}]" for name, answer in results
        )
        return f"Combined answer: {body}"
    return f"Supervisor answer to: {query}"


class FakeOpenAI(FakeHTTPServer):
    """OpenAI chat-completions on 127.0.0.1.

    Args:
        latency: Seconds every request waits before answering.
        responder: Replaces :func:`rule_supervisor` as the default behaviour.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Callable[[dict[str, Any]], str | dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(latency=latency)
        self.responder = responder or rule_supervisor
        self.usages: list[dict[str, int]] = []
        """The ``usage`` object of every completion answered, in order."""
        self._script: collections.deque[str] = collections.deque()
        self._lock2 = threading.Lock()
        self.chunk_chars: int | None = None
        """Stream replies in pieces of this many characters (default: word by word)."""
        self.routes[("POST", "/v1/chat/completions")] = self._completions
        self.routes[("GET", "/v1/models")] = lambda p, b: Reply(
            body={"object": "list", "data": [{"id": "fake-large", "object": "model"}]}
        )

    @property
    def api_base(self) -> str:
        """The ``api_base`` to give litellm."""
        return f"{self.url}/v1"

    def script(self, *replies: str | dict[str, Any]) -> None:
        """Queue exact replies (dicts are JSON-encoded), consumed in order."""
        with self._lock2:
            for reply in replies:
                self._script.append(reply if isinstance(reply, str) else json.dumps(reply))

    def completions(self) -> list[dict[str, Any]]:
        """Bodies of recorded chat-completion requests."""
        return [r.body for r in self.requests_to("/v1/chat/completions")]

    def _completions(self, path: str, body: dict[str, Any]) -> Reply:
        with self._lock2:
            content = self._script.popleft() if self._script else None
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if content is None:
            # A responder may answer with a message dict carrying OpenAI ``tool_calls``.
            reply = self.responder(body)
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
            content = str(message.get("content") or "")
        model = body.get("model", "fake-large")
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        # Tool schemas and earlier tool calls are prompt text too (tandem never sends them).
        prompt_tokens += len(json.dumps(body["tools"]).split()) if body.get("tools") else 0
        for m in body["messages"]:
            prompt_tokens += len(json.dumps(m["tool_calls"]).split()) if m.get("tool_calls") else 0
        calls = message.get("tool_calls") or []
        completion = len(content.split()) + (len(json.dumps(calls).split()) if calls else 0)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": max(1, completion),
            "total_tokens": prompt_tokens + max(1, completion),
        }
        with self._lock2:
            self.usages.append(usage)
        ident, created = f"chatcmpl-{len(self.requests)}", int(time.time())
        if calls and not body.get("stream"):
            return Reply(
                body={
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                    "usage": usage,
                }
            )
        if not body.get("stream"):
            return Reply(
                body={
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        def chunks() -> Iterator[dict[str, Any]]:
            base = {"id": ident, "object": "chat.completion.chunk", "created": created}
            for piece in stream_pieces(content, self.chunk_chars):
                yield {
                    **base,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            yield {
                **base,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": usage,
            }

        return Reply(stream=chunks(), sse=True)
