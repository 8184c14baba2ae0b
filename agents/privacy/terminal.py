"""Terminal hygiene: strip control sequences from text before it reaches a terminal.

Model output and echoed queries can carry escape sequences that a terminal obeys: clear
the screen (``ESC [2J``), set the window title or write the clipboard (OSC ``ESC ]0;…``,
``ESC ]52;…``), plant hyperlinks (OSC 8), move the cursor to overwrite what was shown, or
report the terminal state back as typed input. :func:`strip_controls` removes

* ANSI escape sequences: CSI (``ESC [`` … final byte, and 8-bit ``U+009B``), OSC
  (``ESC ]`` … BEL/ST), DCS/SOS/PM/APC (``ESC P``/``X``/``^``/``_`` … ST), and two-byte
  escapes (``ESC`` + one character);
* every other C0 control except newline and tab (carriage return, backspace, BEL …),
  DEL, and the C1 controls ``U+0080``–``U+009F``;
* bidirectional overrides and isolates (``U+202A``–``U+202E``, ``U+2066``–``U+2069``),
  which reorder what is displayed ("Trojan Source").

A string sequence (OSC, DCS …) left open for more than :data:`MAX_STRING` characters is
cut at its introducer, so that an unterminated one cannot swallow the rest of the text.
:class:`StreamControlStripper` does the same on a stream: a piece that ends inside a
sequence holds back only that sequence; the joined output equals :func:`strip_controls`
of the whole.
"""

from __future__ import annotations

import re

__all__ = ["MAX_STRING", "StreamControlStripper", "strip_controls"]

MAX_STRING = 4096
"""Longest OSC/DCS/SOS/PM/APC string removed as one sequence."""

_CSI_BODY = re.compile(r"[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]")
_STRING_END = re.compile(r"\x07|\x1b\\|\x9c")
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_PLAIN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "]")
_NEED_MORE = -1


def _sequence_end(s: str, i: int, final: bool) -> int:
    """End of the control sequence starting at ``s[i]`` (a C0/C1 control), or -1."""
    n = len(s)
    c = s[i]
    if c == "\x1b":
        if i + 1 >= n:
            return i + 1 if final else _NEED_MORE
        d = s[i + 1]
        if d == "[":
            kind, body = "csi", i + 2
        elif d in "]PX^_":
            kind, body = "string", i + 2
        elif "\x20" <= d <= "\x2f":  # intermediate bytes, then a final byte
            j = i + 1
            while j < n and "\x20" <= s[j] <= "\x2f":
                j += 1
            if j >= n:
                return n if final else _NEED_MORE
            return j + 1 if "\x30" <= s[j] <= "\x7e" else j
        elif "\x30" <= d <= "\x7e":
            return i + 2
        else:
            return i + 1
    elif c == "\x9b":
        kind, body = "csi", i + 1
    elif c in "\x9d\x90\x98\x9e\x9f":
        kind, body = "string", i + 1
    else:
        return i + 1
    if kind == "csi":
        m = _CSI_BODY.match(s, body)
        if m:
            return m.end()
        j = body
        while j < n and "\x20" <= s[j] <= "\x3f":
            j += 1
        if j >= n:
            return n if final else _NEED_MORE
        return j  # malformed: drop the introducer and the parameters read so far
    m = _STRING_END.search(s, body, min(n, body + MAX_STRING + 1))
    if m:
        return m.end()
    if n - body > MAX_STRING:
        return body  # unterminated: drop the introducer only
    if s.endswith("\x1b") and not final:
        return _NEED_MORE
    return n if final else _NEED_MORE


def _strip(s: str, *, final: bool) -> tuple[str, int]:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        m = _PLAIN.search(s, i)
        if m is None:
            out.append(s[i:])
            return "".join(out), n
        out.append(s[i : m.start()])
        i = m.start()
        c = s[i]
        if c in _BIDI or c not in "\x1b\x9b\x9d\x90\x98\x9e\x9f":
            i += 1
            continue
        end = _sequence_end(s, i, final)
        if end == _NEED_MORE:
            return "".join(out), i
        i = end
    return "".join(out), n


def strip_controls(text: str) -> str:
    """``text`` without escape sequences and control characters (newline and tab stay)."""
    if not _PLAIN.search(text):
        return text
    return _strip(text, final=True)[0]


class StreamControlStripper:
    """:func:`strip_controls` for a stream; ``"".join`` of the results equals it."""

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out, used = _strip(self._buf, final=False)
        self._buf = self._buf[used:]
        return out

    def finish(self) -> str:
        out, _ = _strip(self._buf, final=True)
        self._buf = ""
        return out
