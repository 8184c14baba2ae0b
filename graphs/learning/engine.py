"""The learning loop of one runtime: record, keep (answer memory), route better, forget.

``Runtime.learning`` is a :class:`Learning`. The graph's ``finish`` node calls
:meth:`Learning.record_run`; the REPL's ``/keep`` and ``/drop``, the ``tandem memory`` commands
and Python callers use the rest. Nothing here calls a model other than the local embedder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tandem.agents.privacy import Redactor, detector_for
from tandem.agents.router import LabelledRoute
from tandem.graphs._followup import context_query
from tandem.graphs.learning.recorder import (
    REFUSAL,
    TAG,
    Part,
    attribute,
    checks,
    redact_record,
    routing_candidate,
)
from tandem.graphs.learning.records import (
    Candidate,
    LearnedPassage,
    LearningReport,
    LearningSettings,
    Record,
)
from tandem.graphs.learning.store import LearningStore, learning_dir
from tandem.workers.errors import UsageError
from tandem.workers.memory import is_learned, learned_metadata, learned_text
from tandem.workers.spec import WorkerSpec
from tandem.workers.store import WorkerStore

__all__ = ["ROUTING_FILE", "Learning"]

ROUTING_FILE = "routing.jsonl"
"""Approved routing examples, ``tandem eval`` format, in ``<data_dir>/learning/``."""


class LearningHost(Protocol):
    """What the loop needs of a :class:`~tandem.graphs.Runtime`."""

    config: Any
    specs: dict[str, WorkerSpec]
    stores: dict[str, WorkerStore]
    router: Any

    def refit_router(self) -> None: ...


class Learning:
    """Learning records, answer memory and router feedback for one runtime."""

    def __init__(self, rt: LearningHost) -> None:
        self.rt = rt
        self.settings: LearningSettings = rt.config.learning
        self.dir = learning_dir(rt.config.data_dir)
        self.store = LearningStore(self.dir / "learning.sqlite")
        self._synced: set[str] = set()

    @property
    def routing_path(self) -> Path:
        """The file of approved routing examples (the router trains on it)."""
        return self.dir / ROUTING_FILE

    # -- recording ------------------------------------------------------------------
    async def record_run(
        self,
        state: dict[str, Any],
        text: str,
        *,
        thread_id: str | None = None,
    ) -> LearningReport:
        """Write the run's learning records (and apply the memory policy); see recorder.py."""
        report = LearningReport(policy=self.settings.memory)
        report.used = _used(state)
        if not self.settings.record:
            return report
        specs = self.rt.specs
        # What a direct answer had to reach to stay local (the cascade's threshold): a
        # planned attempt below it was as unsure as an escalated one.
        cascade = getattr(self.rt, "cascade", {})
        thresholds = {
            n: cascade[n].threshold if n in cascade else s.min_confidence for n, s in specs.items()
        }
        parts, answered = attribute(state, text, thresholds)
        candidate = routing_candidate(state, parts, answered)
        unrouted = await self._unrouted(state, text)
        if unrouted is not None:
            parts = [unrouted]
            candidate = Candidate(question=str(state["query"]), expected_workers=[unrouted.worker])
        if not parts and candidate is None:
            return report
        seen = _seen(state)
        guard = state.get("guard")
        redactor = Redactor(
            dict(guard.mapping) if guard else {}, detector_for(self.rt.config.privacy)
        )
        route = state["route"]
        model = _source_model(state)
        records: list[Record] = []
        for part in parts:
            spec = specs.get(part.worker)
            passages = seen.get((part.worker, part.instruction)) or seen.get(
                (part.worker, None), []
            )
            if part.kind == "unrouted":  # what the specialist would have seen
                passages = await self._corpus(
                    part.worker, state.get("query_vector"), str(state.get("query") or "")
                )
            result, conflict = checks(part, state, self.settings, passages)
            attempt = part.attempt
            record = Record(
                worker=part.worker,
                kind=part.kind,
                question=str(state["query"]),
                instruction=part.instruction,
                attempt=attempt.answer if attempt else "",
                attempt_status=attempt.status if attempt else "failed",
                attempt_confidence=attempt.confidence if attempt else None,
                p_correct=getattr(attempt, "p_correct", None) if attempt else None,
                attempt_reason=attempt.reason if attempt else "",
                answer=part.text,
                citations=[c for c in (attempt.citations if attempt else [])],
                passages=[p for p in passages if not is_learned(p.source)],
                route_kind=route.kind,
                route_workers=list(route.workers),
                worker_model=(attempt.model if attempt else "") or (spec.model if spec else ""),
                source_model=model,
                thread_id=thread_id,
                sensitivity=spec.sensitivity if spec else "normal",
                checks=result,
                conflict=conflict,
            )
            records.append(self.store.add(redact_record(record, redactor)))
        report.records = [r.id for r in records]
        if candidate is not None:
            sensitive = any(
                getattr(specs.get(w), "sensitivity", "normal") == "local_only"
                for w in candidate.expected_workers
            )
            origin = {"direct": "escalation", "supervisor": "unrouted"}.get(route.kind, "plan")
            cid = self.store.add_candidate(
                candidate,
                origin=origin,
                thread_id=thread_id,
                record_id=records[0].id if records else None,
                sensitivity="local_only" if sensitive else "normal",
            )
            report.routing = [cid]
        if self.settings.memory == "auto":
            good = [r.id for r in records if r.checks_passed]
            report.kept = await self.keep(good, routing=False)
        if self.settings.routing_policy() == "auto" and report.routing:
            stops = state.get("budget_stop") or state.get("egress_denied")
            if not stops and (not records or any(r.checks_passed for r in records)):
                await self.approve_routing(report.routing)
        report.pending = [r for r in report.records if r not in report.kept]
        return report

    async def _unrouted(self, state: dict[str, Any], text: str) -> Part | None:
        """The specialist an answer the supervisor gave alone belongs to, if one clearly does.

        The router found no specialist for the question; it reads the question *with* the
        answer (``[worker]`` tags removed) and the run belongs to a specialist when it routes
        that straight to one, or when one specialist's probability reaches ``[router]
        min_probability`` and at least twice any other's ("What does APR stand for on a
        loan?" with "Annual Percentage Rate" is finance, though general knowledge).
        """
        route = state.get("route")
        if not self.settings.unrouted or route is None or route.kind != "supervisor":
            return None
        body = TAG.sub("", text).strip()
        if state.get("no_answer") or not body or REFUSAL.search(body):
            return None
        try:
            decision, _ = await self.rt.router.decide(f"{state['query']}\n{body}")
        except Exception:  # learning never costs the user the answer
            return None
        worker = _owner(decision, self.rt.config.router.min_probability)
        if worker is None or worker not in self.rt.specs:
            return None
        return Part(worker, "unrouted", context_query(state), text, None)

    async def _corpus(self, worker: str, vector: Any, text: str) -> list[LearnedPassage]:
        """The curated passages ``worker`` would have retrieved for the run's question."""
        store, spec = self.rt.stores.get(worker), self.rt.specs.get(worker)
        if store is None or spec is None or vector is None:
            return []
        try:
            docs = await store.search(
                vector, spec.top_k, query=text, keyword_weight=spec.keyword_weight
            )
        except Exception:
            return []
        return [LearnedPassage.of(d) for d in docs]

    async def memory_route(self, vector: Any) -> tuple[str, str, float] | None:
        """The specialist whose answer memory holds a learned passage at least
        ``trust_memory_above`` close to a question (``vector``): ``(worker, source, score)``.

        The route node asks this when the router found no specialist: an approved answer
        to a question this close is in that specialist's store.
        """
        threshold = self.settings.trust_memory_above
        if threshold is None or self.settings.memory == "off" or vector is None:
            return None
        if not self.store.path.exists():
            return None
        workers = [w for w in self.rt.stores if self.store.kept_ids(w)]
        if not workers:
            return None
        await self.ensure_synced(workers)
        best: tuple[str, str, float] | None = None
        for worker in workers:
            try:
                docs = await self.rt.stores[worker].search_memory(vector, 1)
            except Exception:
                continue
            for d in docs:
                score = float(d.metadata.get("score", -1.0))
                if score >= threshold and (best is None or score > best[2]):
                    best = (worker, str(d.metadata.get("source", "")), score)
        return best

    # -- answer memory -----------------------------------------------------------------
    async def keep(self, ids: Sequence[int], *, routing: bool = True) -> list[int]:
        """Make records answer memory: a passage in their specialist's store.

        A kept record for the same question of the same specialist is replaced (the newest
        answer wins). With ``routing``, the routing examples of those runs are approved too.

        Returns:
            The ids kept.
        """
        kept: list[int] = []
        for rid in ids:
            record = self.store.get(rid)
            if record is None:
                raise UsageError(f"no learning record {rid}", hint="see `tandem memory list`")
            store = self.rt.stores.get(record.worker)
            if store is None:
                raise UsageError(f"record {rid} belongs to '{record.worker}', not configured here")
            older = [
                r.id
                for r in self.store.same_question(record.worker, record.instruction)
                if r.id != rid
            ]
            if older:
                await store.remove_memory([f"learned:{i}" for i in older])
                self.store.set_status(older, "dropped")
            await store.add_memory([_passage(record)])
            self.store.set_status([rid], "kept")
            kept.append(rid)
        if routing and kept:
            await self.approve_routing(self._candidates_of(kept))
        return kept

    async def drop(self, ids: Sequence[int]) -> list[int]:
        """Refuse records as memory (removing a passage already kept); they stay on file."""
        by_worker: dict[str, list[str]] = {}
        for rid in ids:
            record = self.store.get(rid)
            if record is not None and record.status == "kept":
                by_worker.setdefault(record.worker, []).append(record.source)
        for worker, sources in by_worker.items():
            if worker in self.rt.stores:
                await self.rt.stores[worker].remove_memory(sources)
        self.store.set_status(list(ids), "dropped")
        cids = self._candidates_of(ids)
        if cids:
            self.store.set_candidates(cids, "rejected")
            self._routing_changed()
        return list(ids)

    async def forget(self, rid: int) -> Record:
        """Delete a record for good: its passage, its routing example and the row."""
        record = self.store.get(rid)
        if record is None:
            raise UsageError(f"no learning record {rid}", hint="see `tandem memory list`")
        if record.worker in self.rt.stores:
            await self.rt.stores[record.worker].remove_memory([record.source])
        self.store.delete([rid])
        self._routing_changed()
        return record

    async def clear(self, worker: str) -> int:
        """Delete every record and learned passage of ``worker``; returns how many records."""
        if worker not in self.rt.stores:
            known = ", ".join(self.rt.stores)
            raise UsageError(f"no worker named '{worker}'; known: {known}")
        store = self.rt.stores[worker]
        ids = self.store.delete_worker(worker)
        await store.remove_memory(await store.memory_ids())
        self._routing_changed()
        return len(ids)

    async def ensure_synced(self, workers: Sequence[str]) -> None:
        """:meth:`sync` each worker once per process (nothing to do before any record)."""
        if not self.store.path.exists():
            return
        for worker in workers:
            if worker not in self._synced and worker in self.rt.stores:
                await self.sync(worker)

    async def sync(self, worker: str) -> int:
        """Make the worker's learned passages match its kept records (after a store rebuild,
        or records forgotten by another process); returns passages added or removed."""
        store = self.rt.stores[worker]
        want = {f"learned:{i}": i for i in self.store.kept_ids(worker)}
        have = set(await store.memory_ids())
        extra = sorted(have - set(want))
        missing = [want[s] for s in want if s not in have]
        if extra:
            await store.remove_memory(extra)
        passages = []
        for rid in missing:
            record = self.store.get(rid)
            if record is not None:
                passages.append(_passage(record))
        await store.add_memory(passages)
        self._synced.add(worker)
        return len(extra) + len(passages)

    # -- router feedback ---------------------------------------------------------------
    def _candidates_of(self, record_ids: Sequence[int]) -> list[int]:
        if not record_ids:
            return []
        with self.store._db() as db:
            marks = ", ".join("?" for _ in record_ids)
            rows = db.execute(
                f"SELECT id FROM routing WHERE record_id IN ({marks}) AND status = 'candidate'",
                list(record_ids),
            ).fetchall()
        return [int(r[0]) for r in rows]

    async def approve_routing(self, ids: Sequence[int]) -> int:
        """Approve candidate routing examples; the router trains on them (re-fit in process)."""
        n = self.store.set_candidates(list(ids), "approved")
        if n:
            self._routing_changed()
        return n

    async def reject_routing(self, ids: Sequence[int]) -> int:
        """Reject routing examples (an approved one leaves the router's training)."""
        n = self.store.set_candidates(list(ids), "rejected")
        if n:
            self._routing_changed()
        return n

    def _routing_changed(self) -> None:
        """Rewrite the approved examples and let the router train on them (lazily: it fits
        on its next decision, or loads the model cached for exactly this data)."""
        self.write_routing()
        self.rt.refit_router()

    def write_routing(self) -> None:
        """Rewrite ``routing.jsonl`` from the approved examples (atomic)."""
        examples = self.store.routing_examples()
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.routing_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex.model_dump(), ensure_ascii=False) + "\n")
        os.replace(tmp, self.routing_path)

    def routes(self) -> list[LabelledRoute]:
        """The approved routing examples as labelled routes (what the router trains on).

        Lines that are not a labelled route are skipped: this file is the loop's own, and a
        damaged line must not stop the runtime from starting.
        """
        out: list[LabelledRoute] = []
        if not self.routing_path.exists():
            return out
        for line in self.routing_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                question, workers = row["question"], row["expected_workers"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(question, str) and question.strip() and isinstance(workers, list):
                out.append(LabelledRoute(question, tuple(str(w) for w in workers)))
        return out


def _owner(decision: Any, min_probability: float) -> str | None:
    """The one specialist a routing decision points to, if any (see ``_unrouted``)."""
    if decision.kind == "direct" and len(decision.workers) == 1:
        return str(decision.workers[0])
    ranked = sorted(decision.probabilities.items(), key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < min_probability:
        return None
    if len(ranked) > 1 and ranked[0][1] < 2 * ranked[1][1]:
        return None
    return str(ranked[0][0])


def _passage(record: Record) -> tuple[str, str, dict[str, Any]]:
    text = learned_text(record.instruction, record.answer)
    meta = learned_metadata(
        record_id=record.id,
        worker=record.worker,
        date=record.created,
        model=record.source_model,
        sensitivity=record.sensitivity,
        text=text,
    )
    return record.source, text, meta


def _source_model(state: dict[str, Any]) -> str:
    for c in reversed(state.get("calls") or []):
        if c.role == "supervisor" and not c.error:
            return str(c.model)
    return ""


def _seen(state: dict[str, Any]) -> dict[tuple[str, str | None], list[LearnedPassage]]:
    out: dict[tuple[str, str | None], list[LearnedPassage]] = {}
    for item in state.get("seen") or []:
        out.setdefault((item.worker, item.instruction), list(item.passages))
        out.setdefault((item.worker, None), list(item.passages))
    return out


def _used(state: dict[str, Any]) -> list[str]:
    used: list[str] = []
    for r in state.get("results") or []:
        if r.status == "ok":
            used.extend(c.source for c in r.citations if is_learned(c.source))
    return list(dict.fromkeys(used))
