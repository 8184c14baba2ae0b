"""Evaluate a tandem graph on a labelled dataset (``tandem eval DATASET.jsonl``).

Dataset format: JSON Lines, one object per question::

    {"question": "What is the basic rate of income tax in Veloria?",
     "expected_workers": ["finance"],
     "facts": ["18%"]}

* ``question`` (required; ``query`` is accepted too) — what to ask.
* ``expected_workers`` (``expected`` accepted) — the specialist(s) the router should
  pick: one name for a direct answer, several for a cross-domain plan, ``[]`` when
  no specialist fits (the supervisor answers alone).
* ``facts`` — reference facts; each must appear in the answer for the question to count
  as answered (:func:`fact_in`: the fact's words and numbers in order, case-insensitive;
  numbers by value — ``15%`` matches ``15.0 %``, ``VC 12,000`` matches ``VC 12000`` —
  and whole tokens only: ``18%`` does not match ``118%``. A number with a unit also
  counts when the answer states that number alone, as its one value: ``21`` for
  ``21 days`` — not ``21 weeks``, ``2021`` or ``21`` among other numbers).

* ``answerable`` (optional) — ``false`` for an in-domain question the specialist's
  corpus does not answer: its local answer counts as wrong (it should escalate).

Per question the report keeps the route, whether it matched, which facts were
found, the local share of model calls, the cost and the latency; the summary has
route accuracy, fact recall, fully-answered share, mean local share, total cost
and latency p50/p95. For direct routes it also judges the specialist's own answer
(before any escalation): right when it holds every fact, wrong when it misses one
or the question is not answerable; the summary then compares ``p_correct`` with the
model's self-reported confidence as predictors of that — ``auroc``, ``ece`` and a
risk–coverage table for each, side by side.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from tandem.graphs.hybrid import TandemGraph
from tandem.graphs.state import Answer
from tandem.workers.calibration_fit import RiskPoint, auroc, ece, risk_coverage
from tandem.workers.errors import ConfigError, RunError

__all__ = [
    "EvalCase",
    "EvalReport",
    "EvalRow",
    "evaluate",
    "fact_in",
    "load_dataset",
    "summarize",
]


class EvalCase(BaseModel):
    """One labelled question."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    question: str = Field(validation_alias=AliasChoices("question", "query"), min_length=1)
    """The question to ask."""
    expected_workers: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("expected_workers", "expected")
    )
    """Specialists the router should choose (``[]``: none fits)."""
    facts: list[str] = Field(default_factory=list)
    """Reference facts the answer must contain."""
    answerable: bool | None = None
    """``False``: the specialist's corpus does not answer it (a local answer is wrong)."""


class EvalRow(BaseModel):
    """The outcome for one question."""

    question: str
    """The question asked."""
    expected_workers: list[str]
    """The labelled specialists."""
    route: str
    """The router's decision: ``direct``, ``plan`` or ``supervisor`` (``error`` if it failed)."""
    workers: list[str]
    """Specialists the router chose."""
    route_ok: bool
    """The chosen set equals the labelled set."""
    facts_found: list[str] = Field(default_factory=list)
    """Reference facts present in the answer."""
    facts_missing: list[str] = Field(default_factory=list)
    """Reference facts absent from the answer."""
    escalated: bool = False
    """A direct answer was not confident and went to the supervisor."""
    local_share: float = 1.0
    """Share of the run's model calls that stayed on this machine."""
    supervisor_calls: int = 0
    """Large-model calls the run made."""
    cost_usd: float = 0.0
    """Dollars spent on remote models."""
    seconds: float = 0.0
    """Wall time of the run."""
    answer: str = ""
    """The answer text."""
    local_answer: str = ""
    """On a direct route, the specialist's own answer (before any escalation)."""
    local_right: bool | None = None
    """Whether that answer holds every fact (``False`` for an unanswerable question;
    ``None``: not a direct route, or nothing to judge it by)."""
    p_correct: float | None = None
    """The specialist answer's calibrated probability of being right."""
    self_confidence: float | None = None
    """The confidence the specialist model reported."""
    error: str = ""
    """Set when the run itself failed."""


