"""Cached worker answers (``collect_calibration.py``) → labelled samples with the product's
own signals, recomputed from the raw replies (so a change to the signal code needs no new
model run).

The passage sentences that answer the question's ask, and the question's similarity to
the sentence that holds the answer, are found as a run finds them
(:func:`tandem.workers.ask.rank_ask_sentences`, :func:`~tandem.workers.ask.answer_locus`
with the bundled MiniLM embedder, the one the answers were retrieved with). The signals'
cost is re-measured here, with that embedder's sentence cache emptied before every answer
(the cost of a corpus seen for the first time), and added to the cost the collector
recorded for the other signals."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from tandem.graphs.calibrate import label
from tandem.graphs.evaluate import EvalCase, fact_in
from tandem.workers.ask import clear_cache, locate
from tandem.workers.backends import Backend, TokenLogprob, make_backend
from tandem.workers.calibration import feature_values
from tandem.workers.records import AnswerSignals, WorkerReply
from tandem.workers.reply import close_truncated, parse_reply
from tandem.workers.signals import compute_signals

__all__ = ["EMBED_MODEL", "Answer", "load_answers"]

EMBED_MODEL = "embedded:minilm"
"""The embedder the cached answers were retrieved with (the zero-config default)."""


@dataclass
class Answer:
    """One cached answer, relabelled and with recomputed signals."""

    qid: int
    worker: str
    kind: str
    answerable: bool
    facts: list[str]
    answer: str
    right: bool
    found: int
    signals: AnswerSignals | None
    features: dict[str, float | None]
    call_seconds: float
    signal_seconds: float
    tokens_out: int
    tokens_in: int
    truncated: bool


def _reply(call: dict[str, Any]) -> tuple[WorkerReply | None, bool]:
    try:
        return parse_reply(call["content"]), False
    except ValueError:
        if call.get("done_reason") == "length":
            return close_truncated(call["content"]), True
        return None, False


async def _ask(
    embedder: Backend, question: str, answer: str, passages: list[str]
) -> tuple[list[str], float | None, float]:
    clear_cache()
    started = time.perf_counter()
    found, locus = await locate(embedder, question, answer, passages)
    return found, locus, time.perf_counter() - started


def load_answers(path: Path, embedder: Backend | None = None) -> list[Answer]:
    """Read a cache written by ``collect_calibration.py`` (``embedder``: the bundled MiniLM
    unless given)."""
    embedder = embedder or make_backend(EMBED_MODEL)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        calls = row["calls"]
        reply, truncated = _reply(calls[-1]) if calls else (None, False)
        passages = [
            Document(page_content=p["text"], metadata={k: v for k, v in p.items() if k != "text"})
            for p in row["passages"]
        ]
        signals = None
        ask_seconds = 0.0
        if reply is not None:
            ask, locus, ask_seconds = asyncio.run(
                _ask(embedder, row["question"], reply.answer, [p.page_content for p in passages])
            )
            tokens = [  # [token, logprob, size] or, since top log-probabilities, + [top...]
                TokenLogprob(token=t[0], logprob=t[1], bytes=[0] * t[2], top=_top(t))
                for t in calls[-1]["logprobs"]
            ]
            signals = compute_signals(
                reply,
                passages,
                row["question"],
                content=calls[-1]["content"],
                logprobs=tokens or None,
                truncated=truncated,
                repaired=len(calls) > 1,
                ask=ask,
                locus=locus,
            )
        answer = reply.answer if reply else ""
        case = EvalCase(
            question=row["question"],
            expected_workers=[row["worker"]],
            facts=row["facts"],
            answerable=row["answerable"],
        )
        out.append(
            Answer(
                qid=row["qid"],
                worker=row["worker"],
                kind=row.get("kind") or "",
                answerable=bool(row["answerable"]),
                facts=row["facts"],
                answer=answer,
                right=bool(label(case, answer)) if reply else False,
                found=sum(fact_in(f, answer) for f in row["facts"]),
                signals=signals,
                features=feature_values(signals) if signals else {},
                call_seconds=sum(c["seconds"] for c in calls),
                signal_seconds=float(row.get("signal_seconds") or 0.0) + ask_seconds,
                tokens_out=sum(c["tokens_out"] for c in calls),
                tokens_in=sum(c["tokens_in"] for c in calls),
                truncated=truncated,
            )
        )
    return out


def _top(entry: list[Any]) -> list[float] | None:
    return list(entry[3]) or None if len(entry) > 3 else None
