"""What part of the streamed tokens may go out now, so the stream ends as the final answer."""

from __future__ import annotations

import re

__all__ = ["StreamText"]

# A placeholder the privacy guard put in place of a sensitive value (``<EMAIL_1>``):
# the final answer has the value restored, so streaming stops at one.
_OPEN = re.compile(r"<[A-Z_]*\d*$")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


class StreamText:
    """Reconcile live tokens with the final answer text.

    * Supervisor tokens go out as they come, except a possible placeholder (``<EMAIL_1>``),
      which is held until it is complete; a complete one stops live streaming (the final
      text has the value restored).
    * A specialist's draft (``draft=True``) is held: the confidence check may still escalate
      it, and an OpenAI stream cannot take text back. It goes out with the final answer.
    * :meth:`finish` returns what is left to send: the rest of the final text when what went
      out is its prefix; otherwise ``consistent`` is False (the caller sends the final text
      in the ``tandem`` extension).
    """

    def __init__(self) -> None:
        self.sent = ""
        self._pending = ""
        self.live = True
        self.reset_after_send = False

    def token(self, text: str, *, draft: bool) -> str:
        """Text to send now for this token (may be empty)."""
        if not self.live or draft:
            return ""
        self._pending += text
        if _PLACEHOLDER.search(self._pending):
            self.live = False
            self._pending = ""
            return ""
        pending = self._pending
        hold = _OPEN.search(pending)
        cut = hold.start() if hold and len(pending) - hold.start() < 48 else len(pending)
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.sent += out
        return out

    def reset(self) -> None:
        """The draft so far is dropped (escalation, a repair)."""
        self._pending = ""
        if self.sent:
            self.reset_after_send = True
            self.live = False

    def finish(self, final: str) -> tuple[str, bool]:
        """``(rest to send, consistent)`` for the final answer ``final``."""
        if final.startswith(self.sent):
            rest = final[len(self.sent) :]
            self.sent = final
            return rest, True
        return "", False
