"""Escalations teach the specialists: learning records, answer memory, router feedback, exports.

Against the fake Ollama (workers, embeddings) and the fake OpenAI-compatible supervisor.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

from tandem.graphs.learning import LearningStore, Record
from tandem.graphs.learning import store as store_mod
from tandem.graphs.learning.export import distill_stats, export_records, modelfile
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.errors import ConfigError
from tandem.workers.memory import figures, find_conflicts, learned_text, reconcile
from tandem.workers.testing import FakeOllama, FakeOpenAI

MODEL = "qwen2.5:1.5b"
QUESTION = "Does my landlord or tenant insurance cover my furniture in a rented flat?"
ANSWER = (
    "Contents insurance, which the tenant buys, covers a tenant's own furniture; the "
    "landlord's buildings insurance does not. [tenancy]"
)
ESCALATE = {
    "answer": "The passages do not cover this.",
    "confidence": 0.1,
    "citations": [],
    "needs_escalation": True,
}
PLAN = {"subtasks": [{"worker": "tenancy", "instruction": QUESTION}], "rationale": "tenancy"}


def _escalation(ollama: FakeOllama, openai: FakeOpenAI, answer: str = ANSWER) -> None:
    """The next direct tenancy question escalates: the specialist cannot answer it (twice:
    the direct attempt and the planned one), the supervisor plans and answers."""
    ollama.script(MODEL, ESCALATE, ESCALATE)
    openai.script(PLAN, answer)


def _answer_from_learned(answer: str, confidence: float) -> Callable[[dict[str, Any]], str]:
    """A worker model that answers ``answer``, citing the learned passage it was shown."""

    def respond(request: dict[str, Any]) -> str:
        prompt = request["messages"][-1]["content"]
        found = re.search(r'<passage id="(S\d+)" source="learned:', prompt)
        cited = [found.group(1)] if found else []
        low = confidence < 0.5
        return json.dumps(
            {
                "answer": answer,
                "confidence": confidence,
                "citations": cited,
                "needs_escalation": low,
            }
        )

    return respond


async def _ask(graph: Any, query: str = QUESTION) -> Any:
    return (await graph.ainvoke({"query": query}))["answer"]


# -- the learning store ---------------------------------------------------------------------
def _record(**kw: Any) -> Record:
    base: dict[str, Any] = {
        "worker": "tenancy",
        "kind": "escalated",
        "question": "q?",
        "instruction": "q?",
        "answer": "a.",
        "checks": {"ok": True},
    }
    return Record(**{**base, **kw})


def test_store_schema_is_versioned_and_records_round_trip(tmp_path: Path) -> None:
    store = LearningStore(tmp_path / "l.sqlite")
    a = store.add(_record(question="What is HMO?", instruction="What is HMO?", p_correct=0.2))
    b = store.add(_record(worker="health", sensitivity="local_only"))
    assert store.version == store_mod.SCHEMA_VERSION
    assert (a.id, b.id) == (1, 2) and a.created.endswith("Z")
    got = store.get(a.id)
    assert got is not None and got.p_correct == 0.2 and got.status == "pending"
    assert store.set_status([a.id], "kept") == 1
    assert store.kept_ids("tenancy") == [1]
    assert [r.id for r in store.same_question("tenancy", "what is  hmo")] == [1]
    assert store.counts() == {"tenancy": {"kept": 1}, "health": {"pending": 1}}
    assert store.delete_worker("health") == [2] and store.get(2) is None


def test_store_migrates_an_older_file_and_refuses_a_newer_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.sqlite"
    LearningStore(path).add(_record())
    # A later version adds a column: the existing file is upgraded in place, data kept.
    later = [*store_mod.MIGRATIONS, "ALTER TABLE records ADD COLUMN reviewer TEXT"]
    monkeypatch.setattr(store_mod, "MIGRATIONS", later)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(later))
    upgraded = LearningStore(path)
    assert upgraded.version == len(later) and upgraded.get(1) is not None
    with sqlite3.connect(path) as db:
        assert "reviewer" in [r[1] for r in db.execute("PRAGMA table_info(records)")]
        db.execute(f"PRAGMA user_version = {len(later) + 1}")
    with pytest.raises(ConfigError, match="schema version"):
        LearningStore(path).get(1)


def test_routing_examples_are_one_per_question_newest_first_wins(tmp_path: Path) -> None:
    from tandem.graphs.learning import Candidate

    store = LearningStore(tmp_path / "l.sqlite")
    one = store.add_candidate(Candidate(question="A b?", expected_workers=["x"]), origin="t")
    two = store.add_candidate(Candidate(question="a  B", expected_workers=["y"]), origin="t")
    store.add_candidate(Candidate(question="c?", expected_workers=["x"]), origin="t")
    store.set_candidates([one, two], "approved")
    assert [(c.question, c.expected_workers) for c in store.routing_examples()] == [("a  B", ["y"])]


# -- memory passages and conflicts ------------------------------------------------------------
def test_figures_and_conflicts_between_a_learned_and_a_curated_passage() -> None:
    assert figures("within 14 days, VC 1,000 or 5.5%") == {
        "day": {"14"},
        "money": {"1000"},
        "%": {"5.5"},
    }
    question = "How many days does a landlord have to return the deposit?"
    learned = learned_text(question, "The landlord must return the deposit within 21 days.")
    curated = Document(
        page_content="Deposits: the landlord must return the deposit within 14 days of the end.",
        metadata={"source": "03-deposits.md", "chunk": 2},
    )
    unrelated = Document(page_content="Rent rises are capped at 5.5%.", metadata={"source": "x"})
    (c,) = find_conflicts(learned, [curated, unrelated], question, source="learned:7")
    assert (c.curated, c.kind, c.learned_values, c.curated_values) == (
        "03-deposits.md",
        "day",
        ("21",),
        ("14",),
    )
    same = Document(page_content="The landlord must return the deposit within 21 days.")
    assert find_conflicts(learned, [same], question) == []
    doc = Document(page_content=learned, metadata={"source": "learned:7"})
    text, found = reconcile("21 days.", question, [doc, curated], ["learned:7"])
    assert found and "learned:7" in text and "03-deposits.md" in text and "14" in text


# -- the loop through the graph ---------------------------------------------------------------
async def test_escalation_is_recorded_approve_keeps_nothing_until_keep(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph()  # [learning] memory = "approve" is the default
    rt = graph.runtime
    _escalation(fake_ollama, fake_openai)
    first = await _ask(graph)
    assert first.escalated and ANSWER in first.text
    (rid,) = first.learning.records
    assert first.learning.pending == [rid] and first.learning.kept == []
    record = rt.learning.store.get(rid)
    assert record is not None
    assert (record.worker, record.kind, record.status) == ("tenancy", "escalated", "pending")
    assert record.question == QUESTION and record.answer == first.text
    assert record.attempt == ESCALATE["answer"] and record.attempt_confidence == 0.1
    assert record.source_model == "openai/fake-large" and record.worker_model == f"ollama:{MODEL}"
    assert record.checks_passed, record.checks
    assert record.passages and not any(p.source.startswith("learned:") for p in record.passages)
    assert await rt.stores["tenancy"].memory_ids() == []  # approve: nothing kept yet

    # Still pending: the same question escalates again.
    _escalation(fake_ollama, fake_openai)
    assert (await _ask(graph)).escalated

    # /keep: the answer becomes a passage; the same question is answered locally, citing it.
    assert await rt.learning.keep([rid]) == [rid]
    assert await rt.stores["tenancy"].memory_ids() == [f"learned:{rid}"]
    before = len(fake_openai.completions())
    again = await _ask(graph)
    assert len(fake_openai.completions()) == before  # zero supervisor requests
    assert not again.escalated and again.route.workers == ["tenancy"]
    assert f"learned:{rid}" in [c.source for c in again.citations]
    assert again.learning.used == [f"learned:{rid}"] and again.learning.records == []
    assert "Contents insurance" in again.text
    assert again.ledger.totals.supervisor_calls == 0

    # forget: the passage and the record are gone; the question escalates again.
    await rt.learning.forget(rid)
    assert rt.learning.store.get(rid) is None
    assert await rt.stores["tenancy"].memory_ids() == []
    _escalation(fake_ollama, fake_openai)
    assert (await _ask(graph)).escalated


async def test_auto_keeps_answers_that_pass_their_checks(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(learning={"memory": "auto"})
    _escalation(fake_ollama, fake_openai)
    first = await _ask(graph)
    assert first.learning.kept == first.learning.records != []
    before = len(fake_openai.completions())
    again = await _ask(graph)
    assert len(fake_openai.completions()) == before and not again.escalated
    assert again.learning.used == [f"learned:{first.learning.kept[0]}"]
    # The question became an approved routing example the router trains on.
    path = graph.runtime.learning.routing_path
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"question": QUESTION, "expected_workers": ["tenancy"], "facts": []}]
    assert QUESTION in graph.runtime.router.workers[0].examples


async def test_auto_keeps_nothing_after_a_refusal_or_a_budget_stop(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(learning={"memory": "auto"})
    _escalation(fake_ollama, fake_openai, answer="I don't know. [tenancy]")
    refused = await _ask(graph)
    (rid,) = refused.learning.records
    assert refused.learning.kept == []
    assert graph.runtime.learning.store.get(rid).failed_checks == ["substantive"]  # type: ignore[union-attr]
    # A budget of one supervisor call: the plan is made, the synthesis is stopped.
    budget = make_graph(learning={"memory": "auto"}, cost={"max_supervisor_calls_per_run": 1})
    fake_ollama.script(MODEL, ESCALATE, ESCALATE)
    fake_openai.script(PLAN)
    stopped = await _ask(budget)
    assert stopped.learning.records == [] and stopped.learning.kept == []


async def test_memory_off_retrieves_no_learned_passages(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(learning={"memory": "auto"})
    _escalation(fake_ollama, fake_openai)
    assert (await _ask(graph)).learning.kept
    off = make_graph(learning={"memory": "off"})
    _escalation(fake_ollama, fake_openai)
    answer = await _ask(off)
    assert answer.escalated and answer.learning.used == []
    assert answer.learning.kept == [] and answer.learning.records  # still recorded


async def test_memory_min_score_keeps_distant_learned_passages_out(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(learning={"memory": "auto", "memory_min_score": 0.999})
    _escalation(fake_ollama, fake_openai)
    assert (await _ask(graph)).learning.kept
    seen = len(fake_ollama.chat_requests())
    _escalation(fake_ollama, fake_openai)
    again = await _ask(graph, QUESTION.replace("furniture", "sofa"))
    assert again.escalated and again.learning.used == []
    prompts = json.dumps(fake_ollama.chat_requests()[seen:])
    assert "<passages>" in prompts and 'source=\\"learned:' not in prompts  # never shown


async def test_a_learned_passage_never_silently_outranks_the_curated_corpus(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    question = "How quickly does Brightwater Lettings return deposits?"
    graph = make_graph()
    rt = graph.runtime
    # A (wrong) learned answer, kept by hand: 30 days; the corpus says 14.
    record = rt.learning.store.add(
        Record(
            worker="tenancy",
            kind="escalated",
            question=question,
            instruction=question,
            answer="Brightwater Lettings returns deposits within 30 days.",
            source_model="openai/fake-large",
        )
    )
    await rt.learning.keep([record.id])
    fake_ollama.respond_with(MODEL, _answer_from_learned("30 days.", 0.9))
    answer = await _ask(graph, question)
    sources = [c.source for c in answer.citations]
    assert f"learned:{record.id}" in sources
    curated = [s for s in sources if not s.startswith("learned:")]
    assert curated, sources  # the curated passage that disagrees is cited too
    assert "14" in answer.text and f"learned:{record.id}" in answer.text
    assert "curated source is the reviewed one" in answer.text


async def test_a_local_only_workers_records_never_reach_a_remote_model(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    from tests.conftest import demo_specs

    workers = [
        s.model_copy(update={"sensitivity": "local_only"}) if s.name == "tenancy" else s
        for s in demo_specs()
    ]
    # Learned with a supervisor on this machine (a remote one is never given a local_only
    # worker's part to answer, so it could not have taught it).
    local = make_graph(workers=workers, learning={"memory": "auto"})
    secret = "The Harbour Street flat uses contents insurer Kestrel Mutual, policy KM-55121."
    _escalation(fake_ollama, fake_openai, answer=f"{secret} [tenancy]")
    first = await _ask(local)
    (rid,) = first.learning.kept
    record = local.runtime.learning.store.get(rid)
    assert record is not None and record.sensitivity == "local_only"
    # Later, with a remote supervisor (policy allow): the learned passage is retrieved, the
    # specialist is unsure, the run escalates — and the record's text stays here.
    remote = make_graph(
        workers=workers, learning={"memory": "auto"}, supervisor={"egress": "remote"}
    )
    sent_before = len(fake_openai.completions())
    fake_ollama.respond_with(MODEL, _answer_from_learned(secret, 0.2))
    fake_openai.script(PLAN, "Answer. [tenancy]")
    later = await _ask(remote)
    assert later.escalated and later.learning.used == [f"learned:{rid}"]
    assert len(fake_openai.completions()) > sent_before
    sent = json.dumps(fake_openai.completions()[sent_before:])
    assert "KM-55121" not in sent and "Kestrel Mutual" not in sent
    assert "KM-55121" in later.text  # the user still gets it, joined on this machine


# -- exports ------------------------------------------------------------------------------------
def test_export_is_valid_redacted_by_default_and_deduplicated(tmp_path: Path) -> None:
    spec = next(s for s in builtin_specs() if s.name == "tenancy")
    store = LearningStore(tmp_path / "l.sqlite")
    from tandem.agents.privacy import Redactor, detector_for
    from tandem.graphs.learning import LearnedPassage
    from tandem.graphs.learning.recorder import redact_record

    redactor = Redactor(detector=detector_for())
    q = "Email anna@example.com about her deposit: how long may the landlord keep it?"
    passage = LearnedPassage(source="03-deposits.md", text="Deposits come back within 14 days.")
    from tandem.workers.records import Citation

    base = _record(
        question=q,
        instruction=q,
        answer="Within 14 days; tell anna@example.com.",
        passages=[passage],
        citations=[Citation(worker="tenancy", source="03-deposits.md")],
    )
    store.add(redact_record(base, redactor))
    store.add(redact_record(base.model_copy(update={"answer": "14 days (newer)."}), redactor))
    store.add(redact_record(_record(question="x?", instruction="x?", status="dropped"), redactor))
    store.add(_record(question="y?", instruction="y?", checks={"substantive": False}))
    for fmt in ("openai", "sharegpt"):
        out = tmp_path / f"{fmt}.jsonl"
        report = export_records(store, spec, out, fmt=fmt)  # type: ignore[arg-type]
        assert (report.written, report.duplicates, report.filtered) == (1, 1, 2)
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        turns = row["messages"] if fmt == "openai" else row["conversations"]
        roles = [t["role"] if fmt == "openai" else t["from"] for t in turns]
        assert roles == (
            ["system", "user", "assistant"] if fmt == "openai" else ["system", "human", "gpt"]
        )
        text = json.dumps(row)
        assert "anna@example.com" not in text and "<EMAIL_1>" in text
        content = turns[1]["content" if fmt == "openai" else "value"]
        assert '<passage id="S1" source="03-deposits.md">' in content
        target = json.loads(turns[2]["content" if fmt == "openai" else "value"])
        assert target == {
            "answer": "14 days (newer).",
            "confidence": 0.9,
            "citations": ["S1"],
            "needs_escalation": False,
        }
    raw = tmp_path / "raw.jsonl"
    export_records(store, spec, raw, raw=True)
    assert "anna@example.com" in raw.read_text()
    stats = distill_stats(store)
    assert stats["tenancy"]["records"] == 4 and stats["tenancy"]["pass"] == 1


def test_modelfile_names_base_adapter_system_and_parameters() -> None:
    spec = next(s for s in builtin_specs() if s.name == "health")
    text = modelfile(spec.model_copy(update={"model": "ollama:qwen2.5:1.5b"}), adapter="./lora")
    lines = text.splitlines()
    assert "FROM qwen2.5:1.5b" in lines and "ADAPTER ./lora" in lines
    assert any(line.startswith('SYSTEM """') for line in lines)
    assert spec.system_prompt.strip()[:40] in text
    assert "PARAMETER temperature 0" in lines
    assert "FROM qwen2.5-coder:0.5b" in modelfile(spec)  # the bundled model's Ollama name


