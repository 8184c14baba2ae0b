"""Streaming text transforms chained: restore placeholders → strip controls → sanitise links.

Each stage has ``feed(piece) -> str`` and ``finish() -> str`` and the property that the
joined output equals its whole-text function; so does the chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from tandem.agents.privacy.hygiene import StreamSanitizer
from tandem.agents.privacy.redact import restore
from tandem.agents.privacy.terminal import StreamControlStripper

__all__ = ["OutputStream", "StreamRestorer"]

_PARTIAL = re.compile(r"<(?:[A-Z][A-Z0-9_]*)?$")


class Stage(Protocol):
    def feed(self, piece: str) -> str: ...
    def finish(self) -> str: ...


Mapping_ = Mapping[str, str] | Callable[[], Mapping[str, str]]


class StreamRestorer:
    """Puts ``<EMAIL_1>``-style placeholders back as they stream; holds back a partial one.

    Args:
        mapping: Placeholder → original, or a function returning it when text is released
            (a step's redactor may add placeholders while the reply streams).
    """

    def __init__(self, mapping: Mapping_) -> None:
        self._mapping = mapping
        self._buf = ""

    def _restore(self, text: str) -> str:
        mapping = self._mapping() if callable(self._mapping) else self._mapping
        return restore(text, dict(mapping)) if mapping and text else text

    def feed(self, piece: str) -> str:
        self._buf += piece
        m = _PARTIAL.search(self._buf)
        cut = m.start() if m else len(self._buf)
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return self._restore(out)

    def finish(self) -> str:
        out, self._buf = self._buf, ""
        return self._restore(out)


class OutputStream:
    """What a user sees of a streamed answer: restored, control-free, links neutralised.

    The joined output equals ``sanitize_output(strip_controls(restore(text)))`` of the
    whole text (what :func:`~tandem.agents.privacy.policy.answer_text` gives the final
    answer), so a streamed answer never shows what the final one does not.
    """

    def __init__(
        self,
        mapping: Mapping_ | None = None,
        allowed_hosts: Iterable[str] = (),
        *,
        terminal: bool = True,
    ) -> None:
        self.stages: list[Stage] = []
        if mapping:
            self.stages.append(StreamRestorer(mapping))
        if terminal:
            self.stages.append(StreamControlStripper())
        self.stages.append(StreamSanitizer(allowed_hosts))

    def feed(self, piece: str) -> str:
        for stage in self.stages:
            piece = stage.feed(piece)
        return piece

    def finish(self) -> str:
        out = ""
        for stage in self.stages:
            out = stage.feed(out) + stage.finish() if out else stage.finish()
        return out
