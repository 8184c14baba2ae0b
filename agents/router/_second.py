"""The optional second stage: where the learned router is unsure, a local small model picks.

The *grey zone* is read off the fast router's own probabilities: a question is grey when a
worker's probability, or the question's none-probability, lies close to the threshold
that decides it — measured in log-odds, ``min(|logit p_k − logit multi|, |logit none −
logit max_none|)`` below a band. The band is chosen by cross-validation on labelled rows
(:func:`grey_band`: the largest that sends at most a given share of out-of-fold questions
to the second stage).

The second stage asks a *local* chat model (``[router] second_stage``, e.g. the bundled
0.5B worker model) through the same backend layer workers use, with a JSON schema —
``{"workers": [...]}``, items from the worker names plus ``"none"`` — a short prompt with
each worker's one-line description and a few worked examples made from the workers' own
``examples`` (one question each, two joined, a general one for none), temperature 0 and a
timeout. The examples were chosen on the training routes, never the evaluated set: on 26
of them (12 single, 8 cross-domain, 6 general) they took the 0.5B from 2 to 10 right and
the 1.5B from 9 to 19. A malformed reply, a
timeout or an engine error keeps the fast router's decision, with a note saying why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem.agents.router._linear import Array
from tandem.agents.router._model import Scored, Thresholds
from tandem.workers.backends import Backend, ChatMessage, ChatResult
from tandem.workers.errors import RunError
from tandem.workers.records import CallRecord
from tandem.workers.spec import WorkerSpec
from tandem.workers.telemetry import chat_finished

__all__ = ["SecondStage", "StageReply", "grey_band", "grey_score", "reply_schema"]

NONE = "none"
MAX_TOKENS = 40
SYSTEM = (
    "You route a user's question to the specialists who must answer it. Specialists:\n"
    "{workers}\n"
    "Reply with every specialist the question needs: one, several when it raises "
    'several of their topics, or "none" when no specialist covers it.'
)


def _logit(p: Array | float) -> Array:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    out: Array = np.log(q / (1 - q))
    return out


def grey_score(s: Scored, th: Thresholds) -> float:
    """How far the question is from flipping the fast decision (log-odds; small = unsure)."""
    worker = float(np.min(np.abs(_logit(s.probabilities) - _logit(th.multi))))
    none = float(np.abs(_logit(s.single[-1]) - _logit(th.none_probability)))
    return min(worker, none)


def grey_band(scored: Sequence[Scored], th: Thresholds, share: float) -> float:
    """The largest band that sends at most ``share`` of ``scored`` (questions scored out of
    fold) to the second stage: a question goes when its :func:`grey_score` is below it."""
    g = np.sort([grey_score(s, th) for s in scored])
    n = int(np.floor(share * len(g)))
    if n <= 0 or not len(g):
        return 0.0
    return float(g[min(n, len(g) - 1)]) if n < len(g) else float(g[-1]) + 1e-9


def _shots(workers: Sequence[WorkerSpec]) -> str:
    """Worked examples from the workers' own ``examples``: one question each, two of them
    joined (several specialists) and a general question (none)."""
    have = [w for w in workers if w.examples]
    if not have:
        return ""
    rows = [(w.examples[0], [w.name]) for w in have]
    if len(have) >= 2:
        a, b = have[0], have[1]
        second = b.examples[-1]
        rows.append((f"{a.examples[-1]} And {second[0].lower()}{second[1:]}", [a.name, b.name]))
    rows.append(("What is the capital of Australia?", [NONE]))
    shown = "\n".join(f"{q} -> {json.dumps({'workers': names})}" for q, names in rows)
    return "\nExamples:\n" + shown


def reply_schema(names: Sequence[str]) -> dict[str, Any]:
    """JSON schema of the reply: a non-empty list of worker names (or ``"none"``)."""
    return {
        "type": "object",
        "properties": {
            "workers": {
                "type": "array",
                "items": {"type": "string", "enum": [*names, NONE]},
                "minItems": 1,
                "maxItems": len(names) + 1,
            }
        },
        "required": ["workers"],
    }


@dataclass(frozen=True)
class StageReply:
    """What the second stage did for one question."""

    workers: list[str] | None
    """The specialists it chose (``[]``: none fits); ``None`` when it failed."""
    ms: float
    note: str
    """Why it failed, or what it chose."""
    call: CallRecord | None = None
    """The model call, for the run's ledger."""


class SecondStage:
    """Asks a local chat model which workers a question needs.

    Args:
        backend: A local chat backend (the caller refuses remote ones).
        workers: The registered workers (name and description go into the prompt).
        timeout: Seconds before the fast decision is kept.
        examples: Put worked examples in the prompt (see the module docstring).
    """

    def __init__(
        self,
        backend: Backend,
        workers: Sequence[WorkerSpec],
        timeout: float,
        *,
        examples: bool = True,
    ) -> None:
        self.backend = backend
        self.names = [w.name for w in workers]
        self.timeout = timeout
        self.examples = examples
        lines = "\n".join(f"- {w.name}: {' '.join(w.description.split())}" for w in workers)
        self.system = SYSTEM.format(workers=lines) + (_shots(workers) if examples else "")
        self.schema = reply_schema(self.names)

    def with_workers(self, workers: Sequence[WorkerSpec]) -> SecondStage:
        """The same model asked about another list of workers."""
        return SecondStage(self.backend, workers, self.timeout, examples=self.examples)

    def parse(self, content: str) -> list[str]:
        """The chosen workers from a reply, in reply order (``[]`` for none).

        Raises:
            ValueError: The reply is not the schema's object or names no known worker.
        """
        data = json.loads(content)
        if not isinstance(data, dict) or not isinstance(data.get("workers"), list):
            raise ValueError("not an object with a 'workers' list")
        picked = [str(w) for w in data["workers"]]
        unknown = [w for w in picked if w not in self.names and w != NONE]
        if unknown or not picked:
            raise ValueError(f"unknown worker(s) {unknown}" if unknown else "an empty list")
        chosen = list(dict.fromkeys(w for w in picked if w != NONE))
        if chosen and NONE in picked:
            raise ValueError("'none' together with workers")
        return chosen

    async def ask(self, question: str) -> StageReply:
        """Ask the model; on any failure ``workers`` is ``None`` and ``note`` says why."""
        messages: list[ChatMessage] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": question},
        ]
        started = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        def record(res: ChatResult | None, error: str = "") -> CallRecord:
            return chat_finished(self.backend, res, ms() / 1000, purpose="route", error=error)

        try:
            res = await asyncio.wait_for(
                self.backend.chat(
                    messages, schema=self.schema, max_tokens=MAX_TOKENS, temperature=0.0
                ),
                self.timeout,
            )
        except TimeoutError:
            note = f"{self.backend.ref} timed out after {self.timeout:g} s"
            return StageReply(None, ms(), note, record(None, "timeout"))
        except RunError as exc:
            note = f"{self.backend.ref} failed: {exc}"
            return StageReply(None, ms(), note, record(None, str(exc)))
        try:
            chosen = self.parse(res.content)
        except ValueError as exc:
            note = f"{self.backend.ref} gave a malformed reply ({exc}): {res.content[:200]!r}"
            return StageReply(None, ms(), note, record(res, "malformed reply"))
        note = f"{self.backend.ref} chose {', '.join(chosen) or NONE}"
        return StageReply(chosen, ms(), note, record(res))
