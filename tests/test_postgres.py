"""``checkpointer = "postgresql://…"``: threads in a real PostgreSQL, shared between processes.

The server is a throwaway cluster (``initdb`` + ``pg_ctl``) from the machine's PostgreSQL
binaries (Debian's ``postgresql`` package; ``.ci/run`` installs it when missing), on
127.0.0.1 and a free port. PostgreSQL refuses to run as root, so under root the cluster
is owned by the ``postgres`` user (or ``nobody``) through ``runuser``.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.graphs import build_graph
from tandem.graphs.checkpoint import (
    DURABILITY,
    list_threads,
    open_checkpointer,
    open_checkpointer_sync,
)
from tandem.workers import BackendUnavailable, ConfigError
from tandem.workers.testing import FakeOllama, FakeOpenAI

# starts a throwaway PostgreSQL server
pytestmark = pytest.mark.integration

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
WORKER_KEYS = ("name", "description", "examples", "system_prompt", "knowledge", "top_k")


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, user ``tandem``)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
        self.data = self.root / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb/postgres refuse to run as root
            user = "postgres" if _user_exists("postgres") else "nobody"
            self.prefix = ["runuser", "-u", user, "--"]
            self.root.chmod(0o755)
            shutil.chown(self.root, user=user)
        self.url = f"postgresql://tandem@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=60, cwd=self.root
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        initdb = self.bindir / "initdb"
        self._run(str(initdb), "-D", str(self.data), "-U", "tandem", "--auth=trust", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F"
        log = str(self.root / "server.log")
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        subprocess.run(
            [*self.prefix, pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            cwd=self.root,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _database(postgres: PostgresServer, name: str) -> str:
    """A fresh database per test, so threads from one test never show up in another."""
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


async def test_threads_persist_in_postgres(postgres: PostgresServer, make_config: Any) -> None:
    url = _database(postgres, "persist")
    config = make_config(checkpointer=url)
    thread = {"configurable": {"thread_id": "pg-1"}}
    async with open_checkpointer(config) as saver:
        assert type(saver).__name__ == "AsyncPostgresSaver"
        graph = build_graph(config, checkpointer=saver)
        out = await graph.ainvoke({"query": DIRECT_Q}, thread, durability=DURABILITY)
        assert "14 days" in out["answer"].text
    async with open_checkpointer(config) as saver:  # reopened: the thread is still there
        assert await list_threads(saver) == ["pg-1"]
        graph = build_graph(config, checkpointer=saver)
        out = await graph.ainvoke({"query": "And what about pets?"}, thread)
        assert out["messages"][0].content == DIRECT_Q
        assert len(out["messages"]) == 4
    with open_checkpointer_sync(config) as saver:  # the sync saver reads the same tables
        assert type(saver).__name__ == "PostgresSaver"
        state = build_graph(config, checkpointer=saver).get_state(thread)
        assert len(state.values["messages"]) == 4


def _config_toml(config: Any, url: str, data_dir: Path) -> str:
    lines = [
        f"data_dir = {json.dumps(str(data_dir))}",
        f"checkpointer = {json.dumps(url)}",
        "[supervisor]",
        f"model = {json.dumps(config.supervisor.model)}",
        f"api_base = {json.dumps(config.supervisor.api_base)}",
        'extra = { api_key = "test" }',
        "[ollama]",
        f"host = {json.dumps(config.ollama.host)}",
        "[router]",
        f"embed_model = {json.dumps(config.router.embed_model)}",
        f"kind = {json.dumps(config.router.kind)}",
        f"min_score = {config.router.min_score}",
        f"part_min_score = {config.router.part_min_score}",
        f"plan_margin = {config.router.plan_margin}",
        "[privacy]",
        'policy = "allow"',
    ]
    for spec in config.workers:
        data = spec.model_dump(mode="json")
        lines += ["[[workers]]", f"model = {json.dumps(spec.model)}"]
        for key in WORKER_KEYS:
            value = data.get(key)
            if value is not None:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


RESUME = """
import json, sys
from tandem.graphs import build_graph, load_config
from tandem.graphs.checkpoint import DURABILITY, open_checkpointer_sync

config = load_config()
thread = {"configurable": {"thread_id": sys.argv[1]}}
with open_checkpointer_sync(config) as saver:
    graph = build_graph(config, checkpointer=saver)
    waiting = list(graph.get_state(thread).next)
    out = graph.invoke(None, thread, durability=DURABILITY)
    answer = out["answer"]
    print(json.dumps({"waiting": waiting, "route": answer.route.kind, "text": answer.text,
                      "workers": sorted(r.worker for r in answer.worker_results)}))
"""


async def test_a_second_process_resumes_a_thread_the_first_one_started(
    postgres: PostgresServer,
    make_config: Any,
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    url = _database(postgres, "resume")
    config = make_config(checkpointer=url)
    thread = {"configurable": {"thread_id": "handover"}}
    # Process 1 (this one): plan + both workers, then stop before synthesis.
    async with open_checkpointer(config) as saver:
        graph = build_graph(config, checkpointer=saver)
        await graph.ainvoke(
            {"query": CROSS_Q}, thread, interrupt_before=["synthesize"], durability=DURABILITY
        )
        assert (await graph.aget_state(thread)).next == ("synthesize",)
    worker_chats = len(fake_ollama.requests_to("/api/chat"))
    assert worker_chats >= 2
    assert len(fake_openai.completions()) == 1  # the plan

    # Process 2: another interpreter, its own data dir, the same PostgreSQL.
    other = tmp_path / "other"
    shutil.copytree(data_dir / "stores", other / "stores")
    toml = tmp_path / "tandem.toml"
    toml.write_text(_config_toml(config, url, other))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_CONFIG=str(toml), TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", RESUME, "handover"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = json.loads(result.stdout.strip().splitlines()[-1])
    assert done["waiting"] == ["synthesize"]
    assert done["route"] == "plan"
    assert done["workers"] == ["finance", "tenancy"]
    assert done["text"]
    # The workers' finished steps came from PostgreSQL: nobody asked the workers again,
    # and the supervisor was called once more, for the synthesis only.
    assert len(fake_ollama.requests_to("/api/chat")) == worker_chats
    assert len(fake_openai.completions()) == 2

    async with open_checkpointer(config) as saver:
        state = await build_graph(config, checkpointer=saver).aget_state(thread)
        assert state.next == ()
        assert state.values["answer"].text == done["text"]


async def test_unreachable_or_wrong_postgres_is_a_clear_error(
    postgres: PostgresServer, make_config: Any, closed_port: int
) -> None:
    config = make_config(checkpointer=f"postgresql://tandem:s3cret@127.0.0.1:{closed_port}/x")
    with pytest.raises(BackendUnavailable) as err:
        async with open_checkpointer(config):
            pass
    message = str(err.value)
    assert f"cannot connect to PostgreSQL at postgresql://tandem:***@127.0.0.1:{closed_port}/x" in (
        message
    )
    assert "s3cret" not in message
    with pytest.raises(BackendUnavailable), open_checkpointer_sync(config):
        pass

    missing = make_config(checkpointer=postgres.url.rsplit("/", 1)[0] + "/no_such_db")
    with pytest.raises(ConfigError) as err2:
        async with open_checkpointer(missing):
            pass
    assert "no_such_db" in str(err2.value) and err2.value.key == "checkpointer"
