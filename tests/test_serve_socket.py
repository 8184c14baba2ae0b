"""``tandem serve`` as a real process on a real socket (integration tier), and the CLI's traces
reaching an OTLP collector."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml

pytestmark = pytest.mark.integration

TANDEM = str(Path(sys.executable).parent / "tandem")
QUESTION = "How quickly does Brightwater Lettings return a tenant's deposit?"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "OTEL_"))}
    env.update(TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, FakeOllama, FakeOpenAI]]:
    with (
        FakeOllama(chat_models=("qwen2.5:1.5b",), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        (tmp_path / "tandem.toml").write_text(fake_config_toml(ol, oa, tmp_path / "data"))
        yield tmp_path, ol, oa


def _serve(cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TANDEM, "serve", *args],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"tandem serve exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("tandem serve did not become ready")


def test_an_open_bind_without_keys_is_refused(project: Any) -> None:
    cwd, _, _ = project
    proc = subprocess.run(
        [TANDEM, "serve", "--host", "0.0.0.0", "--port", str(_port())],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in proc.stderr


def test_serve_answers_streams_and_shuts_down_gracefully(project: Any) -> None:
    cwd, ollama, _ = project
    port = _port()
    proc = _serve(cwd, "--port", str(port), TANDEM_API_KEYS="sk-one,sk-two")
    try:
        _wait_ready(proc, port)
        base = f"http://127.0.0.1:{port}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="sk-nope-000000", base_url=base).models.list()
        client = openai.OpenAI(api_key="sk-two", base_url=base, max_retries=0)
        whole = client.chat.completions.create(
            model="tandem", messages=[{"role": "user", "content": QUESTION}]
        )
        assert "14 days" in (whole.choices[0].message.content or "")
        assert whole.model_extra is not None and whole.model_extra["tandem"]["route"]["kind"]
        ollama.latency = 0.3  # slow enough to stop the server mid-stream
        stream = client.chat.completions.create(
            model="tandem/tenancy", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        proc.send_signal(signal.SIGTERM)  # in-flight requests get [serve] shutdown_grace
        rest = list(chunks)
        text = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
        assert text == whole.choices[0].message.content
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=30)
    assert "tandem serve: http://127.0.0.1:" in err and "2 API key(s)" in err


class _Collector(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: keeps the spans of every export request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[Any] = []


class _CollectorHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        server: Any = self.server
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                server.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_cli_exports_spans_when_otlp_is_configured(project: Any) -> None:
    cwd, _, _ = project
    collector = _Collector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        proc = subprocess.run(
            [TANDEM, "ask", "--json", QUESTION],
            cwd=cwd,
            env=_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="tandem-cli-test"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
    finally:
        collector.shutdown()
        collector.server_close()
    names = [s.name for s in collector.spans]
    assert names.count("invoke_workflow tandem") == 1
    assert "invoke_agent tenancy" in names and "tandem.node route" in names
    chat = [s for s in collector.spans if s.name.startswith("chat ")]
    assert len(chat) == sum(c["role"] == "worker" for c in answer["ledger"]["calls"])
    for span in collector.spans:  # no question text left the process
        assert all("Brightwater" not in str(a.value) for a in span.attributes)


def test_a_hundred_concurrent_streams_each_get_their_own_answer(project: Any) -> None:
    import asyncio
    import re

    cwd, ollama, _ = project
    ref = re.compile(r"\bref (zq\d{4})\b")

    def echo(request: dict[str, Any]) -> str:
        task = next(m["content"] for m in reversed(request["messages"]) if "Task:" in m["content"])
        token = ref.search(task)
        answer = f"Within 14 days (ref {token.group(1) if token else 'none'})."
        reply = {"answer": answer, "confidence": 0.9, "citations": [], "needs_escalation": False}
        return json.dumps(reply)

    ollama.respond_with("qwen2.5:1.5b", echo)
    toml = (cwd / "tandem.toml").read_text()
    toml = toml.replace("min_score = 0.12", "min_score = 0.05")  # tokens add routing noise
    toml = toml.replace("[ollama]\n", "[ollama]\nmax_parallel = 32\n")
    (cwd / "tandem.toml").write_text(toml + "[serve]\nmax_concurrent = 100\n")
    port = _port()
    proc = _serve(cwd, "--port", str(port))

    async def clients() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=120) as http:
            client = openai.AsyncOpenAI(
                api_key="unused", base_url=f"http://127.0.0.1:{port}/v1", http_client=http
            )

            async def one(n: int) -> tuple[int, str]:
                stream = await client.chat.completions.create(
                    model="tandem",
                    messages=[{"role": "user", "content": f"{QUESTION} ref zq{n:04d}"}],
                    stream=True,
                    extra_body={"thread_id": f"c{n}"} if n % 2 else {},
                )
                text = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
                return n, text

            return list(await asyncio.gather(*(one(n) for n in range(100))))

    try:
        _wait_ready(proc, port)
        answers = asyncio.run(clients())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert len(answers) == 100
    assert all(ref.findall(text) == [f"zq{n:04d}"] for n, text in answers)
