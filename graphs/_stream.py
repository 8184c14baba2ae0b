"""Streaming a direct answer: workers reply in JSON, the user should see only the answer.

:class:`AnswerExtractor` reads a worker's raw JSON as it arrives and yields the decoded
text of its ``"answer"`` string field piece by piece; :func:`answer_sink` turns that into
LangGraph ``custom`` stream events (``{"event": "token", "text": …}``), the same events the
supervisor emits. :func:`emit` sends any other event (``{"event": "reset"}`` when a streamed
draft is dropped, e.g. on escalation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.config import get_config, get_stream_writer

from tandem.agents.privacy.streams import OutputStream

__all__ = [
    "SOURCE_MARKS",
    "STREAM_DRAFTS",
    "AnswerExtractor",
    "AnswerSink",
    "SourceMarks",
    "TokenStream",
    "answer_sink",
    "emit",
    "token_stream",
]

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


SOURCE_MARKS = re.compile(r"\s*\[S\d+\](?:\s*,?\s*\[S\d+\])*")
"""The ``[S1]``, ``[S2], [S3]`` marks a supervisor answering from numbered passages cites
them with. The user sees the answer's citations by source name instead."""

_UNFINISHED_MARKS = re.compile(
    r"(?:\s*\[S\d+\](?:\s*,?\s*\[S\d+\])*(?:\s*,?\s*(?:\[(?:S\d*)?)?)?|\s*\[(?:S\d*)?|\s+)$"
)


class SourceMarks:
    """Drops :data:`SOURCE_MARKS` from text streamed piece by piece, holding back only a tail
    that may still become one (trailing spaces, ``[``, ``[S1``, ``[S1],``).

    >>> m = SourceMarks()
    >>> m.feed("within 14 days [") + m.feed("S2], [S3].") + m.finish()
    'within 14 days.'
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """Add text; return what can be shown now."""
        text = self._held + piece
        tail = _UNFINISHED_MARKS.search(text)
        cut = tail.start() if tail else len(text)
        self._held = text[cut:]
        return SOURCE_MARKS.sub("", text[:cut])

    def finish(self) -> str:
        """The rest, once the text has ended."""
        rest, self._held = SOURCE_MARKS.sub("", self._held), ""
        return rest


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


class TokenStream:
    """Answer text streamed as ``custom`` events, exactly as the final answer will show it.

    Every piece goes through :class:`~tandem.agents.privacy.streams.OutputStream`:
    placeholders restored (``mapping``, read when text is released), control sequences
    stripped, links and images off the allowlist neutralised — holding back only what may
    still be an unfinished construct. :meth:`flush` releases the rest when the call ends;
    :meth:`reset` drops a draft (the UI clears what it showed).

    Args:
        writer: LangGraph's stream writer.
        allowed_hosts: ``[privacy] allowed_link_hosts``.
        mapping: Placeholder → original (or a function returning it), for a remote model's
            redacted reply.
        worker: The worker whose answer this is (added to each event).
        marks: Drop :data:`SOURCE_MARKS` (the final answer shows citations by name).
    """

    def __init__(
        self,
        writer: Callable[[Any], None],
        allowed_hosts: Sequence[str],
        *,
        mapping: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        worker: str | None = None,
        marks: bool = False,
    ) -> None:
        self.writer = writer
        self.marks = SourceMarks() if marks else None
        self.allowed = tuple(allowed_hosts)
        self.mapping = mapping
        self.extra = {"worker": worker} if worker else {}
        self.out = OutputStream(mapping, self.allowed)

    def __call__(self, piece: str) -> None:
        if self.marks is not None:
            piece = self.marks.feed(piece)
        self._send(self.out.feed(piece))

    def _send(self, text: str) -> None:
        if text:
            self.writer({"event": "token", "text": text, **self.extra})

    def flush(self) -> None:
        """Release what was held back (the call has ended)."""
        if self.marks is not None:
            self._send(self.out.feed(self.marks.finish()))
        self._send(self.out.finish())
        self.out = OutputStream(self.mapping, self.allowed)

    def reset(self, reason: str) -> None:
        """Drop the draft shown so far."""
        self.out = OutputStream(self.mapping, self.allowed)
        self.marks = SourceMarks() if self.marks is not None else None
        self.writer({"event": "reset", "reason": reason})


def token_stream(
    allowed_hosts: Sequence[str],
    mapping: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    *,
    marks: bool = False,
) -> TokenStream | None:
    """A :class:`TokenStream` for the supervisor's reply (None outside a run); ``marks``:
    drop its ``[S1]`` source marks."""
    writer = _writer()
    if writer is None:
        return None
    return TokenStream(writer, allowed_hosts, mapping=mapping, marks=marks)


class AnswerSink:
    """An ``on_token`` callback streaming the answer field of a worker's JSON reply."""

    def __init__(self, stream: TokenStream) -> None:
        self.stream = stream
        self.extractor = AnswerExtractor()

    def __call__(self, piece: str) -> None:
        if self.extractor.state == "done" and "{" in piece:
            # A repair attempt starts a new object: the UI drops the draft it showed.
            self.extractor = AnswerExtractor()
            self.stream.reset("repair")
        self.stream(self.extractor.feed(piece))

    def flush(self) -> None:
        self.stream.flush()


def answer_sink(worker: str, allowed_hosts: Sequence[str] = ()) -> AnswerSink | None:
    """An ``on_token`` callback streaming the answer field of ``worker``'s JSON reply."""
    writer = _writer()
    if writer is None or not _drafts_wanted():
        return None
    return AnswerSink(TokenStream(writer, allowed_hosts, worker=worker))
