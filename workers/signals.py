"""The signals recorded on every worker answer (:class:`~tandem.workers.records.AnswerSignals`).

* **Token log-probabilities** of the ``answer`` field only: the raw JSON reply is
  re-scanned to find the answer string's character span, and the engine's tokens are laid
  over it by their byte lengths — so the keys, the confidence number and the citations,
  which the grammar forces and the model copies, do not dilute the summary. Where the
  engine gives its likeliest alternatives at each token, how spread they were (entropy)
  and the chosen token's lead over the next.
* **Retrieval**: the best passage's score and its margin over the second.
* **Grounding** (:mod:`tandem.workers.grounding`): checkable spans found in the cited
  passages, in any passage; valid citations; "not covered"; overlap with the question;
  the answer's terms in the passage sentences that match the question; how closely the
  sentence that holds the answer matches the question (``answer_locus``, computed with the
  embedder by :mod:`tandem.workers.ask` and passed in); whether it states the kind of
  quantity the question asks for.
* **Self-report**: the model's own ``confidence`` and ``needs_escalation``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence

from langchain_core.documents import Document

from tandem.workers.backends import TokenLogprob
from tandem.workers.grounding import (
    ask_sentences,
    ask_support,
    asked_kind,
    find_spans,
    is_not_covered,
    question_overlap,
    unsupported_spans,
)
from tandem.workers.memory import is_learned
from tandem.workers.records import AnswerSignals, WorkerReply

__all__ = ["answer_logprobs", "answer_value_span", "compute_signals"]

_ANSWER_KEY = re.compile(r'"answer"\s*:\s*"')


def answer_value_span(content: str) -> tuple[int, int] | None:
    """Character offsets of the ``answer`` string's text inside a raw JSON reply (up to the
    end of the reply when it was cut off inside the string); ``None`` if there is none."""
    m = _ANSWER_KEY.search(content)
    if m is None:
        return None
    i = m.end()
    while i < len(content):
        if content[i] == "\\":
            i += 2
            continue
        if content[i] == '"':
            return m.end(), i
        i += 1
    return m.end(), len(content)


def answer_logprobs(content: str, tokens: Sequence[TokenLogprob]) -> list[float]:
    """Log-probabilities of the tokens that overlap the answer string's text."""
    return [t.logprob for t in _answer_tokens(content, tokens)]


def _answer_tokens(content: str, tokens: Sequence[TokenLogprob]) -> list[TokenLogprob]:
    span = answer_value_span(content)
    if span is None:
        return []
    start, end = len(content[: span[0]].encode()), len(content[: span[1]].encode())
    out, pos = [], 0
    for token in tokens:
        size = token.size
        if size and pos < end and pos + size > start:
            out.append(token)
        pos += size
    return out


def _spread(tokens: Sequence[TokenLogprob]) -> tuple[float | None, float | None]:
    """Mean entropy over the likeliest alternatives (plus the rest of the probability as one
    outcome) and mean lead over the likeliest other token, of the tokens that have them."""
    entropies, margins = [], []
    for t in tokens:
        top = t.top
        if not top:
            continue
        probs = [math.exp(a) for a in top]
        rest = max(0.0, 1.0 - sum(probs))
        entropies.append(-sum(p * math.log(p) for p in [*probs, rest] if p > 0))
        if t.logprob >= top[0] - 1e-6:  # the likeliest token was chosen
            margins.append(t.logprob - top[1] if len(top) > 1 else 0.0)
        else:
            margins.append(t.logprob - top[0])
    if not entropies:
        return None, None
    return sum(entropies) / len(entropies), sum(margins) / len(margins)


def _quantile(values: Sequence[float], q: float) -> float:
    xs = sorted(values)
    at = q * (len(xs) - 1)
    lo = int(at)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (at - lo)


def compute_signals(
    reply: WorkerReply,
    passages: Sequence[Document],
    question: str,
    *,
    content: str = "",
    logprobs: Sequence[TokenLogprob] | None = None,
    truncated: bool = False,
    repaired: bool = False,
    ask: Sequence[str] | None = None,
    locus: float | None = None,
) -> AnswerSignals:
    """The signals of one validated reply.

    Args:
        reply: The parsed reply.
        passages: The passages the worker was shown, in prompt order (``S1`` first).
        question: The instruction it answered.
        content: The raw reply text the log-probabilities belong to.
        logprobs: The engine's per-token log-probabilities of ``content``, if any.
        truncated: The reply was cut off by the token cap and closed locally.
        repaired: A second call was needed to get a valid reply.
        ask: The passage sentences that match the question best
            (:func:`tandem.workers.ask.rank_ask_sentences`); by word overlap when not given.
        locus: The question's similarity to the passage sentence that holds the answer
            (:func:`tandem.workers.ask.answer_locus`), if known.
    """
    started = time.perf_counter()
    tokens = _answer_tokens(content, logprobs) if logprobs else []
    values = [t.logprob for t in tokens]
    entropy, margin = _spread(tokens)
    # The embedding's own order: keyword ranking (workers/_rerank.py) may put a passage with a
    # lower embedding score first; the retrieval signals stay about the embedding's best two.
    # Answer memory's passages come after the corpus's, as retrieved.
    scored = [d for d in passages if "score" in d.metadata]
    scores = sorted(
        (float(d.metadata["score"]) for d in scored if not is_learned(_source(d))), reverse=True
    ) + [float(d.metadata["score"]) for d in scored if is_learned(_source(d))]
    by_id = {f"S{i}": d.page_content for i, d in enumerate(passages, 1)}
    cited_ids = [c.strip().strip("[]") for c in reply.citations]
    valid = [c for c in dict.fromkeys(cited_ids) if c in by_id]
    cited = "\n".join(by_id[c] for c in valid)
    spans = find_spans(reply.answer)
    not_covered = is_not_covered(reply.answer)
    kind = asked_kind(question)
    if ask is None:
        ask = ask_sentences(question, [d.page_content for d in passages])
    signals = AnswerSignals(
        answer_tokens=len(values),
        logprob_mean=sum(values) / len(values) if values else None,
        logprob_min=min(values) if values else None,
        logprob_p10=_quantile(values, 0.1) if values else None,
        top_entropy=entropy,
        top_margin=margin,
        passages=len(passages),
        retrieval_best=scores[0] if scores else None,
        retrieval_margin=scores[0] - scores[1] if len(scores) > 1 else None,
        spans=[str(s) for s in spans],
        unsupported=[str(s) for s in unsupported_spans(spans, cited)],
        unsupported_anywhere=[str(s) for s in unsupported_spans(spans, "\n".join(by_id.values()))],
        citations=len(valid),
        citations_valid=bool(cited_ids) and len(valid) == len(set(cited_ids)),
        not_covered=not_covered,
        question_overlap=question_overlap(reply.answer, question),
        ask_support=ask_support(reply.answer, ask),
        answer_locus=locus,
        asked_kind=kind,
        kind_missing=kind is not None and not not_covered and all(s.kind != kind for s in spans),
        answer_words=len(reply.answer.split()),
        self_confidence=reply.confidence,
        needs_escalation=reply.needs_escalation,
        truncated=truncated,
        repaired=repaired,
    )
    signals.seconds = time.perf_counter() - started
    return signals


def _source(doc: Document) -> str:
    return str(doc.metadata.get("source", ""))
