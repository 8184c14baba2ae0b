"""A fake Ollama server that speaks Ollama's real HTTP API and JSON shapes.

It serves ``/api/chat``, ``/api/embed``, ``/api/tags``, ``/api/show``,
``/api/version``, ``/api/ps``, ``/api/pull`` and ``/`` exactly as documented,
streamed (NDJSON) or not, with nanosecond counters. Its models are
deterministic:

* embedding models return a hashed bag-of-words vector (texts sharing words are close);
* chat models follow a script when one is queued, else answer like a grounded
  specialist: they pick the quoted passage sharing most words with the question
  and reply with the JSON a worker must produce;
* a chat with ``"logprobs": true`` gets Ollama's top-level ``logprobs`` list (one
  ``{"token", "logprob", "bytes", "top_logprobs"}`` entry per generated token; each
  streamed chunk carries its own tokens' entries). The values are scriptable
  (:meth:`FakeOllama.set_logprobs`): a default, and lower values for chosen phrases.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from tandem.workers._fakes._http import FakeHTTPServer, Reply

__all__ = ["FakeOllama", "hash_embed", "words"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = (
    "a an and are as at be by can do does for from how i if in is it my of on or the to "
    "what when which who why will with you your me we our this that"
)
_STOP = frozenset(_STOP_WORDS.split())
EMBED_DIM = 256

ChatResponder = Callable[[dict[str, Any]], str]
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def fake_tokens(text: str) -> list[str]:
    """How the fake models split a reply into tokens: words, runs of spaces, single symbols."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    """Lowercased content words with a crude plural strip (shared by the fake models)."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def hash_embed(text: str, dim: int = EMBED_DIM) -> list[float]:
    """Deterministic unit vector: hashed bag of words (signed feature hashing)."""
    vec = [0.0] * dim
    for w in words(text):
        digest = hashlib.sha1(w.encode()).digest()
        idx = int.from_bytes(digest[:4], "big") % dim
        vec[idx] += 1.0 if digest[4] % 2 == 0 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


_PASSAGE = re.compile(r'<passage id="([^"]+)"[^>]*>(.*?)</passage>', re.S)
_QUESTION = re.compile(r"^(?:Task|Question):\s*(.+)$", re.M)


def grounded_reply(request: dict[str, Any]) -> str:
    """The default worker behaviour: answer from the best-overlapping passage."""
    users = [m["content"] for m in request.get("messages", []) if m["role"] == "user"]
    # A repair turn ("your reply was not valid …") refers back to the task asked before it.
    user = next((u for u in reversed(users) if _QUESTION.search(u)), users[-1] if users else "")
    found = _QUESTION.findall(user)
    question = set(words(found[0] if found else user))
    best: tuple[int, str, str] | None = None
    for pid, text in _PASSAGE.findall(user):
        score = len(question & set(words(text)))
        if best is None or score > best[0]:
            best = (score, pid, text)
    if best is None or best[0] == 0:
        return json.dumps(
            {
                "answer": "The provided passages do not cover this question.",
                "confidence": 0.1,
                "citations": [],
                "needs_escalation": True,
            }
        )
    score, pid, text = best
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n", text.strip()) if s.strip()]
    sentence = max(sentences, key=lambda s: len(question & set(words(s))))
    return json.dumps(
        {
            "answer": sentence,
            "confidence": 0.9 if score >= 2 else 0.4,
            "citations": [pid],
            "needs_escalation": False,
        }
    )