class EvalReport(BaseModel):
    """Per-question rows and the summary."""

    rows: list[EvalRow] = Field(default_factory=list)
    """One row per evaluated question, in dataset order."""
    questions: int = 0
    """Questions evaluated."""
    route_accuracy: float = 0.0
    """Share of questions routed to exactly the labelled specialists."""
    fact_recall: float = 0.0
    """Found reference facts / all reference facts."""
    answered: float = 0.0
    """Share of questions whose answer contains every reference fact."""
    local_share: float = 1.0
    """Mean local share of model calls."""
    supervisor_calls: int = 0
    """Large-model calls in total."""
    cost_usd: float = 0.0
    """Total remote cost."""
    p50_seconds: float = 0.0
    """Median latency per question."""
    p95_seconds: float = 0.0
    """95th-percentile latency per question."""
    judged: int = 0
    """Direct-route answers judged right or wrong (the base of the figures below)."""
    local_accuracy: float | None = None
    """Share of them that were right."""
    auroc: float | None = None
    """AUROC of ``p_correct`` for telling right local answers from wrong ones."""
    ece: float | None = None
    """Expected calibration error of ``p_correct``."""
    self_auroc: float | None = None
    """AUROC of the model's self-reported confidence, on the same answers."""
    self_ece: float | None = None
    """Expected calibration error of the self-reported confidence."""
    risk_coverage: list[RiskPoint] = Field(default_factory=list)
    """Error among the answers kept local, keeping the top share by ``p_correct``."""
    self_risk_coverage: list[RiskPoint] = Field(default_factory=list)
    """The same, ranking by self-reported confidence."""


def load_dataset(path: Path | str) -> list[EvalCase]:
    """Read a JSONL dataset (blank lines and ``#`` comments skipped).

    Raises:
        ConfigError: When the file is missing or a line is not a valid case.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the dataset {p}: {exc.strerror or exc}") from None
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cases.append(EvalCase.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"{p}:{n}: not a valid eval case ({first})",
                hint='each line is {"question": …, "expected_workers": […], "facts": […]}',
            ) from None
    return cases


_TOKEN = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?|[^\W\d_]+|[%£$€¥]")
_NUMBER_WORD_LIST = "zero one two three four five six seven eight nine ten eleven twelve"
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_NUMBER_WORD_LIST.split())}
_MONTH_LIST = (
    "january february march april may june july august september october november december"
)
_MONTHS = frozenset(_MONTH_LIST.split())
_CURRENCY = frozenset("£$€¥") | {"vc"}


def _tokens(text: str) -> list[str]:
    """Words (lower case), numbers by value (``12,000`` → ``12000``, ``15.0`` → ``15``,
    ``three`` → ``3``) and the symbols that carry meaning next to a number (``%``,
    currency signs)."""
    return [tok for tok, _ in _spans(text)]


def _spans(text: str) -> list[tuple[str, int]]:
    """:func:`_tokens` with the offset where each one ends in ``text``."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0).lower()
        if tok[0].isdigit():
            tok = format(Decimal(tok.replace(",", "")).normalize(), "f")
        out.append((_NUMBER_WORDS.get(tok, tok), m.end()))
    return out


def _is_number(tok: str) -> bool:
    return tok[0].isdigit()


def _bare_value(want: list[str], text: str, spans: list[tuple[str, int]]) -> bool:
    """Whether ``text`` states the number of a number-with-unit fact (``21 days``,
    ``VC 900``, ``15%``) as its one value, without a unit: the text's only number is that
    number, nothing follows it but punctuation (``21.`` — not ``21 weeks``, ``21%``,
    ``21°C``, ``21-week``), and no currency precedes it (``$21`` for ``VC 21``). A number
    after a label (``Section 8``, ``RT-2``) or in a date (``1 March``) is no quantity with
    a unit: it must be stated in full. ``spans``: :func:`_spans` of ``text``."""
    numbers = [i for i, t in enumerate(want) if _is_number(t)]
    if len(numbers) != 1 or len(want) < 2 or any(t in _MONTHS for t in want):
        return False
    k = numbers[0]  # a unit follows the number, or a currency precedes it — not a label
    if k > 1 or (k == 1 and want[0] not in _CURRENCY):  # ("Section 8", "RT-2")
        return False
    found = [i for i, (tok, _) in enumerate(spans) if _is_number(tok)]
    if len(found) != 1 or spans[found[0]][0] != want[k]:
        return False
    i = found[0]
    after = text[spans[i][1] :].lstrip(" \u00a0-\u2010\u2011\u2013")
    if after and (after[0].isalnum() or after[0] in "%°£$€¥"):
        return False
    return i == 0 or spans[i - 1][0] not in _CURRENCY


def fact_in(fact: str, text: str) -> bool:
    """Whether a reference fact is stated in ``text``: its tokens appear there in order and
    next to each other (see :func:`_tokens`; punctuation and spacing do not matter) — or
    the fact is a number with a unit and ``text`` states that number as its one value with
    no unit (``21`` for ``21 days``; not ``21 weeks``, not ``2021``, not ``21`` among other
    numbers: see :func:`_bare_value`)."""
    want = _tokens(fact)
    if not want:
        return False
    spans = _spans(text)
    have = [tok for tok, _ in spans]
    n = len(want)
    if any(have[i : i + n] == want for i in range(len(have) - n + 1)):
        return True
    return _bare_value(want, text, spans)


