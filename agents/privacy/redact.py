"""Reversible redaction, done locally.

Detection (:func:`find_sensitive`, :class:`~tandem.agents.privacy.detect.Detector`) runs
Presidio's pattern recognizers offline plus tandem's own (API keys, high-entropy secrets)
and the user's patterns and deny-lists: emails, phone numbers, payment cards
(Luhn-checked), IBANs (mod-97-checked), IP addresses, national ids, keys and tokens.
Redaction replaces each distinct value with a stable placeholder (``<EMAIL_1>``) so remote
models see consistent text; :func:`restore` puts the originals back locally.
"""

from __future__ import annotations

import re

from tandem.agents.privacy.detect import Detector, Finding, detector_for

__all__ = ["PLACEHOLDER", "Redactor", "find_sensitive", "restore"]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_(\d+)>")
"""A redaction placeholder such as ``<EMAIL_1>``."""


def find_sensitive(text: str, detector: Detector | None = None) -> list[Finding]:
    """Non-overlapping sensitive spans in ``text``, in order.

    Args:
        text: Any text (a query, a worker's answer, a retrieved passage).
        detector: The detector to use (default: the one for default ``[privacy]`` settings).
    """
    return (detector or detector_for()).find(text)


class Redactor:
    """Replaces sensitive values by stable placeholders, remembering the mapping.

    Values already in the mapping (or :meth:`add` ed, e.g. found in a retrieved passage)
    are replaced wherever they reappear, even where detection alone would miss them.

    Args:
        mapping: Placeholder → original, from an earlier redaction of the same run.
        detector: The detector (default: the one for default settings).
    """

    def __init__(
        self, mapping: dict[str, str] | None = None, detector: Detector | None = None
    ) -> None:
        self.mapping = dict(mapping or {})
        self.detector = detector
        self._by_value = {v: k for k, v in self.mapping.items()}
        self._reserved: set[str] = set()
        """Placeholder-like strings seen in texts that are not ours (never reused)."""
        self.last_counts: dict[str, int] = {}

    def add(self, kind: str, value: str) -> str:
        """Register ``value`` as sensitive; returns its placeholder."""
        placeholder = self._by_value.get(value)
        if placeholder is None:
            n = 1 + sum(1 for k in self.mapping if k.startswith(f"<{kind}_"))
            while f"<{kind}_{n}>" in self.mapping or f"<{kind}_{n}>" in self._reserved:
                n += 1
            placeholder = f"<{kind}_{n}>"
            self.mapping[placeholder] = value
            self._by_value[value] = placeholder
        return placeholder

    def redact(self, text: str, *, detect: bool = True) -> str:
        """``text`` with every detected or known sensitive value replaced by its placeholder.

        Args:
            text: The text to redact.
            detect: False replaces only values already known (mapping / :meth:`add`).
        """
        # Placeholders already in the text (a reply quoting a redacted prompt) stay as they
        # are: a recognizer may match one ("password is <PASSWORD_1>"), and a placeholder for
        # a placeholder would not be restored.
        kept = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
        self._reserved.update(
            m.group(0) for m in PLACEHOLDER.finditer(text) if m.group(0) not in self.mapping
        )
        spans: list[tuple[int, int, str, str]] = []
        if detect:
            for f in find_sensitive(text, self.detector):
                for start, end in _outside(f.start, f.end, kept):
                    piece = text[start:end]
                    if piece.strip(" \t\n,.;:'\"()") and (end - start >= 3 or start == f.start):
                        spans.append((start, end, f.type, piece))
        # Known values, longest first, where detection did not already cover them.
        taken = [*kept]
        for value in sorted(self._by_value, key=len, reverse=True):
            if len(value) < 3:
                continue
            for m in re.finditer(re.escape(value), text):
                if not any(m.start() < e and s < m.end() for s, e in taken) and not any(
                    m.start() < e and s < m.end() for s, e, _, _ in spans
                ):
                    known = PLACEHOLDER.fullmatch(self._by_value[value])
                    spans.append((m.start(), m.end(), known.group(1) if known else "PII", value))
        out, last = [], 0
        counts: dict[str, int] = {}
        for start, end, kind, value in sorted(spans):
            out.append(text[last:start])
            out.append(self.add(kind, value))
            counts[kind] = counts.get(kind, 0) + 1
            last = end
        out.append(text[last:])
        self.last_counts = counts
        return "".join(out)


def _outside(start: int, end: int, kept: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` outside the ``kept`` spans."""
    parts = [(start, end)]
    for ks, ke in kept:
        nxt = []
        for s, e in parts:
            if ke <= s or e <= ks:
                nxt.append((s, e))
                continue
            if s < ks:
                nxt.append((s, ks))
            if ke < e:
                nxt.append((ke, e))
        parts = nxt
    return parts


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put original values back in place of placeholders."""
    if not mapping:
        return text
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