def stream_pieces(content: str, chunk_chars: int | None = None) -> list[str]:
    """How a fake streams ``content``: word by word, or ``chunk_chars`` characters at a time."""
    if chunk_chars:
        return [content[i : i + chunk_chars] for i in range(0, len(content), chunk_chars)]
    return re.findall(r"\S+\s*|\s+", content)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeOllama(FakeHTTPServer):
    """Ollama on 127.0.0.1 with deterministic models.

    Args:
        chat_models: Names served for chat (``/api/chat``).
        embed_models: Names served for ``/api/embed``.
        latency: Seconds every request waits before answering.
    """

    def __init__(
        self,
        *,
        chat_models: tuple[str, ...] = ("qwen2.5:1.5b",),
        embed_models: tuple[str, ...] = ("nomic-embed-text",),
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        self.chat_models = set(chat_models)
        self.embed_models = set(embed_models)
        self._scripts: dict[str, collections.deque[str]] = collections.defaultdict(
            collections.deque
        )
        self._responders: dict[str, ChatResponder] = {}
        self._script_lock = threading.Lock()
        self._stream_errors: collections.deque[tuple[str, str, int]] = collections.deque()
        self._logprobs: dict[str, tuple[float, dict[str, float]]] = {}
        self.chunk_chars: int | None = None
        """Stream replies in pieces of this many characters (default: word by word)."""
        self.trickle_interval: float = 0.0
        """Seconds between streamed pieces (a model that trickles tokens)."""
        self.routes.update(
            {
                ("POST", "/api/chat"): self._chat,
                ("POST", "/api/embed"): self._embed,
                ("GET", "/api/tags"): self._tags,
                ("POST", "/api/show"): self._show,
                ("GET", "/api/version"): lambda p, b: Reply(body={"version": "0.12.11"}),
                ("GET", "/api/ps"): lambda p, b: Reply(body={"models": []}),
                ("POST", "/api/pull"): self._pull,
                ("GET", "/"): lambda p, b: Reply(body={}),
            }
        )

    # -- scripting ---------------------------------------------------------------
    def script(self, model: str, *replies: str | dict[str, Any]) -> None:
        """Queue exact replies for ``model`` (dicts are JSON-encoded), used before the default."""
        with self._script_lock:
            for reply in replies:
                self._scripts[model].append(reply if isinstance(reply, str) else json.dumps(reply))

    def respond_with(self, model: str, responder: ChatResponder) -> None:
        """Answer chats to ``model`` with ``responder(request_json) -> content``."""
        self._responders[model] = responder

    def set_logprobs(
        self, model: str, default: float = -0.05, phrases: dict[str, float] | None = None
    ) -> None:
        """Log-probabilities ``model`` reports: ``default`` for every token, and the value in
        ``phrases`` for each token inside an occurrence of that phrase in the reply (e.g.
        ``{"21 days": -4.0}``: the model was unsure of that amount)."""
        self._logprobs[model] = (default, dict(phrases or {}))

    def _logprob_entries(self, model: str, content: str, top: int) -> list[dict[str, Any]]:
        """Ollama's per-token ``logprobs`` entries for ``content``."""
        default, phrases = self._logprobs.get(model, (-0.05, {}))
        low = [0.0] * len(content)  # per character: the lowest scripted value covering it
        for phrase, value in phrases.items():
            for m in re.finditer(re.escape(phrase), content):
                for i in range(m.start(), m.end()):
                    low[i] = min(low[i], value)
        entries, pos = [], 0
        for token in fake_tokens(content):
            covered = [v for v in low[pos : pos + len(token)] if v < 0]
            logprob = min(covered) if covered else default
            pos += len(token)
            alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
            if top > 1:
                rest = math.log(max(1e-9, 1 - math.exp(logprob)))
                alternatives.append({"token": " ", "logprob": rest, "bytes": [32]})
            entries.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": alternatives[: max(top, 0)],
                }
            )
        return entries

    def trickle(self, interval: float, *, chunk_chars: int | None = 1) -> None:
        """Stream every reply slowly: ``chunk_chars`` characters every ``interval`` seconds
        (a server that keeps sending, so that no read ever times out)."""
        self.trickle_interval = interval
        self.chunk_chars = chunk_chars

    def fail_mid_stream(
        self, model: str, message: str = "unexpected EOF", *, after: int = 2, times: int = 1
    ) -> None:
        """The next ``times`` streamed chats to ``model`` send ``after`` chunks, then an error
        line (HTTP 200 + ``{"error": …}``), as Ollama does when a runner dies mid-generation."""
        with self._script_lock:
            for _ in range(times):
                self._stream_errors.append((model, message, after))

    def _take_stream_error(self, model: str) -> tuple[str, int] | None:
        with self._script_lock:
            for item in self._stream_errors:
                if item[0] == model:
                    self._stream_errors.remove(item)
                    return item[1], item[2]
        return None

    def chat_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Bodies of recorded ``/api/chat`` requests (optionally for one model)."""
        return [
            r.body
            for r in self.requests_to("/api/chat")
            if model is None or r.body.get("model") == model
        ]

    # -- routes --------------------------------------------------------------------
    @staticmethod
    def _missing(model: str) -> Reply:
        return Reply(status=404, body={"error": f"model '{model}' not found"})

    def _content_for(self, model: str, body: dict[str, Any]) -> str:
        with self._script_lock:
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
        responder = self._responders.get(model)
        if responder is not None:
            return responder(body)
        if body.get("format") is not None:
            return grounded_reply(body)
        return "I am a fake model; " + " ".join(words(str(body.get("messages", [])))[-12:])

    def _chat(self, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if not model:
            return Reply(status=400, body={"error": "model is required"})
        if model in self.embed_models and model not in self.chat_models:
            return Reply(status=400, body={"error": f'"{model}" does not support chat'})
        if model not in self.chat_models:
            return self._missing(model)
        content = self._content_for(model, body)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        counters = {
            "total_duration": 2_254_970_291,
            "load_duration": 574_751_416,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 1_502_000_000,
            "eval_count": max(1, len(content.split())),
            "eval_duration": 175_000_000,
        }
        want = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0)
        if body.get("stream", True) is False:
            extra = {"logprobs": self._logprob_entries(model, content, top)} if want else {}
            return Reply(
                body={
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": content},
                    **extra,
                    "done": True,
                    "done_reason": "stop",
                    **counters,
                }
            )

        broken = self._take_stream_error(model)

        entries = iter(self._logprob_entries(model, content, top) if want else [])

        started = [0, 0]  # characters streamed so far, characters of the tokens sent

        def own(piece: str) -> list[dict[str, Any]]:
            """The entries of the tokens that start inside ``piece`` (a piece of a few
            characters may cut a token: its entry goes with the piece holding its start)."""
            out = []
            started[0] += len(piece)
            while started[1] < started[0]:
                entry = next(entries, None)
                if entry is None:
                    break
                out.append(entry)
                started[1] += len(entry["token"])
            return out

        def chunks() -> Iterator[dict[str, Any]]:
            for n, piece in enumerate(stream_pieces(content, self.chunk_chars)):
                if n and self.trickle_interval:
                    time.sleep(self.trickle_interval)
                if broken is not None and n == broken[1]:
                    yield {"error": broken[0]}
                    return
                extra = {"logprobs": own(piece)} if want else {}
                yield {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    **extra,
                    "done": False,
                }
            yield {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                **counters,
            }

        return Reply(stream=chunks())

    def _embed(self, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if not model:
            return Reply(status=400, body={"error": "model is required"})
        if model not in self.embed_models:
            if model in self.chat_models:
                return Reply(status=400, body={"error": f'"{model}" does not support embedding'})
            return self._missing(model)
        raw = body.get("input", [])
        texts = [raw] if isinstance(raw, str) else list(raw)
        return Reply(
            body={
                "model": model,
                "embeddings": [hash_embed(t) for t in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(t.split()) for t in texts),
            }
        )

    def _tags(self, path: str, body: dict[str, Any]) -> Reply:
        models = []
        for name in sorted(self.chat_models | self.embed_models):
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2026-01-01T00:00:00Z",
                    "size": 986_061_892,
                    "digest": hashlib.sha256(name.encode()).hexdigest(),
                    "details": {
                        "format": "gguf",
                        "family": "qwen2",
                        "parameter_size": "1.5B",
                        "quantization_level": "Q4_K_M",
                    },
                }
            )
        return Reply(body={"models": models})

    def _show(self, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model") or body.get("name") or ""
        if model not in self.chat_models | self.embed_models:
            return self._missing(model)
        caps = ["embedding"] if model in self.embed_models else ["completion", "tools"]
        return Reply(
            body={
                "modelfile": f"FROM {model}",
                "parameters": "temperature 0.7",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "qwen2", "parameter_size": "1.5B"},
                "model_info": {"qwen2.context_length": 32768},
                "capabilities": caps,
            }
        )

    def _pull(self, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model") or ""
        digest = "sha256:" + hashlib.sha256(model.encode()).hexdigest()
        total = 4_000_000

        def progress() -> Iterator[dict[str, Any]]:
            yield {"status": "pulling manifest"}
            yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
            for done in (1_000_000, 2_500_000, total):
                yield {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": total,
                    "completed": done,
                }
            yield {"status": "verifying sha256 digest"}
            yield {"status": "writing manifest"}
            yield {"status": "success"}
            self.chat_models.add(model)

        return Reply(stream=progress())
