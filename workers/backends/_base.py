"""The small backend protocol every model engine implements (chat + embed)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, Field

__all__ = [
    "Backend",
    "ChatMessage",
    "ChatResult",
    "EmbedResult",
    "TokenCallback",
    "TokenLogprob",
    "TokenMeasure",
    "cosine",
]

TOP_LOGPROBS = 5
"""How many of the likeliest tokens' log-probabilities a chat with ``logprobs`` asks for at
each step (:attr:`TokenLogprob.top`): enough for the spread of the model's alternatives."""

TokenCallback = Callable[[str], None]
"""Called with each piece of streamed text as the model produces it."""


class ChatMessage(TypedDict):
    """One chat turn sent to a model."""

    role: Literal["system", "user", "assistant"]
    content: str


class TokenLogprob(BaseModel):
    """One generated token and its log-probability (the shape Ollama's ``/api/chat`` returns)."""

    token: str
    """The token's text."""
    logprob: float
    """Natural log of the probability the model gave this token (before sampling constraints)."""
    bytes: list[int] | None = None
    """The token's raw bytes when the engine gives them (a token may hold part of a character)."""
    top: list[float] | None = None
    """Log-probabilities of the engine's most likely tokens at this step, best first (up to
    :data:`TOP_LOGPROBS`; the chosen token is among them when it was one of the likeliest);
    ``None`` when the engine did not give them."""

    @property
    def size(self) -> int:
        """Length of the token in bytes of UTF-8 text."""
        return len(self.bytes) if self.bytes is not None else len(self.token.encode())


class ChatResult(BaseModel):
    """A finished chat call with the engine's own counters."""

    content: str
    """The model's reply (a JSON string when a schema was requested)."""
    model: str
    """The model reference that answered (``ollama:qwen2.5:1.5b`` …)."""
    host: str | None = None
    """The server that answered, or ``None`` for in-process engines."""
    tokens_in: int = 0
    """Prompt tokens (engine counter; 0 when the engine did not report it)."""
    tokens_out: int = 0
    """Generated tokens."""
    seconds: float = 0.0
    """Wall time of the call."""
    done_reason: str = ""
    """Why generation stopped (``stop``, ``length`` …) when the engine says."""
    logprobs: list[TokenLogprob] | None = Field(default=None, repr=False)
    """One entry per generated token, in order, when asked for (``logprobs=True``) and the
    engine gives them; ``None`` otherwise."""


class EmbedResult(BaseModel):
    """Embeddings for a batch of texts."""

    vectors: list[list[float]] = Field(repr=False)
    """One vector per input text, in input order."""
    model: str
    host: str | None = None
    tokens_in: int = 0
    seconds: float = 0.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two embedding vectors; 0.0 when their lengths differ (two
    embedders) or one is all zeros."""
    if len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@runtime_checkable
class Backend(Protocol):
    """A model engine bound to one model: Ollama, the embedded engine, or a test double."""

    ref: str
    """The model reference it serves (``ollama:qwen2.5:1.5b``, ``embedded:qwen2.5-coder-0.5b``)."""
    where: Literal["local", "remote"]
    """Whether calls leave the machine."""
    host: str | None
    """The server it talks to, if any."""

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_token: TokenCallback | None = None,
        logprobs: bool = False,
    ) -> ChatResult:
        """Generate a reply.

        Args:
            messages: The conversation, system prompt first.
            schema: A JSON schema the reply must follow (constrained decoding), or ``None``.
            max_tokens: Cap on generated tokens.
            temperature: Sampling temperature (0 = greedy, reproducible).
            on_token: If given, the reply is streamed and each piece is passed to it.
            logprobs: Also return each generated token's log-probability
                (:attr:`ChatResult.logprobs`), when the engine can.

        Raises:
            RunError: A translated engine error (never a third-party exception).
        """
        ...

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts (one vector each, same order)."""
        ...


@runtime_checkable
class TokenMeasure(Protocol):
    """An embedder that can measure texts in its own tokens (optional, beside :class:`Backend`).

    Stores use it to size chunks for the model's window; without it they estimate tokens
    from characters.
    """

    def input_window(self) -> int:
        """Tokens of content one text may hold before the model truncates it (special tokens
        excluded)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the model's tokens, special tokens excluded."""
        ...
