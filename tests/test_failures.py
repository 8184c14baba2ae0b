"""Failures look like failures (issue 13): errors are never answer text, an incomplete or
model-less answer says so and ``tandem ask`` exits non-zero, ``policy = "ask"`` without a
terminal fails clearly, invalid text is refused, an Ollama stream that trickles is cut at
``[ollama] timeout`` (a total deadline, not a per-read one)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tandem.agents.privacy import egress_log_path, read_egress_log
from tandem.agents.shell.cli import app
from tandem.workers.errors import UsageError
from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml

pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier")

CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
OFF_TOPIC = "Who painted the Mona Lisa?"
ERROR_WORDS = ("model call failed", "injected failure", "[worker", "Traceback", "HTTP 500")


def _fail_finance(fake_ollama: FakeOllama) -> None:
    def responder(body: dict[str, Any]) -> str:
        prompt = json.dumps(body["messages"])
        if "Renters" in prompt and "Tax Credit" in prompt and "Velorian" not in prompt:
            raise RuntimeError("boom")
        from tandem.workers.testing import grounded_reply

        return grounded_reply(body)

    fake_ollama.respond_with("qwen2.5:1.5b", responder)


async def test_a_failed_part_is_named_not_its_error_text(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.fail(status=500, message="injected failure", path="/api/chat", times=50)
    graph = make_graph(reliability={"escalate_failed": False})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert answer.status == "unanswered"
    for words in ERROR_WORDS:
        assert words not in answer.text
    sent = json.dumps(fake_openai.completions())
    assert "injected failure" not in sent  # nor is it passed to the supervisor as a result
    assert any("failed" in n for n in answer.notes)  # the error is in the notes


async def test_a_missing_part_makes_a_partial_answer(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    plan = {
        "subtasks": [
            {"worker": "tenancy", "instruction": "Is an 8% rent rise allowed?"},
            {"worker": "finance", "instruction": "How much is the Renters' Tax Credit?"},
        ],
        "rationale": "two parts",
    }
    fake_openai.script(plan)
    graph = make_graph(reliability={"escalate_failed": False})
    fake_ollama.fail(status=500, message="injected failure", path="/api/chat", times=0)
    original = fake_ollama._content_for

    def content(model: str, body: dict[str, Any]) -> str:
        if "How much is the Renters" in json.dumps(body["messages"]):
            return "not json at all"  # twice: invalid output after one repair
        return original(model, body)

    fake_ollama._content_for = content  # type: ignore[method-assign]
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert answer.status == "partial"
    assert any("finance" in m for m in answer.missing)
    for words in ERROR_WORDS:
        assert words not in answer.text


async def test_an_unreachable_supervisor_with_no_fitting_worker_is_unanswered(
    make_graph: Any, closed_port: int
) -> None:
    graph = make_graph(supervisor={"api_base": f"http://127.0.0.1:{closed_port}/v1"})
    answer = (await graph.ainvoke({"query": OFF_TOPIC}))["answer"]
    assert answer.route.kind == "supervisor"
    assert answer.status == "unanswered" and answer.text.startswith("No answer")


async def test_invalid_utf8_is_a_clear_usage_error(make_graph: Any) -> None:
    graph = make_graph()
    with pytest.raises(UsageError, match="not valid UTF-8"):
        await graph.ainvoke({"query": "rent \udcff deposit"})


async def test_a_trickling_ollama_stream_stops_at_the_timeout(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    fake_ollama.trickle(0.05)  # one character every 50 ms: no read ever times out
    graph = make_graph(
        ollama={"timeout": 1.0},
        retry={"max_attempts": 1},
        reliability={"escalate_failed": False},
    )
    started = time.perf_counter()
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
    assert time.perf_counter() - started < 8  # a trickled reply of ~20 s was cut
    assert any("[ollama] timeout = 1 s" in n for n in answer.notes), answer.notes


# -- tandem ask: exit codes ----------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path) -> Any:
    def run(*args: str, extra: tuple[str, ...] = (), **kw: Any) -> Any:
        toml = fake_config_toml(fake_ollama, fake_openai, data_dir, router={}, **kw)
        toml += "\n".join(extra) + "\n"
        path = tmp_path / "tandem.toml"
        path.write_text(toml)
        return CliRunner().invoke(app, [*args, "--config", str(path)], catch_exceptions=False)

    return run


def test_ask_exit_code_zero_for_a_complete_answer(cli: Any) -> None:
    result = cli("ask", "--no-stream", DIRECT_Q)
    assert result.exit_code == 0, result.output


def test_ask_exit_code_four_when_no_model_answered(
    cli: Any, fake_openai: FakeOpenAI, fake_ollama: FakeOllama
) -> None:
    fake_openai.fail(status=400, message="bad request", path="/v1/chat/completions", times=20)
    result = cli("ask", "--json", OFF_TOPIC)
    assert result.exit_code == 4, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "unanswered"


def test_ask_policy_without_a_terminal_fails_clearly(cli: Any, fake_openai: FakeOpenAI) -> None:
    result = cli(
        "ask",
        "--no-stream",
        OFF_TOPIC,
        trust_supervisor=False,
        extra=(
            "[privacy]",
            'policy = "ask"',
        ),
    )
    assert result.exit_code == 5, result.output
    assert "--approve-egress" in result.output and "nothing was sent" in result.output
    assert fake_openai.completions() == []


def test_ask_with_approve_egress_sends_and_logs(
    cli: Any, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    result = cli(
        "ask",
        "--no-stream",
        "--approve-egress",
        OFF_TOPIC,
        trust_supervisor=False,
        extra=("[privacy]", 'policy = "ask"'),
    )
    assert result.exit_code == 0, result.output
    records, _ = read_egress_log(egress_log_path(data_dir))
    assert records and all(r.approved == "user" and r.outcome == "ok" for r in records)
    assert len(fake_openai.completions()) == len(records)


# -- knowledge that is not there -----------------------------------------------------------


async def test_a_missing_knowledge_folder_is_reported_once_and_its_worker_not_asked(
    make_graph: Any, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    from tandem.workers import WorkerSpec

    from .conftest import demo_specs

    ghost = WorkerSpec(
        name="ghost",
        description="Brightwater Lettings deposits returned tenants landlord",
        examples=(DIRECT_Q,),
        model="ollama:qwen2.5:1.5b",
        knowledge=(tmp_path / "does-not-exist",),
    )
    graph = make_graph(workers=[*demo_specs(), ghost])
    rt = graph.runtime
    assert "does-not-exist" in rt.knowledge_problems["ghost"]
    calls: list[str] = []
    real = rt.stores["ghost"].ingest

    async def counting(*a: Any, **k: Any) -> Any:
        calls.append("ingest")
        return await real(*a, **k)

    rt.stores["ghost"].ingest = counting  # type: ignore[method-assign]
    for _ in range(2):
        await rt.ensure_ingested()
        answer = (await graph.ainvoke({"query": "ghost: " + DIRECT_Q}))["answer"]
        assert "ghost" not in answer.route.workers
        assert not any(r.worker == "ghost" for r in answer.worker_results)
    assert calls == []  # never retried
    notes = [n for n in answer.notes if "ghost" in n]
    assert len(notes) == 1 and "does not exist" in notes[0] and "not asked" in notes[0]


# -- doctor ----------------------------------------------------------------------------------


def _doctor(tmp_path: Path, toml: str) -> Any:
    path = tmp_path / "tandem.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + toml)
    return CliRunner().invoke(app, ["doctor", "--config", str(path)], catch_exceptions=False)


def test_doctor_flags_an_unknown_provider_without_litellms_banner(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    result = _doctor(
        tmp_path,
        f'[supervisor]\nmodel = "nosuchprovider/foo"\n[ollama]\nhost = "{fake_ollama.url}"\n'
        '[router]\nembed_model = "ollama:nomic-embed-text"\n'
        '[[workers]]\nname = "health"\ndescription = "health"\nmodel = "ollama:qwen2.5:1.5b"\n'
        f'knowledge = ["{tmp_path / "missing"}"]\n',
    )
    assert result.exit_code == 1
    out = result.output
    assert "unknown provider 'nosuchprovider'" in out
    assert "knowledge path" in out and "does not exist" in out and "workers[0] (health)" in out
    assert "\x1b[" not in out and "Provider List" not in out
    assert "supervisor: nosuchprovider/foo is remote" in out
    assert "privacy detection:" in out


def test_an_unknown_embedded_name_names_file_and_key(tmp_path: Path) -> None:
    result = _doctor(
        tmp_path,
        '[[workers]]\nname = "health"\ndescription = "health"\nmodel = "embedded:nosuch"\n',
    )
    assert result.exit_code == 1
    assert "workers[0] (health).model" in result.output and "tandem.toml" in result.output
    assert "not a bundled model" in result.output