# -- attribution of planned parts ---------------------------------------------------------------
def _state(
    route: Any, results: list[Any], *, synthesis_ok: bool = True, escalated: bool = False
) -> dict[str, Any]:
    from tandem.agents.privacy import GuardReport
    from tandem.workers.records import CallRecord

    calls = [CallRecord(role="supervisor", model="big", where="remote", purpose="plan")]
    calls.append(
        CallRecord(
            role="supervisor",
            model="big",
            where="remote",
            purpose="synthesize",
            error="" if synthesis_ok else "down",
        )
    )
    return {
        "query": "Q1? Q2?",
        "route": route,
        "results": results,
        "calls": calls,
        "guard": GuardReport(),
        "escalated": escalated,
        "notes": [],
    }


def test_planned_parts_covered_subtasks_and_routing_errors_are_attributed() -> None:
    from tandem.agents.router import RouteDecision
    from tandem.graphs.learning.recorder import attribute, routing_candidate
    from tandem.workers.records import WorkerResult

    plan = RouteDecision(kind="plan", workers=["tenancy", "finance"])
    weak = WorkerResult(
        worker="tenancy", instruction="Q1?", status="ok", answer="?", confidence=0.1
    )
    good = WorkerResult(
        worker="finance", instruction="Q2?", status="ok", answer="15%", confidence=0.9
    )
    failed = WorkerResult(worker="health", instruction="Q3?", status="failed", reason="down")
    covered = WorkerResult(
        worker="health",
        instruction="Q3?",
        status="ok",
        answer="Rest and fluids.",
        confidence=0.5,
        reason="answered by the supervisor: the worker failed (down)",
    )
    text = "Tenants need contents insurance [tenancy]. The credit is 15% [finance]."
    state = _state(plan, [weak, good, failed, covered])
    parts, answered = attribute(state, text, {})
    assert [(p.worker, p.kind, p.instruction, p.text) for p in parts] == [
        ("tenancy", "planned", "Q1?", "Tenants need contents insurance [tenancy]."),
        ("health", "covered", "Q3?", "Rest and fluids."),
    ]
    assert answered == ["finance"]
    candidate = routing_candidate(state, parts, answered)
    assert candidate is not None and candidate.expected_workers == ["finance", "tenancy", "health"]
    # Without a synthesis (the supervisor went down), only the covered subtask is its text.
    parts, _ = attribute(_state(plan, [weak, good, failed, covered], synthesis_ok=False), text, {})
    assert [p.kind for p in parts] == ["covered"]
    # Escalated direct answer where another specialist then answered: a routing error.
    direct = RouteDecision(kind="direct", workers=["tenancy"])
    state = _state(direct, [weak, good], escalated=True)
    parts, answered = attribute(state, "The credit is 15% [finance].", {})
    assert parts == [] and answered == ["finance"]
    assert routing_candidate(state, parts, answered).expected_workers == ["finance"]  # type: ignore[union-attr]
    # A direct answer that stood on its own teaches nothing.
    assert attribute(_state(direct, [good]), "15%", {}) == ([], [])


