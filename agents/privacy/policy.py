"""What the egress policy lets out, and what comes back: the guard's text-level rules.

* :func:`detect_query` — the guard's first look at a query (placeholders, counts, time).
* :func:`run_redactor` — a step's redactor: the query's placeholders plus values found in
  retrieved passages (under ``allow``, only those of ``local_only`` workers).
* :func:`passage_findings` — sensitive values in a worker's retrieved passages.
* :func:`prepare_outbound` — query, history and worker results as a supervisor may see them
  (a ``local_only`` worker's answer is withheld from a remote one, whatever the policy);
* :func:`merge_local` — a ``local_only`` worker's part joined to a remote synthesis here;
* :func:`answer_text` — the final text: placeholders restored locally, links neutralised,
  a budget stop stated.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from langchain_core.documents import Document

from tandem.agents.privacy.detect import Detector
from tandem.agents.privacy.hygiene import neutralize_links
from tandem.agents.privacy.redact import Redactor, restore
from tandem.agents.privacy.settings import Policy
from tandem.agents.privacy.terminal import strip_controls
from tandem.workers.records import WorkerResult

__all__ = [
    "BUDGET_NOTE",
    "LOCAL_ONLY_KEY",
    "WITHHELD",
    "answer_text",
    "detect_query",
    "merge_local",
    "passage_findings",
    "prepare_outbound",
    "run_redactor",
]

BUDGET_NOTE = (
    "The run's budget stopped escalation to the large model; this answer comes from the "
    "specialists' results only."
)


WITHHELD = (
    "(answered on the user's machine by a local-only specialist: its answer stays there and "
    "is added to yours after you reply; do not answer this part)"
)
"""What a remote supervisor sees instead of a ``local_only`` worker's answer."""

LOCAL_ONLY_KEY = "tandem_local_only"
"""Set (True) in the ``additional_kwargs`` of the thread messages of a turn whose answer drew
on a ``local_only`` worker: a remote model never sees that turn in the history."""


def withhold(results: Sequence[WorkerResult], private: Collection[str]) -> list[WorkerResult]:
    """``results`` with every ``local_only`` worker's answer replaced by :data:`WITHHELD`."""
    return [
        r.model_copy(update={"answer": WITHHELD, "citations": [], "reason": "", "status": "ok"})
        if r.worker in private
        else r
        for r in results
    ]


def merge_local(draft: str, private: Sequence[WorkerResult]) -> str:
    """A remote synthesis with the ``local_only`` parts joined on this machine."""
    parts = [f"{r.answer} [{r.worker}]" for r in private if r.status == "ok" and r.answer]
    if not parts:
        return draft
    return "\n\n".join(p for p in (draft.strip(), *parts) if p)


def detect_query(detector: Detector, text: str) -> tuple[Redactor, str, dict[str, int], float]:
    """Redact ``text`` with ``detector``; also returns counts by type and milliseconds."""
    started = time.perf_counter()
    redactor = Redactor(detector=detector)
    redacted = redactor.redact(text)
    ms = (time.perf_counter() - started) * 1000
    return redactor, redacted, dict(redactor.last_counts), round(ms, 2)


def run_redactor(
    mapping: dict[str, str],
    held: Sequence[Sequence[str]],
    *,
    policy: Policy | None,
    detector: Detector,
    private_workers: Collection[str],
) -> Redactor:
    """A step's redactor: the query's placeholders plus values held from passages.

    Args:
        mapping: The query's placeholders (``GuardReport.mapping``).
        held: ``[entity, value, worker]`` found in retrieved passages so far.
        policy: The run's policy; under ``allow`` only a ``local_only`` worker's values
            are held back.
        detector: The configured detector.
        private_workers: Workers with ``sensitivity = "local_only"``.
    """
    redactor = Redactor(mapping, detector)
    allow = policy == "allow"
    for item in held:
        if not allow or (len(item) > 2 and item[2] in private_workers):
            redactor.add(item[0], item[1])
    return redactor


def passage_findings(
    detector: Detector, worker: str, passages: Sequence[Document]
) -> list[tuple[str, str, str]]:
    """``(entity, value, worker)`` for each distinct sensitive value in ``passages``."""
    found: list[tuple[str, str, str]] = []
    for doc in passages:
        for f in detector.find(doc.page_content):
            if (f.type, f.text, worker) not in found:
                found.append((f.type, f.text, worker))
    return found


def prepare_outbound(
    query: str,
    history: str,
    results: Sequence[WorkerResult],
    *,
    remote: bool,
    policy: Policy,
    redactor: Redactor | None,
    private_workers: Collection[str],
    allowed_link_hosts: Sequence[str],
) -> tuple[str, str, list[WorkerResult]]:
    """Query, history and worker results as a supervisor may see them.

    Links in worker answers are neutralised whatever the policy (they are model output
    passed to another model). For a remote supervisor, a ``local_only`` worker's answer is
    replaced by :data:`WITHHELD` whatever the policy (pattern detection cannot see
    everything such a store holds); under ``redact``/``ask`` everything else is redacted;
    under ``allow`` only values found in a ``local_only`` worker's passages are held back,
    in this turn's results and in the history (an earlier answer may quote them). Turns
    that drew on a ``local_only`` worker are left out of ``history`` by the caller.

    Args:
        remote: Whether the supervisor is remote (``redactor`` is needed only then).
    """
    results = [
        r.model_copy(update={"answer": neutralize_links(r.answer, allowed_link_hosts)})
        for r in results
    ]
    if not remote or redactor is None:
        return query, history, results
    results = withhold(results, private_workers)
    if policy in ("redact", "ask"):
        query, history = redactor.redact(query), redactor.redact(history)
        results = [r.model_copy(update={"answer": redactor.redact(r.answer)}) for r in results]
        return query, history, results
    history = redactor.redact(history, detect=False)
    results = [
        r.model_copy(update={"answer": redactor.redact(r.answer, detect=False)}) for r in results
    ]
    return query, history, results


def answer_text(
    draft: str, mapping: dict[str, str], allowed_link_hosts: Sequence[str], budget_stop: str
) -> str:
    """The draft with placeholders restored locally, control characters stripped, links
    neutralised, a budget stop stated (what a streamed answer shows, token by token)."""
    text = restore(draft, mapping)
    text = neutralize_links(strip_controls(text), allowed_link_hosts)
    if budget_stop and BUDGET_NOTE not in text:
        text = f"{text}\n\n{BUDGET_NOTE}".strip()
    return text
