"""Reading a worker's JSON reply: loops cut, and a reply cut off by the token cap closed
locally instead of by a second model call.

A small model that starts repeating itself runs until the cap and leaves the JSON open.
Re-sending the whole prompt (~1,000 tokens of passages) to get a valid object costs as much
as the first call; but everything needed is already there — the answer's text up to the
cut. :func:`close_truncated` keeps its whole sentences (or whole words), drops the
repetition, and fills the fields the cap cut off with neutral values (the answer is then
flagged ``truncated`` for :mod:`tandem.workers.calibration`).
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from tandem.workers.records import WorkerReply
from tandem.workers.signals import answer_value_span

__all__ = ["close_truncated", "drop_repeats", "parse_reply"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LOOP_WORDS = 8
"""A run of this many words seen before marks the start of a loop."""


def drop_repeats(text: str) -> str:
    """The text up to where it starts repeating itself (a sentence, or a run of
    :data:`_LOOP_WORDS` words, seen before)."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        key = " ".join(sentence.lower().split())
        if key and key in seen:
            break
        seen.add(key)
        kept.append(sentence)
    words = " ".join(kept).split(" ")
    runs: set[tuple[str, ...]] = set()
    for i in range(len(words) - _LOOP_WORDS + 1):
        run = tuple(w.lower().strip(",;") for w in words[i : i + _LOOP_WORDS])
        if run in runs:
            return " ".join(words[:i]).rstrip(" ,;")
        runs.add(run)
    return " ".join(words)


def parse_reply(content: str) -> WorkerReply:
    """The validated reply, its answer with any loop cut.

    Raises:
        json.JSONDecodeError, ValidationError: Not a valid reply.
    """
    reply = WorkerReply.model_validate(json.loads(content))
    answer = drop_repeats(reply.answer)
    return reply if answer == reply.answer.strip() else reply.model_copy(update={"answer": answer})


def _whole(text: str) -> str:
    """Whole sentences of a cut-off text; whole words when there is no full sentence."""
    parts = _SENTENCE_END.split(text)
    if len(parts) > 1:
        return " ".join(parts[:-1])
    head, _, _ = text.rpartition(" ")
    return (head or text).rstrip(" ,;:-")


def close_truncated(content: str) -> WorkerReply | None:
    """A reply cut off by the token cap, closed without another model call; ``None`` when
    not even part of an answer was written."""
    span = answer_value_span(content)
    if span is None:
        return None
    start, end = span
    closed = end < len(content)
    raw = content[start:end]
    if not closed:
        raw = re.sub(r"\\(?:u[0-9a-fA-F]{0,3})?$", "", raw)  # a dangling escape
    try:
        text = json.loads(f'"{raw}"')
    except json.JSONDecodeError:
        text = raw
    text = str(text)
    if not closed:
        text = _whole(text)
    text = drop_repeats(text)
    if not text.strip():
        return None
    rest = content[end + 1 :] if closed else ""
    confidence = re.search(r'"confidence"\s*:\s*([0-9.]+)', rest)
    escalate = re.search(r'"needs_escalation"\s*:\s*(true|false)', rest)
    cited = re.search(r'"citations"\s*:\s*\[([^\]]*)', rest)
    try:
        return WorkerReply(
            answer=text.strip(),
            confidence=min(1.0, float(confidence.group(1))) if confidence else 0.5,
            citations=re.findall(r'"([^"]+)"', cited.group(1)) if cited else [],
            needs_escalation=escalate.group(1) == "true" if escalate else False,
        )
    except (ValidationError, ValueError):
        return None
