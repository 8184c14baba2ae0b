"""What the egress policy lets out, and what comes back: the guard's text-level rules.

* :func:`detect_query` — the guard's first look at a query (placeholders, counts, time).
* :func:`run_redactor` — a step's redactor: the query's placeholders plus values found in
  retrieved passages (under ``allow``, only those of ``local_only`` workers).
* :func:`passage_findings` — sensitive values in a worker's retrieved passages.
* :func:`prepare_outbound` — query, history and worker results as a supervisor may see them.
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
from tandem.workers.memory import is_learned
from tandem.workers.records import WorkerResult

__all__ = [
    "BUDGET_NOTE",
    "WITHHELD_LEARNED",
    "answer_text",
    "detect_query",
    "passage_findings",
    "prepare_outbound",
    "run_redactor",
]

WITHHELD_LEARNED = (
    "(withheld: this specialist is local_only and answered from its learned memory, which "
    "never leaves the machine)"
)
"""What a remote supervisor sees instead of a ``local_only`` worker's answer from memory."""

BUDGET_NOTE = (
    "The run's budget stopped escalation to the large model; this answer comes from the "
    "specialists' results only."
)


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
    passed to another model). For a remote supervisor, under ``redact``/``ask``
    everything is redacted; under ``allow`` only what came from a ``local_only`` worker's
    store is held back, in this turn's results and in the history (an earlier answer may
    quote it).

    Args:
        remote: Whether the supervisor is remote (``redactor`` is needed only then).
    """
    results = [
        r.model_copy(update={"answer": neutralize_links(r.answer, allowed_link_hosts)})
        for r in results
    ]
    if not remote or redactor is None:
        return query, history, results
    # A local_only worker's learning records are as sensitive as its store, and an answer
    # taken from one of its learned passages would quote the record: it is withheld.
    results = [
        r.model_copy(update={"answer": WITHHELD_LEARNED, "citations": []})
        if r.worker in private_workers and any(is_learned(c.source) for c in r.citations)
        else r
        for r in results
    ]
    if policy in ("redact", "ask"):
        query, history = redactor.redact(query), redactor.redact(history)
        results = [r.model_copy(update={"answer": redactor.redact(r.answer)}) for r in results]
        return query, history, results
    history = redactor.redact(history, detect=False)
    results = [
        r.model_copy(update={"answer": redactor.redact(r.answer)})
        if r.worker in private_workers
        else r
        for r in results
    ]
    return query, history, results


def answer_text(
    draft: str, mapping: dict[str, str], allowed_link_hosts: Sequence[str], budget_stop: str
) -> str:
    """The draft with placeholders restored locally, links neutralised, a budget stop stated."""
    text = restore(draft, mapping)
    text = neutralize_links(text, allowed_link_hosts)
    if budget_stop and BUDGET_NOTE not in text:
        text = f"{text}\n\n{BUDGET_NOTE}".strip()
    return text
