"""Sensitive-span detection and reversible redaction, done locally.

Detects emails, phone numbers, payment card numbers (Luhn-checked), IBANs
(mod-97-checked), IPv4 addresses, US-style national ids and API keys/tokens.
Redaction replaces each distinct value with a stable placeholder
(``<EMAIL_1>``) so remote models see consistent text; :func:`restore` puts the
originals back locally.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Finding", "GuardReport", "Redactor", "find_sensitive", "restore"]

EntityType = Literal["EMAIL", "PHONE", "CARD", "IBAN", "IP", "NATIONAL_ID", "API_KEY"]


def _luhn(digits: str) -> bool:
    nums = [int(d) for d in digits if d.isdigit()]
    if not 13 <= len(nums) <= 19:
        return False
    total = 0
    for i, n in enumerate(reversed(nums)):
        if i % 2:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
    return total % 10 == 0


def _iban(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip(text: str) -> bool:
    return all(0 <= int(p) <= 255 for p in text.split("."))


_DETECTORS: list[tuple[EntityType, re.Pattern[str], Callable[[str], bool] | None]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), None),
    (
        "API_KEY",
        re.compile(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|"
            r"xox[abp]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,})\b"
        ),
        None,
    ),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), _iban),
    ("CARD", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _luhn),
    ("NATIONAL_ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), None),
    ("IP", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ip),
    ("PHONE", re.compile(r"(?<![\w+(])[+(]?\d[\d ()-]{7,}\d\b"), None),
]


_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4}")


class Finding(BaseModel):
    """One sensitive span."""

    type: EntityType
    start: int
    end: int
    text: str = Field(repr=False)


def find_sensitive(text: str) -> list[Finding]:
    """Non-overlapping sensitive spans in ``text``, in order (earlier detectors win overlaps)."""
    found: list[Finding] = []
    for kind, pattern, check in _DETECTORS:
        for m in pattern.finditer(text):
            if check is not None and not check(m.group()):
                continue
            if kind == "PHONE" and (
                sum(c.isdigit() for c in m.group()) < 8 or _DATE.fullmatch(m.group())
            ):
                continue
            if any(m.start() < f.end and f.start < m.end() for f in found):
                continue
            found.append(Finding(type=kind, start=m.start(), end=m.end(), text=m.group()))
    return sorted(found, key=lambda f: f.start)


class GuardReport(BaseModel):
    """What the guard found in a query and what may leave the machine."""

    policy: Literal["redact", "local_only", "allow"] = "redact"
    """The egress policy in force for this run."""
    findings: dict[str, int] = Field(default_factory=dict)
    """Count of sensitive spans by type."""
    redacted_query: str = ""
    """The query with placeholders, as a remote model would see it."""
    mapping: dict[str, str] = Field(default_factory=dict, repr=False)
    """Placeholder → original (kept locally, used to restore the answer)."""
    supervisor_where: Literal["local", "remote"] = "local"
    """Where the supervisor chosen for this run runs."""


class Redactor:
    """Replaces sensitive values by stable placeholders, remembering the mapping."""

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapping = dict(mapping or {})
        self._by_value = {v: k for k, v in self.mapping.items()}

    def redact(self, text: str) -> str:
        out, last = [], 0
        for f in find_sensitive(text):
            placeholder = self._by_value.get(f.text)
            if placeholder is None:
                n = 1 + sum(1 for k in self.mapping if k.startswith(f"<{f.type}_"))
                placeholder = f"<{f.type}_{n}>"
                self.mapping[placeholder] = f.text
                self._by_value[f.text] = placeholder
            out.append(text[last : f.start])
            out.append(placeholder)
            last = f.end
        out.append(text[last:])
        return "".join(out)


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put original values back in place of placeholders."""
    for placeholder, original in mapping.items():
        text = text.replace(placeholder, original)
    return text
