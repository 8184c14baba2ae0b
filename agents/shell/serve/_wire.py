"""OpenAI's chat-completions wire format: request validation, responses, chunks, errors.

Pure functions and small records, no I/O: the app (:mod:`._app`) reads bytes, calls
:func:`parse_chat_request`, runs tandem and writes what :func:`completion`, :func:`chunk`
and :func:`error_body` build. The shapes are OpenAI's (``chat.completion``,
``chat.completion.chunk`` as ``data: {…}`` Server-Sent Events ending with ``data: [DONE]``,
errors as ``{"error": {"message", "type", "param", "code"}}``) so the official clients and
chat front-ends parse them unchanged; tandem's own fields travel in a ``tandem`` object.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ADVISORY",
    "DONE",
    "KEEPALIVE",
    "ROUTED_MODEL",
    "ChatRequest",
    "WireError",
    "chunk",
    "completion",
    "error_body",
    "new_id",
    "parse_chat_request",
    "sse",
    "usage",
]

ROUTED_MODEL = "tandem"
"""The model name that lets tandem's router decide; ``tandem/<worker>`` forces one specialist."""

ADVISORY = frozenset(
    {
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "max_tokens",
        "max_completion_tokens",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "parallel_tool_calls",
    }
)
"""Accepted, not applied: tandem's own settings decide sampling and lengths per model. The
response names them (``tandem.ignored``, ``x-tandem-ignored``) so nothing is dropped silently."""

_KNOWN = ADVISORY | {
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "user",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "response_format",
    "modalities",
    "audio",
    "stop",
    "prediction",
    "web_search_options",
    "logit_bias",
    "moderation",
    # tandem's extensions
    "thread_id",
    "approve",
}
_TIGHT = (",", ":")
_THREAD_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class WireError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(message: str, param: str | None, code: str | None = None) -> WireError:
    return WireError(400, message, param=param, code=code)


def _unsupported(param: str, what: str) -> WireError:
    return _bad(f"tandem does not support {what} ('{param}').", param, "unsupported_parameter")


@dataclass
class ChatRequest:
    """A validated ``POST /v1/chat/completions`` body."""

    model: str
    query: str
    """The last user message: what tandem answers."""
    history: list[tuple[Literal["user", "assistant"], str]]
    """Earlier user/assistant turns, oldest first (system/developer messages excluded)."""
    worker: str | None = None
    """The specialist forced by ``model = "tandem/<worker>"``."""
    stream: bool = False
    include_usage: bool = False
    thread_id: str | None = None
    approve: bool | None = None
    ignored: list[str] = field(default_factory=list)
    """Advisory options present in the request (accepted, not applied)."""
    system_messages: int = 0
    """System/developer messages in the request (tandem's specialists bring their own)."""


