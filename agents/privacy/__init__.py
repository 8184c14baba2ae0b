"""Privacy: what may leave the machine, and the record of what did.

One subpackage, one concern each:

* :mod:`.settings` — ``[privacy]``: the policy, thresholds, patterns, deny-lists;
* :mod:`.detect` — sensitive-span detection (Presidio's pattern recognizers, offline);
* :mod:`.redact` — reversible redaction to ``<EMAIL_1>``-style placeholders;
* :mod:`.hygiene` — links and images in model output neutralised;
* :mod:`.egress` — the egress audit log (one JSONL record per remote call);
* :mod:`.policy` — what the policy lets out (query, history, worker results) and back;
* :mod:`.guard` — :class:`GuardedLLM`, the supervisor model with budgets, redaction,
  ``ask`` approval and the audit, its collaborators passed in a :class:`GuardScope`.

Under the ``ask`` policy the graph pauses before each remote call with an
:class:`EgressRequest` as the LangGraph interrupt value; resume it with
``Command(resume=True)`` to send or ``Command(resume=False)`` to continue locally.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.agents.privacy.detect import Detector, Finding, detector_for
    from tandem.agents.privacy.egress import (
        EgressRecord,
        EgressSummary,
        egress_log_path,
        read_egress_log,
        summarize_egress,
    )
    from tandem.agents.privacy.guard import (
        EgressAudit,
        EgressRequest,
        GuardedLLM,
        GuardReport,
        GuardScope,
        NoEgressLLM,
    )
    from tandem.agents.privacy.hygiene import neutralize_links
    from tandem.agents.privacy.redact import PLACEHOLDER, Redactor, find_sensitive, restore
    from tandem.agents.privacy.settings import PatternSpec, Policy, PrivacySettings

# Re-exports load on first use (PEP 562): importing one light module of the package
# (its errors, a setting) must not pay for every heavy one (chromadb, langgraph, …).
_LAZY = {
    "Detector": "tandem.agents.privacy.detect",
    "Finding": "tandem.agents.privacy.detect",
    "detector_for": "tandem.agents.privacy.detect",
    "EgressRecord": "tandem.agents.privacy.egress",
    "EgressSummary": "tandem.agents.privacy.egress",
    "egress_log_path": "tandem.agents.privacy.egress",
    "read_egress_log": "tandem.agents.privacy.egress",
    "summarize_egress": "tandem.agents.privacy.egress",
    "EgressAudit": "tandem.agents.privacy.guard",
    "EgressRequest": "tandem.agents.privacy.guard",
    "GuardedLLM": "tandem.agents.privacy.guard",
    "GuardReport": "tandem.agents.privacy.guard",
    "GuardScope": "tandem.agents.privacy.guard",
    "NoEgressLLM": "tandem.agents.privacy.guard",
    "neutralize_links": "tandem.agents.privacy.hygiene",
    "PLACEHOLDER": "tandem.agents.privacy.redact",
    "Redactor": "tandem.agents.privacy.redact",
    "find_sensitive": "tandem.agents.privacy.redact",
    "restore": "tandem.agents.privacy.redact",
    "PatternSpec": "tandem.agents.privacy.settings",
    "Policy": "tandem.agents.privacy.settings",
    "PrivacySettings": "tandem.agents.privacy.settings",
}

__all__ = [
    "PLACEHOLDER",
    "Detector",
    "EgressAudit",
    "EgressRecord",
    "EgressRequest",
    "EgressSummary",
    "Finding",
    "GuardReport",
    "GuardScope",
    "GuardedLLM",
    "NoEgressLLM",
    "PatternSpec",
    "Policy",
    "PrivacySettings",
    "Redactor",
    "detector_for",
    "egress_log_path",
    "find_sensitive",
    "neutralize_links",
    "read_egress_log",
    "restore",
    "summarize_egress",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
