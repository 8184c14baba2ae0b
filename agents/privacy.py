"""Sensitive-span detection and reversible redaction, done locally.

Detection (:func:`find_sensitive`, :class:`Detector`) runs Presidio's pattern
recognizers offline plus tandem's own (API keys, high-entropy secrets) and the
user's patterns and deny-lists: emails, phone numbers, payment cards
(Luhn-checked), IBANs (mod-97-checked), IP addresses, national ids, keys and
tokens. Redaction replaces each distinct value with a stable placeholder
(``<EMAIL_1>``) so remote models see consistent text; :func:`restore` puts the
originals back locally.

Under the ``ask`` policy the graph pauses before each remote call with an
:class:`EgressRequest` as the LangGraph interrupt value; resume it with
``Command(resume=True)`` to send or ``Command(resume=False)`` to continue locally.
"""

from __future__ import annotations

import re
from typing import Literal, TypedDict

from pydantic import BaseModel, Field

from tandem.agents._detect import Detector, Finding, detector_for
from tandem.agents._privacy_config import Policy

__all__ = [
    "Detector",
    "EgressRequest",
    "Finding",
    "GuardReport",
    "Redactor",
    "detector_for",
    "find_sensitive",
    "restore",
]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_(\d+)>")
"""A redaction placeholder such as ``<EMAIL_1>``."""


def find_sensitive(text: str, detector: Detector | None = None) -> list[Finding]:
    """Non-overlapping sensitive spans in ``text``, in order.

    Args:
        text: Any text (a query, a worker's answer, a retrieved passage).
        detector: The detector to use (default: the one for default ``[privacy]`` settings).
    """
    return (detector or detector_for()).find(text)


class GuardReport(BaseModel):
    """What the guard found in a query and what may leave the machine."""

    policy: Policy = "redact"
    """The egress policy in force for this run."""
    findings: dict[str, int] = Field(default_factory=dict)
    """Count of sensitive spans by type."""
    redacted_query: str = ""
    """The query with placeholders, as a remote model would see it."""
    mapping: dict[str, str] = Field(default_factory=dict, repr=False)
    """Placeholder → original (kept locally, used to restore the answer)."""
    supervisor_where: Literal["local", "remote"] = "local"
    """Where the supervisor chosen for this run runs."""
    detect_ms: float = 0.0
    """Milliseconds spent detecting sensitive spans in the query."""


class EgressRequest(TypedDict):
    """The interrupt value under ``policy = "ask"``: exactly what would be sent.

    Resume the graph with ``Command(resume=True)`` to send it, ``Command(resume=False)``
    to refuse (the run then continues with the local supervisor, nothing is sent).
    """

    kind: Literal["egress_approval"]
    """Always ``"egress_approval"`` (tells this interrupt apart from others)."""
    model: str
    """The remote model that would receive the payload."""
    host: str | None
    """Its endpoint host, when known."""
    purpose: str
    """What the call is for: ``plan``, ``synthesize`` or ``answer``."""
    messages: list[dict[str, str]]
    """The chat messages, exactly as they would be sent (already redacted)."""
    bytes: int
    """Size of the payload in bytes."""
    redacted: dict[str, int]
    """Placeholders in the payload, by entity type."""


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
        self.last_counts: dict[str, int] = {}

    def add(self, kind: str, value: str) -> str:
        """Register ``value`` as sensitive; returns its placeholder."""
        placeholder = self._by_value.get(value)
        if placeholder is None:
            n = 1 + sum(1 for k in self.mapping if k.startswith(f"<{kind}_"))
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
        spans: list[tuple[int, int, str, str]] = (
            [(f.start, f.end, f.type, f.text) for f in find_sensitive(text, self.detector)]
            if detect
            else []
        )
        # Known values, longest first, where detection did not already cover them.
        for value in sorted(self._by_value, key=len, reverse=True):
            if len(value) < 3:
                continue
            for m in re.finditer(re.escape(value), text):
                if not any(m.start() < e and s < m.end() for s, e, _, _ in spans):
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


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put original values back in place of placeholders."""
    if not mapping:
        return text
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