def _percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    xs = sorted(values)
    return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]


def _judge(case: EvalCase, answer: Answer) -> dict[str, object]:
    """The specialist's own answer on a direct route, and whether it was right."""
    first = answer.worker_results[0] if answer.worker_results else None
    if answer.route.kind != "direct" or first is None or first.status != "ok":
        return {}
    right: bool | None = None
    if case.answerable is False:
        right = False
    elif case.facts:
        right = all(fact_in(f, first.answer) for f in case.facts)
    return {
        "local_answer": first.answer,
        "local_right": right,
        "p_correct": first.p_correct,
        "self_confidence": first.confidence,
    }


def _row(case: EvalCase, answer: Answer, seconds: float) -> EvalRow:
    found = [f for f in case.facts if fact_in(f, answer.text)]
    route = answer.route
    workers = list(route.workers) if route.kind != "supervisor" else []
    t = answer.ledger.totals
    return EvalRow(
        question=case.question,
        expected_workers=case.expected_workers,
        route=route.kind,
        workers=workers,
        route_ok=sorted(workers) == sorted(case.expected_workers),
        facts_found=found,
        facts_missing=[f for f in case.facts if f not in found],
        escalated=answer.escalated,
        local_share=t.local_share,
        supervisor_calls=t.supervisor_calls,
        cost_usd=t.cost_usd,
        seconds=round(seconds, 3),
        answer=answer.text,
        **_judge(case, answer),
    )


def _calibration(rows: Sequence[EvalRow]) -> dict[str, object]:
    judged = [r for r in rows if r.local_right is not None and r.p_correct is not None]
    if not judged:
        return {}
    y = [int(bool(r.local_right)) for r in judged]
    p = [float(r.p_correct or 0.0) for r in judged]
    c = [float(r.self_confidence or 0.0) for r in judged]

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {
        "judged": len(judged),
        "local_accuracy": round(sum(y) / len(y), 4),
        "auroc": rounded(auroc(p, y)),
        "ece": rounded(ece(p, y)),
        "self_auroc": rounded(auroc(c, y)),
        "self_ece": rounded(ece(c, y)),
        "risk_coverage": risk_coverage(p, y),
        "self_risk_coverage": risk_coverage(c, y),
    }


def summarize(rows: Sequence[EvalRow], cases: Sequence[EvalCase]) -> EvalReport:
    """The summary over evaluated rows."""
    n = len(rows)
    facts = sum(len(c.facts) for c in cases)
    secs = [r.seconds for r in rows]
    return EvalReport(
        rows=list(rows),
        questions=n,
        route_accuracy=round(sum(r.route_ok for r in rows) / n, 4) if n else 0.0,
        fact_recall=round(sum(len(r.facts_found) for r in rows) / facts, 4) if facts else 0.0,
        answered=round(sum(not r.facts_missing and not r.error for r in rows) / n, 4) if n else 0.0,
        local_share=round(sum(r.local_share for r in rows) / n, 4) if n else 1.0,
        supervisor_calls=sum(r.supervisor_calls for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), 8),
        p50_seconds=round(_percentile(secs, 50), 3),
        p95_seconds=round(_percentile(secs, 95), 3),
        **_calibration(rows),
    )


async def evaluate(
    graph: TandemGraph,
    cases: Sequence[EvalCase],
    *,
    limit: int | None = None,
    on_row: Callable[[int, EvalRow], None] | None = None,
) -> EvalReport:
    """Run each case through ``graph`` (sequentially) and score it.

    Args:
        graph: A graph from :func:`~tandem.graphs.build_graph`.
        cases: The labelled questions.
        limit: Evaluate only the first ``limit`` cases.
        on_row: Called after each question with its index and row (progress).

    Returns:
        The per-question rows and the summary. A run that fails with a tandem error is
        recorded as a row with ``error`` set, never raised.
    """
    chosen = list(cases)[:limit] if limit is not None else list(cases)
    rows = []
    for i, case in enumerate(chosen):
        started = time.perf_counter()
        try:
            state = await graph.ainvoke({"query": case.question})
            row = _row(case, state["answer"], time.perf_counter() - started)
        except RunError as exc:
            row = EvalRow(
                question=case.question,
                expected_workers=case.expected_workers,
                route="error",
                workers=[],
                route_ok=False,
                facts_missing=list(case.facts),
                seconds=round(time.perf_counter() - started, 3),
                error=str(exc),
            )
        rows.append(row)
        if on_row is not None:
            on_row(i, row)
    return summarize(rows, chosen)
