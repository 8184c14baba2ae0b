"""Settings of the privacy guard (``[privacy]``), a field of :class:`~tandem.graphs.TandemConfig`.

They live here, next to the code that uses them; the cost settings (``[cost]``) live in
:mod:`tandem.agents.cost`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.agents.privacy.endpoints import parse_trusted_host

__all__ = [
    "DEFAULT_LOCAL_SUPERVISOR",
    "DEFAULT_THRESHOLDS",
    "PatternSpec",
    "Policy",
    "PrivacySettings",
]

Policy = Literal["redact", "local_only", "ask", "allow"]
"""What may leave the machine for a remote model."""

DEFAULT_LOCAL_SUPERVISOR = "embedded/qwen2.5-coder-1.5b"

DEFAULT_THRESHOLDS: dict[str, float] = {
    "EMAIL": 0.5,
    "PHONE": 0.4,
    "CARD": 0.5,
    "IBAN": 0.5,
    "IP": 0.5,
    "NATIONAL_ID": 0.3,
    "API_KEY": 0.5,
    "SECRET": 0.5,
    "PASSPORT": 0.5,
    "PASSWORD": 0.5,
    "DATE_OF_BIRTH": 0.5,
    "ADDRESS": 0.5,
    "PERSON": 0.5,
}
"""Per-entity minimum scores (Presidio's recognizers score differently: phone ~0.4)."""

_ENTITY = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")


def _check_entity(name: str) -> str:
    if not _ENTITY.match(name) or re.search(r"_\d+$", name):
        raise ValueError(
            f"'{name}' is not a valid entity name; use UPPER_CASE letters and digits, "
            "not ending in _<number> (e.g. 'EMPLOYEE_ID')"
        )
    return name


class PatternSpec(BaseModel):
    """A user-defined sensitive pattern (``[[privacy.patterns]]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity: str
    """Entity type reported and used in placeholders (``EMPLOYEE_ID`` → ``<EMPLOYEE_ID_1>``)."""
    regex: str
    """A Python regular expression; every match is sensitive."""
    score: float = Field(default=0.9, ge=0.0, le=1.0)
    """Score given to a match (compared with the entity's threshold)."""

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        return _check_entity(value)

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError("the pattern matches the empty string")
        return value


class PrivacySettings(BaseModel):
    """What may leave the machine (``[privacy]``)."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "redact"
    """``redact``: remote models see placeholders (``<EMAIL_1>``) for sensitive spans, restored
    locally in the final answer; ``local_only``: nothing is sent to a remote model (a local model
    supervises); ``ask``: like ``redact``, but every remote call first pauses the graph (LangGraph
    ``interrupt``) showing exactly what would be sent — a refusal continues locally;
    ``allow``: send as is."""
    local_supervisor: str = DEFAULT_LOCAL_SUPERVISOR
    """The local model that takes the supervisor's role under ``local_only`` or after a refusal."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-entity minimum detection scores, merged over the defaults (``PHONE = 0.4`` …)."""
    patterns: list[PatternSpec] = Field(default_factory=list)
    """Extra sensitive patterns (``[[privacy.patterns]] entity = "EMPLOYEE_ID"
    regex = "EMP-\\d{6}"``)."""
    deny_lists: dict[str, list[str]] = Field(default_factory=dict)
    """Terms that are always sensitive, by entity (``PROJECT = ["Falcon", "Osprey"]``);
    matched as whole words, case-insensitively."""
    scan_passages: bool = True
    """Also scan retrieved passages; values found there are redacted wherever they reappear."""
    scan_local_runs: bool = False
    """Scan queries and passages even when every model (supervisor, workers, embeddings) runs
    on this machine or a trusted host. Nothing can leave then, so by default nothing is
    scanned and the detector is never loaded (it costs ~2–3 s of start-up per process); turn
    this on to have the answer report sensitive spans anyway."""
    audit_payloads: bool = False
    """Store the full (redacted) payload of each remote call in the egress log; by default only
    its SHA-256 and size are kept."""
    allowed_link_hosts: list[str] = Field(default_factory=list)
    """Hosts whose links and images may appear in model output; links to any other host are
    neutralised (markdown images/links are a known exfiltration channel)."""
    trusted_hosts: list[str] = Field(default_factory=list)
    """Hosts that are yours although not this machine (``gpu-box.lan``, ``gpu-box:11434``,
    ``10.0.0.0/24``): a self-hosted engine (Ollama, vLLM …) there counts as local, and so does
    an OpenAI-compatible server (``openai/…`` with this ``api_base``) — list a loopback
    ``host:port`` here only if the model really runs on this machine, not a proxy or tunnel
    to a hosted API. ``[[ollama.hosts]]`` entries are not trusted by being listed there."""
    ner: Literal["auto", "on", "off"] = "auto"
    """Named-entity recognition for person names and addresses (spaCy's small English
    pipeline, ``pip install 'tandem[ner]'``): ``auto`` uses it when installed."""

    @field_validator("trusted_hosts")
    @classmethod
    def _trusted(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_trusted_host(entry)
        return [e.strip() for e in value]

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for name, score in value.items():
            _check_entity(name)
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"threshold for {name} must be between 0 and 1")
        return value

    @field_validator("deny_lists")
    @classmethod
    def _deny(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, terms in value.items():
            _check_entity(name)
            if any(not t.strip() for t in terms):
                raise ValueError(f"deny list {name} contains an empty term")
        return value

    def threshold(self, entity: str) -> float:
        """The minimum score for ``entity``."""
        return self.thresholds.get(entity, DEFAULT_THRESHOLDS.get(entity, 0.5))
