"""Chroma in client/server mode: a real ``chroma run`` on loopback holds every worker store.

The server is the one that ships with the chromadb package (``.venv/bin/chroma``);
embeddings come from the fake Ollama (hashed bag of words), so the server only stores
vectors and never needs a model.
"""

from __future__ import annotations

import asyncio
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

from tandem.graphs import Runtime, TandemConfig, load_config
from tandem.workers import BackendUnavailable, ConfigError, WorkerStore
from tandem.workers.store import StoreSettings, open_client
from tandem.workers.testing import FakeOllama, FakeOpenAI

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"


def _chroma_binary() -> str | None:
    local = Path(sys.executable).with_name("chroma")
    return str(local) if local.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """A ``chroma run`` subprocess on 127.0.0.1 with its own data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = path.with_suffix(".log")

    def start(self) -> None:
        binary = _chroma_binary()
        assert binary is not None
        env = dict(os.environ, ANONYMIZED_TELEMETRY="False", NO_COLOR="1")
        cmd = [binary, "run", "--path", str(self.path), "--host", "127.0.0.1"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"chroma did not start: {self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if _chroma_binary() is None:
        pytest.skip("the `chroma` command (from the chromadb package) is not installed")
    server = ChromaServer(tmp_path / "chroma-server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _server_counts(url: str) -> dict[str, int]:
    """What the server holds, seen through Chroma's own HTTP API (not through tandem)."""
    base = f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    out = {}
    for coll in httpx.get(base, timeout=5).json():
        out[coll["name"]] = int(httpx.get(f"{base}/{coll['id']}/count", timeout=5).json())
    return out


def test_stores_section_parses_and_rejects_bad_urls(tmp_path: Path) -> None:
    file = tmp_path / "tandem.toml"
    file.write_text('[stores]\nurl = "chroma.internal:8000"\ntimeout = 12\n')
    config = load_config(file)
    assert config.stores.url == "http://chroma.internal:8000"
    assert config.stores.timeout == 12
    assert TandemConfig().stores.url is None
    file.write_text('[stores]\nurl = "ftp://chroma.internal/x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert "stores.url" in str(err.value)


def test_opening_a_server_client_does_not_touch_the_network(closed_port: int) -> None:
    # Building a runtime must not block (or fail) when the server is down: the client
    # connects on first use, from a worker thread.
    started = time.perf_counter()
    client = open_client(Path("/nonexistent"), StoreSettings(url=f"127.0.0.1:{closed_port}"))
    assert time.perf_counter() - started < 0.5
    assert repr(client) == f"LazyHttpClient('http://127.0.0.1:{closed_port}')"


@pytest.mark.integration  # a `chroma run` server process
async def test_ingest_and_query_go_to_the_server(
    chroma_server: ChromaServer, make_config: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "local"
    config = make_config(stores={"url": chroma_server.url}, data_dir=data_dir)
    runtime = Runtime(config)
    reports = await runtime.ensure_ingested(["tenancy", "finance"])
    assert reports["tenancy"].files > 0 and reports["tenancy"].added > 0
    counts = _server_counts(chroma_server.url)
    assert counts["tandem-tenancy"] == reports["tenancy"].added
    assert counts["tandem-finance"] == reports["finance"].added
    assert not (data_dir / "stores").exists()  # nothing was written locally

    # Idempotent through the server too; a second client (another machine) sees the data.
    again = await runtime.stores["tenancy"].ingest(runtime.specs["tenancy"].knowledge)
    assert again.added == 0 and again.skipped == reports["tenancy"].added
    other = Runtime(make_config(stores={"url": chroma_server.url}, data_dir=tmp_path / "b"))
    vector = (await other.embedder.embed([DIRECT_Q])).vectors[0]
    docs = await other.stores["tenancy"].search(vector, 3)
    assert len(docs) == 3
    assert any("14 days" in d.page_content for d in docs)
    assert docs[0].metadata["worker"] == "tenancy"


@pytest.mark.integration  # a `chroma run` server process
async def test_the_event_loop_keeps_running_while_the_server_answers(
    chroma_server: ChromaServer, make_config: Any, tmp_path: Path
) -> None:
    runtime = Runtime(make_config(stores={"url": chroma_server.url}, data_dir=tmp_path / "x"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        await runtime.ensure_ingested(["tenancy"])
    finally:
        task.cancel()
    assert ticks > 5


@pytest.mark.integration  # a `chroma run` server process
def test_full_graph_run_through_the_server(
    chroma_server: ChromaServer,
    make_graph: Any,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
) -> None:
    graph = make_graph(stores={"url": chroma_server.url}, data_dir=tmp_path / "empty")
    out = graph.invoke({"query": DIRECT_Q})
    answer = out["answer"]
    assert answer.route.kind == "direct"
    assert "14 days" in answer.text
    assert answer.citations and answer.citations[0].worker == "tenancy"
    assert answer.notes == []
    assert _server_counts(chroma_server.url)["tandem-tenancy"] > 0
    assert fake_openai.requests == []


@pytest.mark.integration  # a `chroma run` server process
async def test_a_dead_server_degrades_the_answer_with_a_clear_error(
    chroma_server: ChromaServer,
    make_graph: Any,
    tmp_path: Path,
    fake_ollama: FakeOllama,
) -> None:
    graph = make_graph(
        stores={"url": chroma_server.url, "connect_timeout": 2}, data_dir=tmp_path / "empty"
    )
    await graph.runtime.ensure_ingested(["tenancy"])
    chroma_server.stop()

    store: WorkerStore = graph.runtime.stores["tenancy"]
    with pytest.raises(BackendUnavailable) as err:
        await store.search([0.0] * 256, 2)
    message = str(err.value)
    assert f"cannot connect to the Chroma server at {chroma_server.url}" in message
    assert "chroma run" in message  # the hint
    assert err.value.worker == "tenancy" and err.value.host == chroma_server.url

    started = time.perf_counter()
    out = await graph.ainvoke({"query": DIRECT_Q})
    assert time.perf_counter() - started < 30
    answer = out["answer"]
    # The worker still answered (without retrieval) and says why.
    assert answer.worker_results and answer.worker_results[0].worker == "tenancy"
    notes = " ".join(answer.notes) + " ".join(r.reason for r in answer.worker_results)
    assert "Chroma server" in notes or "Chroma server" in answer.text, (answer, notes)