async def test_repl_keep_and_drop_act_on_the_last_answer(
    make_config: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    import io

    from rich.console import Console

    from tandem.agents.shell.repl import arun_repl
    from tandem.graphs import Runtime

    rt = Runtime(make_config(checkpointer="memory"))
    _escalation(fake_ollama, fake_openai)
    lines = iter(["/keep", QUESTION, "/keep", QUESTION, "/drop", "/exit"])

    async def read(prompt: str) -> str | None:
        return next(lines, None)

    out = io.StringIO()
    session = await arun_repl(rt, console=Console(file=out, width=200), read=read)
    text = out.getvalue()
    assert "error: no answer yet" in text
    first, second = session.answers
    (rid,) = first.learning.records
    assert "/keep to remember this answer" in text
    assert f"kept learned:{rid}" in text
    assert not second.escalated and second.learning.used == [f"learned:{rid}"]
    assert f"from memory: learned:{rid}" in text
    assert "the last answer left nothing to drop" in text  # the local answer taught nothing
    assert rt.learning.store.get(rid).status == "kept"  # type: ignore[union-attr]


def test_cli_records_keeps_exports_and_forgets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
) -> None:
    """The loop from the command line (in process: typer's runner, the fakes on loopback)."""
    from typer.testing import CliRunner

    from tandem.agents.shell.cli import app
    from tandem.workers.testing import fake_config_toml

    (tmp_path / "tandem.toml").write_text(
        fake_config_toml(fake_ollama, fake_openai, tmp_path / "data")
    )
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()

    def tandem(*args: str) -> str:
        result = cli.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    _escalation(fake_ollama, fake_openai)
    first = json.loads(tandem("ask", "--json", QUESTION))
    assert first["escalated"] and first["learning"]["pending"] == [1]
    listed = cli.invoke(app, ["memory", "list"], env={"COLUMNS": "80"}).output.splitlines()
    rows = listed[listed.index(next(ln for ln in listed if ln.startswith("━"))) + 1 :]
    assert len(rows) == 1, listed  # one line per record at 80 columns, the question cut…
    assert "tenancy" in rows[0] and "pending" in rows[0] and "Does my landlord" in rows[0]
    assert all(len(line) <= 80 for line in listed)
    shown = tandem("memory", "show", "1")
    assert "openai/fake-large" in shown and "supervisor_answered ✓" in shown
    assert "kept: learned:1" in tandem("memory", "keep", "1")
    before = len(fake_openai.completions())
    again = json.loads(tandem("ask", "--json", QUESTION))
    assert len(fake_openai.completions()) == before and not again["escalated"]
    assert {"worker": "tenancy", "source": "learned:1"} in again["citations"]
    stats = json.loads(tandem("distill", "stats", "--json"))
    assert stats["tenancy"]["kept"] == 1 and stats["tenancy"]["pass"] == 1
    assert "1 examples" in tandem("distill", "export", "tenancy", "-o", "t.jsonl", "-f", "sharegpt")
    row = json.loads((tmp_path / "t.jsonl").read_text())
    assert [t["from"] for t in row["conversations"]] == ["system", "human", "gpt"]
    assert "ollama create tandem-tenancy" in tandem("distill", "modelfile", "tenancy")
    assert "FROM qwen2.5:1.5b" in (tmp_path / "Modelfile").read_text()
    feedback = tandem("router", "feedback")
    assert "approved" in feedback and "tenancy" in feedback
    assert "forgot record 1" in tandem("memory", "forget", "1")
    assert "no learning records yet" in tandem("memory", "list")


