"""Serving the graph: ``langgraph dev`` loads ``examples/deploy/langgraph.json`` and answers.

A real LangGraph dev server (langgraph-cli[inmem], offline, no license key) runs as a
subprocess on loopback; tandem inside it talks to the fake Ollama and the fake OpenAI
server of this test, configured through ``TANDEM_CONFIG`` exactly as in a deployment.
The client is LangGraph's own SDK.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.workers.testing import FakeOllama, FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH_JSON = ROOT / "examples" / "deploy" / "langgraph.json"
DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
WORKER_KEYS = ("name", "description", "examples", "system_prompt", "knowledge", "top_k")


def _langgraph_binary() -> str | None:
    local = Path(sys.executable).with_name("langgraph")
    return str(local) if local.exists() else shutil.which("langgraph")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    # JSON strings, numbers and arrays of them are valid TOML values.
    return json.dumps([str(v) for v in value] if isinstance(value, list | tuple) else value)


def _config_text(ollama: FakeOllama, openai: FakeOpenAI, data_dir: Path) -> str:
    from tandem.workers.builtin import specs as builtin_specs

    lines = [
        f"data_dir = {json.dumps(str(data_dir))}",
        "[supervisor]",
        'model = "openai/fake-large"',
        f"api_base = {json.dumps(openai.api_base)}",
        'extra = { api_key = "test" }',
        "timeout = 30",
        "[ollama]",
        f"host = {json.dumps(ollama.url)}",
        "timeout = 30",
        "[router]",
        'embed_model = "ollama:nomic-embed-text"',
        'kind = "centroid"',
        "min_score = 0.12",
        "part_min_score = 0.1",
        "plan_margin = 0.0",
        "[privacy]",
        'policy = "allow"',
    ]
    for spec in builtin_specs():
        data = spec.model_dump(mode="json")
        lines.append("[[workers]]")
        lines.append('model = "ollama:qwen2.5:1.5b"')
        lines.extend(
            f"{key} = {_toml_value(data[key])}" for key in WORKER_KEYS if data.get(key) is not None
        )
    return "\n".join(lines) + "\n"


class LangGraphDev:
    """``langgraph dev`` on 127.0.0.1 serving tandem's ``langgraph.json``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _langgraph_binary()
        assert binary is not None
        cmd = [binary, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
        # --allow-blocking: the dev server's blocking-call detector also trips on one-time
        # lazy imports (litellm, presidio) inside the first run; LangGraph Server does not.
        cmd += ["--port", str(self.port), "--config", str(LANGGRAPH_JSON), "--allow-blocking"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=LANGGRAPH_JSON.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.log.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("langgraph dev did not start: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def served(
    tmp_path: Path, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> Iterator[LangGraphDev]:
    if _langgraph_binary() is None:
        pytest.skip("the `langgraph` command (langgraph-cli[inmem]) is not installed")
    config = tmp_path / "tandem.toml"
    config.write_text(_config_text(fake_ollama, fake_openai, tmp_path / "data"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TANDEM_", "LANGSMITH_", "LANGCHAIN_", "OPENAI_", "OLLAMA_"))
    }
    env.update(
        TANDEM_CONFIG=str(config),
        TANDEM_PLUGINS="",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        NO_COLOR="1",
    )
    server = LangGraphDev(env, tmp_path / "langgraph.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_langgraph_json_points_at_the_served_graph() -> None:
    spec = json.loads(LANGGRAPH_JSON.read_text())
    assert spec["graphs"] == {"tandem": "tandem.graphs.serve:graph"}
    assert (LANGGRAPH_JSON.parent / spec["dependencies"][0] / "pyproject.toml").exists()


@pytest.mark.integration  # a `langgraph dev` server process
async def test_langgraph_dev_serves_tandem_and_the_sdk_gets_an_answer(
    served: LangGraphDev, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    from langgraph_sdk import get_client

    async with get_client(url=served.url, timeout=120) as client:
        assistants = await client.assistants.search(graph_id="tandem")
        assert assistants, "the server did not register the 'tandem' graph"

        state = await client.runs.wait(None, "tandem", input={"query": DIRECT_Q})
        assert isinstance(state, dict), state
        answer = state["answer"]
        assert answer["route"]["kind"] == "direct", answer
        assert answer["route"]["workers"] == ["tenancy"]
        assert "14 days" in answer["text"]
        assert answer["citations"] and answer["citations"][0]["worker"] == "tenancy"
        # The work really happened behind the server: the fake Ollama saw the worker's chat.
        chats = fake_ollama.requests_to("/api/chat")
        assert chats and chats[-1].body["model"] == "qwen2.5:1.5b"
        assert fake_openai.requests == []

        # A thread on the server keeps the conversation (the server's own checkpointer).
        thread = await client.threads.create()
        await client.runs.wait(thread["thread_id"], "tandem", input={"query": DIRECT_Q})
        saved = await client.threads.get_state(thread["thread_id"])
        assert "14 days" in saved["values"]["answer"]["text"]


def test_the_deploy_example_config_and_compose_file_agree() -> None:
    import yaml

    from tandem.graphs import load_config
    from tandem.workers.backends import BackendSettings, make_backend
    from tandem.workers.backends._hosts import OllamaPool

    deploy = LANGGRAPH_JSON.parent
    config = load_config(deploy / "tandem.toml")
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"ollama-1", "ollama-2", "chroma", "postgres", "tandem"} <= set(services)
    # Every server the config names is a service of the stack.
    named = [h.url for h in config.ollama.hosts] + [config.stores.url or "", config.checkpointer]
    for url in named:
        assert any(f"{name}:" in url for name in services), url
    assert services["tandem"]["environment"]["TANDEM_CONFIG"] == "/etc/tandem/tandem.toml"
    # Model placement: the 7B worker model only on the big box, embeddings on both.
    settings = BackendSettings(ollama=config.ollama)
    big = make_backend("ollama:qwen2.5:7b", settings)
    embed = make_backend(config.router.embed_model, settings)
    assert isinstance(big, OllamaPool) and [h.url for h in big.hosts] == ["http://ollama-1:11434"]
    assert isinstance(embed, OllamaPool) and len(embed.hosts) == 2
    # max_parallel of each host matches that server's OLLAMA_NUM_PARALLEL.
    for host in config.ollama.hosts:
        service = services[host.url.split("//")[1].split(":")[0]]
        assert str(host.max_parallel) == service["environment"]["OLLAMA_NUM_PARALLEL"]
