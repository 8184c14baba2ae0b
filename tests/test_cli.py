"""The ``tandem`` command end to end: a real subprocess, configured only by a tandem.toml
that points at a fake Ollama server and a fake OpenAI-compatible supervisor on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tandem.workers.builtin import specs
from tandem.workers.store import chunk_text
from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml

# every test runs the `tandem` command as a subprocess
pytestmark = pytest.mark.integration

TANDEM = str(Path(sys.executable).parent / "tandem")
JSON_KEYS = {"text", "route", "citations", "ledger"}


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    full_env.update(TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True", **env)
    return subprocess.run(
        [TANDEM, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def servers() -> Any:
    with (
        FakeOllama(chat_models=("qwen2.5:1.5b",), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        ol.latency = 0.0
        yield ol, oa


def _ask(servers: Any, tmp_path: Path, question: str, *, parallel: int = 1) -> dict[str, Any]:
    ollama, openai = servers
    toml = fake_config_toml(ollama, openai, tmp_path / "data", router={})
    toml = toml.replace("[ollama]\n", f"[ollama]\nmax_parallel = {parallel}\n")
    (tmp_path / "tandem.toml").write_text(toml)
    proc = _run(["ask", "--json", question], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one JSON object, got: {proc.stdout!r}"
    out: dict[str, Any] = json.loads(lines[0])
    assert set(out) >= JSON_KEYS
    assert set(out["route"]) >= {"kind", "workers", "reason"}
    assert all(set(c) == {"worker", "source"} for c in out["citations"])
    assert set(out["ledger"]) == {"calls", "totals", "planned_by"}
    return out


def test_ask_json_single_domain_goes_direct_without_the_supervisor(
    servers: Any, tmp_path: Path
) -> None:
    ollama, openai = servers
    out = _ask(servers, tmp_path, "How quickly does Brightwater Lettings return deposits?")
    assert out["route"]["kind"] == "direct"
    assert out["route"]["workers"] == ["tenancy"]
    assert openai.completions() == []
    assert out["citations"] and out["citations"][0]["worker"] == "tenancy"
    rows = out["ledger"]["calls"]
    assert sum(r["role"] == "worker" for r in rows) == len(ollama.requests_to("/api/chat"))
    assert sum(r["role"] == "supervisor" for r in rows) == 0


def test_ask_json_cross_domain_plans_runs_workers_concurrently_and_synthesizes(
    servers: Any, tmp_path: Path
) -> None:
    ollama, openai = servers
    ollama.latency = 0.3
    out = _ask(
        servers,
        tmp_path,
        "My landlord says my rent is going up by 8% — is that allowed? And how much of my "
        "rent can I claim back through the Renters' Tax Credit?",
        parallel=2,  # the default queues calls to one model on one host one at a time
    )
    assert out["route"]["kind"] == "plan"
    # The router split the question with confidence: its parts are the plan, so the one
    # large-model call is the synthesis.
    assert out["ledger"]["planned_by"] == "router"
    assert "no planning call" in out["route"]["reason"]
    purposes = [c["messages"][0]["content"][:40] for c in openai.completions()]
    assert len(purposes) == 1
    chats = ollama.requests_to("/api/chat")
    assert len(chats) >= 2
    overlapping = any(
        a.started < b.ended and b.started < a.ended
        for i, a in enumerate(chats)
        for b in chats[i + 1 :]
    )
    assert overlapping, "the planned worker calls did not run concurrently"
    rows = out["ledger"]["calls"]
    assert [r["purpose"] for r in rows if r["role"] == "supervisor"] == ["synthesize"]
    assert sum(r["role"] == "worker" for r in rows) == len(chats)
    chunks = {
        chunk
        for spec in specs()
        for f in spec.knowledge[0].glob("*.md")
        for chunk in chunk_text(f.read_text())
    }
    run_embeds = [
        r for r in ollama.requests_to("/api/embed") if not set(r.body["input"]) <= chunks
    ]  # the rest is the CLI ingesting the stores before the run
    assert sum(r["role"] == "embed" for r in rows) == len(run_embeds)
    assert {c["worker"] for c in out["citations"]} >= {"tenancy", "finance"}


def test_config_error_is_one_readable_line_and_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "tandem.toml").write_text('[[workers]]\nname = "Bad Name"\ndescription = "x"\n')
    proc = _run(["ask", "--json", "hello"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "tandem.toml" in proc.stderr and "workers[0]" in proc.stderr
    assert proc.stdout == ""


def test_unreachable_ollama_is_reported_with_the_host_not_a_traceback(
    tmp_path: Path,
) -> None:
    with FakeOpenAI() as openai:
        with FakeOllama() as dead:
            url = dead.url
            body = fake_config_toml(dead, openai, tmp_path / "data", router={})
        (tmp_path / "tandem.toml").write_text(body)  # the Ollama server is gone now
        proc = _run(["ask", "--json", "How much notice must my landlord give?"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert url in proc.stderr


def test_help_explains_every_command() -> None:
    proc = subprocess.run([TANDEM, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("ask", "chat", "demo", "ingest", "workers", "config", "models", "doctor"):
        assert command in proc.stdout
    for sub in (["models", "pull"], ["chat"], ["doctor"], ["ingest"]):
        out = subprocess.run([TANDEM, *sub, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "--config" in out.stdout, sub


def test_ask_streams_by_default_and_prints_the_answer_once(servers: Any, tmp_path: Path) -> None:
    ollama, openai = servers
    (tmp_path / "tandem.toml").write_text(
        fake_config_toml(ollama, openai, tmp_path / "data", router={})
    )
    proc = _run(["ask", "How quickly does Brightwater Lettings return deposits?"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first_line = proc.stdout.lstrip().splitlines()[0]
    assert "14 days" in first_line  # the streamed answer comes first, without a panel
    assert proc.stdout.count(first_line) == 1
    assert "route direct" in proc.stdout and "nothing left this machine" in proc.stdout


def test_ingest_counts_and_clear_errors_then_is_idempotent(servers: Any, tmp_path: Path) -> None:
    ollama, openai = servers
    (tmp_path / "tandem.toml").write_text(
        fake_config_toml(ollama, openai, tmp_path / "data", router={})
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pets.md").write_text("# Pets\nOne cat is allowed in Brightwater flats.\n")
    (docs / "photo.png").write_bytes(b"\x89PNG")
    (docs / "bad.txt").write_bytes(b"\xff\xfe\x00broken")
    secret = tmp_path / "secret.md"
    secret.write_text("# Not yours\nprivate\n")
    (docs / "escape.md").symlink_to(secret)
    proc = _run(["ingest", "tenancy", str(docs), str(tmp_path / "nope.md")], cwd=tmp_path)
    assert proc.returncode == 1  # something could not be ingested
    assert "Traceback" not in proc.stderr
    assert "tenancy: 1 files · 1 chunks added · 0 unchanged" in proc.stdout
    assert "escape.md: links outside" in proc.stderr
    assert "bad.txt: cannot read" in proc.stderr
    assert "nope.md: no such file or directory" in proc.stderr
    assert "ignored 1 files of other types" in proc.stderr
    again = _run(["ingest", "tenancy", str(docs / "pets.md")], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 files · 0 chunks added · 1 unchanged" in again.stdout
    unknown = _run(["ingest", "nobody", str(docs)], cwd=tmp_path)
    assert unknown.returncode == 1 and "no worker named 'nobody'" in unknown.stderr


def test_models_pull_list_and_doctor(servers: Any, tmp_path: Path) -> None:
    ollama, openai = servers
    (tmp_path / "tandem.toml").write_text(
        fake_config_toml(ollama, openai, tmp_path / "data", router={})
    )
    workers = "worker tenancy, worker finance, worker health"
    doctor = _run(["doctor"], cwd=tmp_path, COLUMNS="200")
    assert doctor.returncode == 0, doctor.stdout
    assert "✓ Ollama reachable at " + ollama.url in doctor.stdout
    assert f"✓ {workers}: ollama:qwen2.5:1.5b pulled" in doctor.stdout
    # Where they run: one line for the three workers on the same model and host.
    assert f"✓ {workers}: ollama:qwen2.5:1.5b is local (Ollama at " in doctor.stdout
    assert "✓ embeddings: ollama:nomic-embed-text pulled" in doctor.stdout
    assert f"✓ supervisor endpoint {openai.api_base} reachable" in doctor.stdout
    assert "✓ supervisor openai/fake-large credentials set" in doctor.stdout
    assert "✓ store tenancy: empty; its knowledge is ingested on first use" in doctor.stdout
    assert "✗" not in doctor.stdout and "0 to fix" in doctor.stdout

    ollama.chat_models.discard("qwen2.5:1.5b")
    sick = _run(["doctor"], cwd=tmp_path, COLUMNS="200")
    assert sick.returncode == 1
    assert (
        f"✗ {workers}: ollama:qwen2.5:1.5b not pulled  → fix: tandem models pull qwen2.5:1.5b"
        in sick.stdout
    )
    assert "Traceback" not in sick.stderr
    listing = _run(["models", "list"], cwd=tmp_path, COLUMNS="200")
    assert listing.returncode == 0, listing.stderr
    assert "✗ missing (tandem models pull qwen2.5:1.5b)" in listing.stdout
    pull = _run(["models", "pull"], cwd=tmp_path)
    assert pull.returncode == 0, pull.stderr
    assert "pull qwen2.5:1.5b ✓" in pull.stderr and "success" in pull.stderr
    assert [r.body["model"] for r in ollama.requests_to("/api/pull")] == ["qwen2.5:1.5b"]
    listing = _run(["models", "list"], cwd=tmp_path, COLUMNS="200")
    assert listing.stdout.count("✓ pulled") == 2  # the chat model and the embedding model

    unreachable = tmp_path / "dead.toml"
    unreachable.write_text(
        (tmp_path / "tandem.toml").read_text().replace(ollama.url, "http://127.0.0.1:9")
    )
    dead = _run(["doctor", "-c", str(unreachable)], cwd=tmp_path, COLUMNS="200")
    assert dead.returncode == 1 and "Traceback" not in dead.stderr
    assert "✗ Ollama not reachable at http://127.0.0.1:9" in dead.stdout
    assert "→ fix: start `ollama serve`" in dead.stdout


def test_config_show_masks_credentials(servers: Any, tmp_path: Path) -> None:
    ollama, openai = servers
    (tmp_path / "tandem.toml").write_text(
        fake_config_toml(ollama, openai, tmp_path / "data", router={})
    )
    proc = _run(["config", "show"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["supervisor"]["extra"]["api_key"] == "***"
    assert "test-key" not in proc.stdout
    assert shown["checkpointer"] == "sqlite"