def _text(content: Any, where: str) -> str:
    """The text of a message's ``content`` (a string or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"'{where}' must be a string or an array of content parts.", where)
    pieces = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"'{where}[{j}]' must be an object.", f"{where}[{j}]")
        kind = part.get("type")
        if kind != "text":
            raise _unsupported(f"{where}[{j}].type", f"'{kind}' content (only text)")
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{where}[{j}].text' must be a string.", f"{where}[{j}].text")
        pieces.append(text)
    return "".join(pieces)


def _messages(raw: Any) -> tuple[str, list[tuple[Literal["user", "assistant"], str]], int]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty array.", "messages")
    history: list[tuple[Literal["user", "assistant"], str]] = []
    system = 0
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"'{where}' must be an object.", where)
        role = m.get("role")
        if role in ("tool", "function"):
            raise _unsupported(f"{where}.role", "tool calling")
        if role not in ("system", "developer", "user", "assistant"):
            raise _bad(
                f"Invalid value for '{where}.role': {json.dumps(role)}; expected "
                "'system', 'developer', 'user' or 'assistant'.",
                f"{where}.role",
                "invalid_value",
            )
        for key in ("tool_calls", "function_call", "audio"):
            if m.get(key):
                raise _unsupported(f"{where}.{key}", "tool calling" if "call" in key else "audio")
        text = _text(m.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            system += 1
            continue
        history.append((role, text))
    if history and history[-1][0] == "user":
        role, query = history.pop()
    else:
        raise _bad("The last message must be a user message (the question to answer).", "messages")
    if not query.strip():
        raise _bad("The last user message is empty.", f"messages[{len(raw) - 1}].content")
    return query, history, system


def _refuse(body: Mapping[str, Any]) -> None:
    """Options whose effect tandem cannot produce: a 400 naming the field."""

    def given(key: str) -> bool:
        value = body.get(key)
        return value is not None and value != [] and value != {}

    for key, what in (
        ("tools", "tool calling"),
        ("functions", "function calling"),
        ("audio", "audio output"),
        ("prediction", "predicted outputs"),
        ("web_search_options", "web search"),
        ("top_logprobs", "log probabilities"),
        ("logit_bias", "logit bias"),
        ("moderation", "moderation policies"),
    ):
        if given(key):
            raise _unsupported(key, what)
    for key in ("tool_choice", "function_call"):
        if given(key) and body[key] != "none":
            raise _unsupported(key, "tool calling")
    if body.get("logprobs"):
        raise _unsupported("logprobs", "log probabilities")
    n = body.get("n")
    if n is not None and n != 1:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _bad(f"Invalid value for 'n': {json.dumps(n)}.", "n", "invalid_value")
        raise _unsupported("n", "more than one choice per request")
    if given("stop"):
        raise _unsupported("stop", "stop sequences")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise _unsupported("response_format", "structured output (only type 'text')")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _unsupported("modalities", "output other than text")


def parse_chat_request(
    body: bytes, workers: Sequence[str], *, user_threads: bool = False
) -> ChatRequest:
    """Validate a chat-completions body.

    Args:
        body: The raw request body.
        workers: The specialists that ``tandem/<worker>`` may name.
        user_threads: Treat ``user`` as the thread id when ``thread_id`` is absent.

    Raises:
        WireError: 400 naming the offending field, or 404 for an unknown model.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)",
            None,
        ) from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.", None)
    for key in data:
        if key not in _KNOWN:
            raise _bad(f"Unrecognized request argument supplied: {key}", key, "unknown_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model")
    worker: str | None = None
    if model != ROUTED_MODEL:
        name = model.removeprefix(f"{ROUTED_MODEL}/")
        if not model.startswith(f"{ROUTED_MODEL}/") or name not in workers:
            raise WireError(
                404,
                f"The model `{model}` does not exist or you do not have access to it. "
                f"Available: {', '.join([ROUTED_MODEL, *(f'tandem/{w}' for w in workers)])}.",
                param="model",
                code="model_not_found",
            )
        worker = name
    _refuse(data)
    query, history, system = _messages(data.get("messages"))
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _bad(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object.", "stream_options", "invalid_type")
        include_usage = bool(options.get("include_usage"))
    thread_id = data.get("thread_id")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("Invalid type for 'user': expected a string.", "user", "invalid_type")
    if thread_id is None and user_threads and user:
        thread_id = user
    valid = isinstance(thread_id, str) and _THREAD_ID.match(thread_id)
    if thread_id is not None and not valid:
        raise _bad(
            "'thread_id' must be 1-128 characters of letters, digits, '_', '-', '.' or ':'.",
            "thread_id",
            "invalid_value",
        )
    approve = data.get("approve")
    if approve is not None and not isinstance(approve, bool):
        raise _bad("Invalid type for 'approve': expected a boolean.", "approve", "invalid_type")
    if approve is not None and thread_id is None:
        raise _bad("'approve' answers a paused run: send it with the run's 'thread_id'.", "approve")
    ignored = [k for k in data if k in ADVISORY and data[k] is not None]
    if user is not None and not user_threads:
        ignored.append("user")
    return ChatRequest(
        model=model,
        query=query,
        history=history,
        worker=worker,
        stream=bool(stream),
        include_usage=include_usage,
        thread_id=thread_id,
        approve=approve,
        ignored=ignored,
        system_messages=system,
    )


def new_id() -> str:
    """A completion id in OpenAI's style (``chatcmpl-…``)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    """OpenAI's ``usage`` object from tandem's token totals."""
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def completion(
    cid: str,
    model: str,
    text: str,
    *,
    created: int | None = None,
    tokens: tuple[int, int] = (0, 0),
    tandem: dict[str, Any] | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(*tokens),
        "system_fingerprint": None,
    }
    if tandem is not None:
        out["tandem"] = tandem
    return out


def chunk(
    cid: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage_row: dict[str, int] | None = None,
    with_usage: bool = False,
    tandem: dict[str, Any] | None = None,
    no_choices: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: a delta, the finishing chunk, or (no choices) usage."""
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if no_choices
        else [
            {
                "index": 0,
                "delta": delta or {},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if with_usage:
        out["usage"] = usage_row
    if tandem is not None:
        out["tandem"] = tandem
    return out


def sse(data: dict[str, Any] | str) -> bytes:
    """One Server-Sent Event: ``data: …\\n\\n``."""
    if isinstance(data, str):
        return f"data: {data}\n\n".encode()
    text = json.dumps(data, ensure_ascii=False, separators=_TIGHT)
    return f"data: {text}\n\n".encode()


DONE = b"data: [DONE]\n\n"
"""The stream's last event."""
KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment: keeps proxies from closing an idle stream; clients ignore it."""
