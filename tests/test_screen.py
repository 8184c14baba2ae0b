"""The screen (issue 19, item 5): tables readable at 80 columns, a status line until the
first token, the demo's timings."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from tandem.agents.router import RouteDecision
from tandem.agents.shell.render import DemoRow, StreamPrinter, demo_summary, render_ledger
from tandem.graphs import Answer, Session, build_ledger
from tandem.workers.records import CallRecord

LONG_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? And how much of my rent "
    "can I claim back through the Renters' Tax Credit?"
)


def _console(width: int = 80, *, terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=terminal, color_system=None), out


def _answer(kind: str, workers: list[str], calls: int) -> Answer:
    rows = [
        CallRecord(role="worker", model="embedded:qwen2.5-coder-0.5b", where="local", seconds=9.0)
    ] * calls
    return Answer(
        text="x",
        route=RouteDecision(kind=kind, workers=workers),  # type: ignore[arg-type]
        ledger=build_ledger(rows),
    )


def test_the_demo_summary_fits_80_columns_one_line_per_question() -> None:
    rows = [
        DemoRow(
            "How quickly does Brightwater Lettings return a tenant's deposit?",
            _answer("direct", ["tenancy"], 2),
            41.3,
        ),
        DemoRow(LONG_Q, _answer("plan", ["tenancy", "finance"], 4), 123.4),
        DemoRow(
            "Please draft a short friendly message to my neighbour …",
            _answer("supervisor", [], 1),
            30.0,
        ),
    ]
    console, out = _console(80)
    console.print(demo_summary(rows))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    body = [line for line in lines if "│" in line]
    assert len(body) == 4  # three questions and the total, one line each (no wrapping)
    assert "My landlord says my r" in body[1] and "…" in body[1]
    assert "tenancy, finance" in body[1] and "123.4" in body[1]
    assert "3 questions" in body[3] and "194.7" in body[3]


def test_the_ledger_fits_80_columns_and_says_who_planned() -> None:
    rows = [
        CallRecord(role="embed", model="embedded:minilm", where="local", purpose="route"),
        CallRecord(
            role="worker",
            model="embedded:qwen2.5-coder-0.5b",
            where="local",
            worker="tenancy",
            purpose="answer",
            tokens_in=1234,
            tokens_out=56,
            seconds=21.5,
        ),
        CallRecord(
            role="supervisor",
            model="embedded:qwen2.5-coder-1.5b",
            where="local",
            purpose="conclude",
            tokens_in=700,
            tokens_out=40,
            seconds=30.2,
        ),
    ]
    console, out = _console(80)
    console.print(render_ledger(build_ledger(rows, planned_by="router")))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "worker·answer·tenancy" in text
    assert "plan: built by the router from the question's parts (no planning call)" in text


def test_the_status_line_shows_until_the_first_token() -> None:
    console, out = _console(80, terminal=True)
    printer = StreamPrinter(console)
    printer({"event": "status", "text": "routing…"})
    printer({"event": "status", "text": "asking tenancy, finance…"})
    assert printer._status is not None
    printer({"event": "token", "text": "Rent may rise once a year."})
    assert printer._status is None  # the answer replaced it
    printer({"event": "status", "text": "writing the answer…"})  # ignored once text shows
    assert printer._status is None
    printer.close()
    assert "Rent may rise once a year." in out.getvalue()


def test_no_status_line_when_the_output_is_not_a_terminal() -> None:
    console, out = _console(80)
    printer = StreamPrinter(console)
    printer({"event": "status", "text": "routing…"})
    assert printer._status is None
    printer.close()
    assert out.getvalue() == ""


async def test_a_run_reports_each_step_as_a_status(make_graph: Any) -> None:
    events: list[dict[str, Any]] = []
    session = Session(make_graph(planner={"mode": "auto"}))
    await session.ask(LONG_Q, events.append)
    statuses = [e["text"] for e in events if e["event"] == "status"]
    assert statuses[0] == "checking the question…"
    assert "routing…" in statuses and "writing the answer…" in statuses
    asking = [s for s in statuses if s.startswith("asking ")]
    assert asking and {"tenancy", "finance"} <= {w for s in asking for w in s[7:-1].split(", ")}


async def test_ready_assembles_the_chat_models_while_the_stores_fill(
    tmp_path: Any, monkeypatch: Any
) -> None:
    import threading
    import time as clock
    from pathlib import Path

    from tandem.agents.shell import _common
    from tandem.graphs import Runtime, TandemConfig
    from tandem.workers import backends

    events: list[tuple[str, str, float]] = []
    model = tmp_path / "model.bin"
    model.write_bytes(b"x")

    def ensure_model(name: str, cache: Any = None, progress: Any = None) -> Path:
        events.append(("model", name, clock.perf_counter()))
        clock.sleep(0.2)
        return model

    async def ensure_ingested(*args: Any, **kwargs: Any) -> dict[str, Any]:
        events.append(("ingest start", threading.current_thread().name, clock.perf_counter()))
        await __import__("asyncio").sleep(0.3)
        events.append(("ingest end", "", clock.perf_counter()))
        return {}

    monkeypatch.setattr(backends, "ensure_model", ensure_model)
    from tandem.workers.builtin import specs

    # The zero-config models: embedded workers and supervisor, MiniLM embeddings.
    rt = Runtime(TandemConfig(workers=specs(), builtin_workers=False, data_dir=tmp_path / "d"))
    monkeypatch.setattr(rt, "ensure_ingested", ensure_ingested)
    await _common.ready(rt, quiet=True)

    names = [e[1] for e in events if e[0] == "model"]
    assert names[0] == "minilm"  # ingestion needs only the embedding model
    assert sorted(names[1:]) == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    started = next(e[2] for e in events if e[0] == "ingest start")
    ended = next(e[2] for e in events if e[0] == "ingest end")
    chat = [e[2] for e in events if e[0] == "model" and e[1] != "minilm"]
    assert chat[0] < ended and started < chat[-1] + 0.2  # assembled while the stores filled
