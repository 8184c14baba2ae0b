"""Streaming a direct answer: workers reply in JSON, the user should see only the answer.

:class:`AnswerExtractor` reads a worker's raw JSON as it arrives and yields the decoded
text of its ``"answer"`` string field piece by piece; :func:`answer_sink` turns that into
LangGraph ``custom`` stream events (``{"event": "token", "text": …}``), the same events the
supervisor emits. :func:`emit` sends any other event (``{"event": "reset"}`` when a streamed
draft is dropped, e.g. on escalation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from langgraph.config import get_config, get_stream_writer

__all__ = ["STREAM_DRAFTS", "AnswerExtractor", "answer_sink", "emit"]

_KEY = re.compile(r'"answer"\s*:\s*"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"'}


class AnswerExtractor:
    """Incrementally decode the ``"answer"`` string of a JSON object being streamed.

    >>> x = AnswerExtractor()
    >>> x.feed('{"answer": "Fourteen') + x.feed(' days\\\\n", "confidence": 0.9}')
    'Fourteen days\\n'
    """

    def __init__(self) -> None:
        self._head = ""  # text before the answer's opening quote
        self._pending = ""  # an incomplete escape sequence
        self.state: str = "seeking"
        """``seeking`` the key, ``inside`` the string, or ``done``."""

    def feed(self, piece: str) -> str:
        """Add raw output; return the newly decoded answer text (may be empty)."""
        if self.state == "done":
            return ""
        if self.state == "seeking":
            self._head += piece
            match = _KEY.search(self._head)
            if not match:
                self._head = self._head[-64:]  # the key cannot be longer than this
                return ""
            self.state = "inside"
            piece, self._head = self._head[match.end() :], ""
        return self._decode(self._pending + piece)

    def _decode(self, text: str) -> str:
        out: list[str] = []
        self._pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == '"':
                self.state = "done"
                break
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            if i + 1 >= len(text):
                self._pending = text[i:]
                break
            code = text[i + 1]
            if code == "u":
                if i + 6 > len(text):
                    self._pending = text[i:]
                    break
                try:
                    value = int(text[i + 2 : i + 6], 16)
                except ValueError:
                    value = 0xFFFD
                if not 0xD800 <= value <= 0xDFFF:  # halves of a pair are not printable alone
                    out.append(chr(value))
                i += 6
                continue
            out.append(_ESCAPES.get(code, code))
            i += 2
        return "".join(out)


def _writer() -> Callable[[Any], None] | None:
    try:
        return get_stream_writer()
    except Exception:  # not inside a graph run
        return None


def emit(event: dict[str, Any]) -> None:
    """Send ``event`` on the ``custom`` stream of the current run (no-op outside a run)."""
    writer = _writer()
    if writer is not None:
        writer(event)


STREAM_DRAFTS = "tandem_stream_drafts"
"""``configurable`` key: ``False`` when the caller will not show a specialist's draft as it
is written (it waits for the answer), so the worker's model is not asked to stream."""


def _drafts_wanted() -> bool:
    try:
        return bool(get_config().get("configurable", {}).get(STREAM_DRAFTS, True))
    except Exception:  # not inside a graph run
        return True


def answer_sink(worker: str) -> Callable[[str], None] | None:
    """An ``on_token`` callback streaming the answer field of ``worker``'s JSON reply."""
    writer = _writer()
    if writer is None or not _drafts_wanted():
        return None
    extractor = AnswerExtractor()

    def sink(piece: str) -> None:
        nonlocal extractor
        if extractor.state == "done" and "{" in piece:
            # A repair attempt starts a new object: the UI drops the draft it showed.
            extractor = AnswerExtractor()
            writer({"event": "reset", "reason": "repair"})
        text = extractor.feed(piece)
        if text:
            writer({"event": "token", "text": text, "worker": worker})

    return sink
