"""The pieces of an answer's signals: spans and their support, the answer field's
log-probabilities, closing a capped reply, and the numpy calibration metrics."""

from __future__ import annotations

import json
import math

import pytest
from langchain_core.documents import Document

from tandem.workers.backends import TokenLogprob
from tandem.workers.calibration_fit import auroc, cross_validated, ece, fit, risk_coverage
from tandem.workers.grounding import Span, find_spans, is_not_covered, supported
from tandem.workers.records import WorkerReply
from tandem.workers.reply import close_truncated, drop_repeats
from tandem.workers.signals import answer_logprobs, compute_signals

PASSAGE = (
    "Under section 8 of the Velorian Tenancy Act 2019, a landlord may not take a security "
    "deposit of more than 6 weeks' rent. For a flat let at VC 1,200 a month, the maximum "
    "deposit is therefore VC 1,661, protected within 30 days by Brightwater Lettings."
)


def test_spans_by_kind() -> None:
    spans = find_spans(
        "The cap is VC 1,661 (6 weeks' rent, 5.5% a year) from 1 March; see Kestrel Bank."
    )
    assert [str(s) for s in spans] == [
        "amount VC 1,661",
        "percentage 5.5%",
        "date 1 March",
        "duration 6 weeks",
        "name March",
        "name Kestrel Bank",
    ]


def test_terminal_control_sequences_are_no_spans() -> None:
    # The sanitiser drops them before anyone reads the answer: "]0;" is not the number 0.
    answer = "Back in 14 days. \x1b]0;title\x07\x1b[2Jdone"
    assert [str(s) for s in find_spans(answer)] == ["duration 14 days"]


@pytest.mark.parametrize(
    ("span", "ok"),
    [
        (Span("amount", "VC 1,661"), True),
        (Span("amount", "VC 1661"), True),  # a number is matched as a number
        (Span("amount", "VC 1,600"), False),
        (Span("duration", "30 days"), True),
        (Span("duration", "30 weeks"), False),  # the right number with the wrong unit
        (Span("duration", "6 weeks"), True),
        (Span("name", "Brightwater Lettings"), True),
        (Span("name", "Northwind Pharmacy"), False),
    ],
)
def test_support_in_a_passage(span: Span, ok: bool) -> None:
    assert supported(span, PASSAGE) is ok


def test_not_covered_wordings() -> None:
    assert is_not_covered("not covered")
    assert is_not_covered("The passages do not mention a fee.")
    assert not is_not_covered("The fee is VC 40.")


def test_logprobs_of_the_answer_field_only() -> None:
    content = '{"answer": "VC 1,661", "confidence": 0.9}'
    pieces = [
        '{"',
        "answer",
        '":',
        ' "',
        "VC",
        " ",
        "1",
        ",",
        "661",
        '",',
        ' "confidence',
        '":',
        " 0.9}",
    ]
    assert "".join(pieces) == content
    tokens = [TokenLogprob(token=p, logprob=-float(i)) for i, p in enumerate(pieces)]
    # The quotes, keys and the confidence are not the answer's: "VC", " ", "1", ",", "661".
    assert answer_logprobs(content, tokens) == [-4.0, -5.0, -6.0, -7.0, -8.0]


def test_spread_of_the_likeliest_alternatives_over_the_answer() -> None:
    content = '{"answer": "6 weeks"}'
    half, quarter = math.log(0.5), math.log(0.25)
    tokens = [
        TokenLogprob(token='{"answer": "', logprob=-0.01, top=[-0.01, -5.0]),  # not the answer's
        TokenLogprob(token="6", logprob=half, top=[half, quarter, quarter]),  # sure-ish
        TokenLogprob(token=" weeks", logprob=quarter, top=[half, quarter]),  # not the likeliest
        TokenLogprob(token='"}', logprob=-0.01, top=[-0.01]),
    ]
    reply = WorkerReply(answer="6 weeks", confidence=0.9, citations=[], needs_escalation=False)
    s = compute_signals(reply, [], "How big a deposit?", content=content, logprobs=tokens)
    # "6": three outcomes 1/2, 1/4, 1/4; " weeks": 1/2, 1/4 and the rest (1/4) as one more.
    assert s.top_entropy == pytest.approx(1.5 * math.log(2))
    # "6" leads the next by log 2; " weeks" trails the likeliest by log 2.
    assert s.top_margin == pytest.approx(0.0)
    assert s.logprob_mean == pytest.approx((half + quarter) / 2)
    plain = [TokenLogprob(token=t.token, logprob=t.logprob) for t in tokens]
    bare = compute_signals(reply, [], "How big a deposit?", content=content, logprobs=plain)
    assert bare.top_entropy is None and bare.top_margin is None  # the engine gave none


def test_signals_of_a_reply() -> None:
    passages = [
        Document(page_content=PASSAGE, metadata={"score": 0.71}),
        Document(page_content="Pets need consent.", metadata={"score": 0.52}),
    ]
    reply = WorkerReply(
        answer="VC 1,661, within 45 days", confidence=0.9, citations=["S1"], needs_escalation=False
    )
    s = compute_signals(reply, passages, "What is the most deposit on VC 1,200 a month?")
    assert s.retrieval_best == 0.71 and s.retrieval_margin == pytest.approx(0.19)
    assert s.spans == ["amount VC 1,661", "duration 45 days"]
    assert s.unsupported == ["duration 45 days"] == s.unsupported_anywhere
    assert s.citations == 1 and s.citations_valid and not s.not_covered
    assert s.logprob_mean is None and s.answer_tokens == 0


def test_close_a_capped_reply_and_cut_loops() -> None:
    capped = '{"answer": "Take 2 tablets. Take 2 tablets. Take 2 tab'
    assert close_truncated(capped) == WorkerReply(
        answer="Take 2 tablets.", confidence=0.5, citations=[], needs_escalation=False
    )
    whole = '{"answer": "VC 1,661", "confidence": 0.8, "citations": ["S1", "S'
    assert close_truncated(whole) == WorkerReply(
        answer="VC 1,661", confidence=0.8, citations=["S1"], needs_escalation=False
    )
    assert close_truncated('{"answ') is None
    words = "it pays interest on a fixed amount over a period, "
    assert drop_repeats(words * 4) == words.strip().rstrip(",")
    assert json.loads(json.dumps(drop_repeats("One. Two. One. Two."))) == "One. Two."


def test_metrics_and_fit() -> None:
    assert auroc([0.9, 0.8, 0.2], [1, 1, 0]) == 1.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.5], [1]) is None
    assert ece([1.0, 0.0], [1, 0]) == 0.0
    assert ece([0.9] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.4)
    rc = risk_coverage([0.9, 0.8, 0.7, 0.1], [1, 1, 0, 0], levels=(0.5, 1.0))
    assert [(p.coverage, p.error) for p in rc] == [(0.5, 0.0), (1.0, 0.5)]
    x = [[float(i % 10), 0.0] for i in range(60)]
    y = [int(row[0] >= 5) for row in x]
    _, _, w, _ = fit(x, y)
    assert w[0] > 1.0 and w[1] == 0.0  # the constant feature gets no weight
    assert auroc(cross_validated(x, y), y) == 1.0