async def test_kept_records_rebuild_a_lost_memory_collection(
    make_graph: Callable[..., Any],
    make_config: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
) -> None:
    from tandem.graphs import Runtime

    graph = make_graph(learning={"memory": "auto"})
    _escalation(fake_ollama, fake_openai)
    (rid,) = (await _ask(graph)).learning.kept
    store = graph.runtime.stores["tenancy"]
    store._client.delete_collection(store.memory_collection_name)  # a store rebuilt elsewhere
    fresh = Runtime(make_config(learning={"memory": "auto"}))
    assert await fresh.stores["tenancy"].memory_ids() == []
    await fresh.ensure_ingested(["tenancy"])
    assert await fresh.stores["tenancy"].memory_ids() == [f"learned:{rid}"]


async def test_a_failed_subtask_the_supervisor_covered_is_recorded_for_its_worker(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    cross = (
        "My landlord says my rent is going up by 8% — is that allowed? "
        "And how much of my rent can I claim back through the Renters' Tax Credit?"
    )
    from tandem.workers.testing import grounded_reply

    graph = make_graph()
    finance = graph.runtime.specs["finance"].system_prompt.strip()[:60]

    def respond(request: dict[str, Any]) -> str:
        # The finance specialist produces invalid output (twice: it fails, and the supervisor
        # answers its subtask before synthesizing); the others answer as usual.
        if finance in request["messages"][0]["content"]:
            return "not json"
        return str(grounded_reply(request))

    fake_ollama.respond_with(MODEL, respond)
    answer = await _ask(graph, cross)
    assert answer.route.kind == "plan"
    failed = [r for r in answer.worker_results if r.status == "failed"]
    assert [r.worker for r in failed] == ["finance"]
    (rid,) = answer.learning.records
    record = graph.runtime.learning.store.get(rid)
    assert record is not None and record.kind == "covered"
    assert record.worker == failed[0].worker and record.instruction == failed[0].instruction
    assert record.attempt_status == "failed" and record.answer.startswith("Supervisor answer to")
    assert record.checks_passed  # the supervisor answered that part itself
    # A routing example for the plan's specialists (pending under approve).
    assert graph.runtime.learning.store.routing_counts() == {"candidate": 1}
