"""The REPL driven by scripted input: a real prompt_toolkit prompt on a pipe, rich output to a
buffer, the graph on the fake Ollama/OpenAI servers."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from tandem.agents.shell.repl import run_repl
from tandem.workers.testing import FakeOllama, FakeOpenAI

# pydantic warns (once per process, from whichever thread builds the schema first) about a
# ReadOnly TypedDict inside litellm's response types; it is not tandem's and not actionable.
pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier")

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)


class Recorder(io.StringIO):
    """A console file that remembers each write (to see an answer arrive in pieces)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def _console() -> tuple[Console, Recorder]:
    out = Recorder()
    return Console(file=out, width=120, force_terminal=False, color_system=None), out


def _repl(config: Any, script: str, **kw: Any) -> tuple[Any, str, Recorder]:
    console, out = _console()
    with create_pipe_input() as pipe:
        pipe.send_text(script)
        session = run_repl(config, console=console, pt_input=pipe, pt_output=DummyOutput(), **kw)
    return session, out.getvalue(), out


@pytest.fixture
def config(make_config: Any) -> Any:
    return make_config()


def test_streamed_answer_then_commands_show_session_data(
    config: Any, fake_openai: FakeOpenAI
) -> None:
    script = f"{DIRECT_Q}\n/cost\n/trace\n/privacy\n/workers\n/route {CROSS_Q}\n/exit\n"
    session, text, out = _repl(config, script)
    answer = session.answers[0]
    assert "14 days" in answer.text
    # The answer arrived in several writes, before the footer, not as one final print.
    pieces = [w for w in out.writes if w and w in answer.text]
    assert len(pieces) > 3
    assert text.count(answer.text) == 1
    assert "[direct tenancy]" in text
    # /cost: the session ledger with this run's calls and the local share.
    assert "session ledger · 1 Q" in text
    assert f"{len(answer.ledger.calls)} ({len(answer.ledger.calls)} local, 0 remote)" in text
    assert "local share 100%" in text
    # /trace: the nodes of the direct path with timings.
    for node in ("guard", "route", "worker", "check", "finish"):
        assert f"\n {node}" in text or f"{node} " in text
    assert "last run: How quickly" in text
    # /privacy: nothing left the machine (no supervisor call on the direct path).
    assert "policy allow" in text and "nothing left this machine this session" in text
    # /workers and /route (which ran no model call beyond the routing embedding).
    assert "tenancy" in text and "finance" in text and "health" in text
    assert "route: plan → " in text and "why: " in text
    assert fake_openai.completions() == []
    assert "bye" in text


def test_follow_up_sees_the_thread_and_thread_survives_a_restart(
    config: Any, fake_openai: FakeOpenAI
) -> None:
    session, text, _ = _repl(config, f"{DIRECT_Q}\n{CROSS_Q}\n/exit\n")
    thread = session.thread_id
    assert len(session.answers) == 2, text
    assert fake_openai.completions(), text
    history = fake_openai.completions()[0]["messages"][-1]["content"]
    assert "<history>" in history and "Brightwater" in history
    # A new process: the thread is listed and resumed by a prefix of its id.
    _, text2, _ = _repl(config, f"/thread list\n/thread {thread[:6]}\n/thread\n/exit\n")
    assert thread in text2 and "How quickly does Brightwater" in text2
    assert f"resumed thread {thread} (2 turns)" in text2
    assert f"thread {thread} · 2 turns" in text2
    # --thread on start, then /thread new starts an empty one.
    session3, text3, _ = _repl(config, "/thread new\n/thread\n/exit\n", thread_id=thread)
    assert f"resumed thread {thread} (2 turns)" in text3
    assert session3.thread_id != thread and f"thread {session3.thread_id} · 0 turns" in text3


def test_multiline_model_swap_ingest_history_and_errors(
    config: Any, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.chat_models.add("qwen2.5:3b")
    doc = tmp_path / "notes.md"
    doc.write_text("# Pets\nTenants of Brightwater Lettings may keep one cat.\n")
    script = (
        "/model tenancy ollama:qwen2.5:3b\n"
        "/model nobody ollama:x\n"
        f"/ingest tenancy {doc} {tmp_path / 'missing.md'}\n"
        "How quickly does Brightwater \\\nLettings return deposits?\n"
        "/frobnicate\n"
        "/exit\n"
    )
    session, text, _ = _repl(config, script)
    assert "tenancy: ollama:qwen2.5:1.5b → ollama:qwen2.5:3b for this session" in text
    assert "no worker named 'nobody'" in text
    assert "tenancy: 1 files · 1 chunks added" in text and "missing.md" in text
    assert session.last is not None
    assert session.last.query == "How quickly does Brightwater \nLettings return deposits?"
    assert {r.body["model"] for r in fake_ollama.requests_to("/api/chat")} == {"qwen2.5:3b"}
    assert "unknown command /frobnicate" in text
    history = (config.data_dir / "history").read_text()
    assert "/model tenancy ollama:qwen2.5:3b" in history


def test_ctrl_c_cancels_the_answer_not_the_session(config: Any, fake_ollama: FakeOllama) -> None:
    fake_ollama.latency = 3.0
    stop = threading.Event()

    def press_ctrl_c_while_the_worker_answers() -> None:
        # Only once the answer is being produced: SIGINT anywhere else would hit pytest.
        while not stop.is_set():
            if fake_ollama.in_flight_by_model.get("qwen2.5:1.5b"):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    presser = threading.Thread(target=press_ctrl_c_while_the_worker_answers, daemon=True)
    presser.start()
    try:
        session, text, _ = _repl(config, f"{DIRECT_Q}\n/trace\n/exit\n")
    finally:
        stop.set()
        presser.join(5)
    assert "cancelled" in text and "(the session goes on)" in text
    assert session.answers == [] and session.last is not None and session.last.cancelled
    assert "last run (cancelled)" in text
    assert "worker" in text.split("last run (cancelled)")[1]  # the nodes that ran
    assert "bye" in text


def test_help_and_workers_read_at_80_columns(config: Any) -> None:
    """/help keeps each command's description in its column when it wraps (the text went
    back to column 0 under the command names), /workers gives each worker one line, and the
    banner names the roles that run in the same place together."""
    out = Recorder()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    with create_pipe_input() as pipe:
        pipe.send_text("/help\n/workers\n/exit\n")
        run_repl(config, console=console, pt_input=pipe, pt_output=DummyOutput())
    text = out.getvalue()
    # The banner says where the three workers run once, not on a line each.
    assert " ".join(text.split()).count("worker tenancy, worker finance, worker health: local") == 1
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("/help "))
    assert all(len(line) <= 80 for line in lines[start:]), lines[start:]
    column = lines[start].index("this help")
    commands = lines[start : next(i for i, line in enumerate(lines) if line.startswith("/exit"))]
    assert len(commands) > 13  # some descriptions wrapped at 80 columns
    for line in commands:
        assert line.startswith("/") or line[:column].strip() == "", line
    shown = lines[start:]
    rows = [line for line in shown if line.lstrip().startswith(("tenancy ", "finance ", "health "))]
    assert len(rows) == 3 and all("│" in row for row in rows), lines
