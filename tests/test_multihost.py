"""Several Ollama hosts per model: least-loaded choice, per-host caps, failover, cooldown.

Two fake Ollama servers (real HTTP, Ollama's JSON) stand in for two GPU boxes; one is
stopped in the middle of a batch of graph runs and later started again on its port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.graphs import load_config
from tandem.workers import BackendUnavailable
from tandem.workers.backends import BackendSettings, OllamaSettings, make_backend
from tandem.workers.backends._hosts import OllamaPool, host_health, reset_host_health
from tandem.workers.testing import FakeOllama

CHAT = "qwen2.5:1.5b"
EMBED = "nomic-embed-text"
DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(autouse=True)
def _fresh_health() -> Iterator[None]:
    reset_host_health()
    yield
    reset_host_health()


def _fake(latency: float = 0.0) -> FakeOllama:
    return FakeOllama(chat_models=(CHAT,), embed_models=(EMBED,), latency=latency)


def _pool(hosts: list[Any], **settings: Any) -> OllamaPool:
    backend = make_backend(
        f"ollama:{CHAT}", BackendSettings(ollama=OllamaSettings(hosts=hosts, **settings))
    )
    assert isinstance(backend, OllamaPool)
    return backend


def test_hosts_come_from_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "tandem.toml"
    file.write_text(
        "[ollama]\nhost_cooldown = 5\n"
        '[[ollama.hosts]]\nurl = "gpu-1:11434"\nweight = 2\nmax_parallel = 4\n'
        '[[ollama.hosts]]\nurl = "http://gpu-2:11434"\nmodels = ["nomic-embed-text"]\n'
    )
    config = load_config(file)
    hosts = config.ollama.hosts
    assert [h.url for h in hosts] == ["http://gpu-1:11434", "http://gpu-2:11434"]
    assert hosts[0].weight == 2 and hosts[0].max_parallel == 4
    settings = BackendSettings(ollama=config.ollama)
    # Model placement: the embedding model is on both boxes, the chat model only on gpu-1.
    embed = make_backend(f"ollama:{EMBED}", settings)
    chat = make_backend(f"ollama:{CHAT}", settings)
    assert isinstance(embed, OllamaPool) and len(embed.hosts) == 2
    assert isinstance(chat, OllamaPool) and [h.url for h in chat.hosts] == ["http://gpu-1:11434"]
    assert chat.backends["http://gpu-1:11434"].settings.max_parallel == 4


async def test_a_host_stopped_mid_batch_fails_no_run(make_graph: Any) -> None:
    with _fake(latency=0.05) as a, _fake(latency=0.05) as b:
        graph = make_graph(ollama={"hosts": [a.url, b.url], "max_parallel": 2, "host_cooldown": 60})
        seen_by_a: list[int] = []
        a_url = a.url

        async def stop_a_mid_batch() -> None:
            # The fake records requests on its own threads: poll its log.
            while len(a.requests_to("/api/chat")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            await asyncio.to_thread(a.stop)
            seen_by_a.append(len(a.requests))

        runs = [graph.ainvoke({"query": DIRECT_Q}) for _ in range(8)]
        _, *outs = await asyncio.gather(stop_a_mid_batch(), *runs)

        for out in outs:  # no run failed or degraded
            answer = out["answer"]
            assert answer.route.kind == "direct"
            assert [r.status for r in answer.worker_results] == ["ok"]
            assert "14 days" in answer.text
            assert answer.notes == []
        assert len(a.requests) == seen_by_a[0]  # nothing reached A once it was down
        a_chats, b_chats = len(a.requests_to("/api/chat")), len(b.requests_to("/api/chat"))
        assert a_chats >= 2 and b_chats >= 8 - a_chats
        hosts = {c.host for out in outs for c in out["answer"].ledger.calls if c.role == "worker"}
        assert b.url in hosts
        # Whether a call of the batch still tried A after it stopped depends on timing; the
        # next run with both hosts idle picks A (listed first) unless A is already cooling.
        after = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
        assert [r.status for r in after.worker_results] == ["ok"] and after.notes == []
        assert len(a.requests) == seen_by_a[0]
        health = host_health(a_url)
        assert health.failures >= 1 and health.cooling(time.monotonic())


async def test_the_dead_host_is_probed_and_used_again_after_its_cooldown() -> None:
    with _fake() as a, _fake() as b:
        pool = _pool([a.url, b.url], host_cooldown=0.5)
        a_url = a.url
        first = await pool.chat(MESSAGES)
        assert first.host == a_url  # idle hosts: the first listed wins the tie
        port = int(a_url.rsplit(":", 1)[1])
        a.stop()

        failed_over = await pool.chat(MESSAGES)
        assert failed_over.host == b.url
        assert host_health(a_url).failures == 1

        a.start(port)  # back, but still cooling down: no traffic yet
        a.reset()
        for _ in range(3):
            assert (await pool.chat(MESSAGES)).host == b.url
        assert a.requests == []

        await asyncio.sleep(0.6)
        back = await pool.chat(MESSAGES)
        assert back.host == a_url
        assert [r.path for r in a.requests] == ["/api/version", "/api/chat"]  # probe first
        assert host_health(a_url).failures == 0


async def test_least_loaded_choice_respects_weights_and_per_host_caps() -> None:
    with _fake(latency=0.1) as a, _fake(latency=0.1) as b:
        pool = _pool(
            [{"url": a.url, "weight": 3, "max_parallel": 3}, {"url": b.url, "max_parallel": 1}]
        )
        results = await asyncio.gather(*[pool.chat(MESSAGES) for _ in range(12)])
        by_host = [r.host for r in results]
        assert by_host.count(a.url) > by_host.count(b.url) >= 1
        assert a.max_in_flight_by_model[CHAT] <= 3  # each server's own cap
        assert b.max_in_flight_by_model[CHAT] <= 1
        assert a.max_in_flight_by_model[CHAT] >= 2  # and the heavy host really ran in parallel


async def test_a_busy_host_is_skipped_without_a_cooldown() -> None:
    with _fake() as a, _fake() as b:
        a.fail(status=503, message="server busy, please try again.", path="/api/chat")
        pool = _pool([a.url, b.url])
        reply = await pool.chat(MESSAGES)
        assert reply.host == b.url
        assert host_health(a.url).failures == 0
        assert (await pool.chat(MESSAGES)).host == a.url


async def test_every_host_down_is_one_clear_error(closed_port: int) -> None:
    with _fake() as b:
        dead = f"http://127.0.0.1:{closed_port}"
        pool = _pool([dead, b.url], host_cooldown=30)
        b.stop()
        with pytest.raises(BackendUnavailable) as err:
            await pool.chat(MESSAGES)
        assert "cannot connect to Ollama" in str(err.value)
        # Both are now cooling down: the next call probes them rather than hanging or
        # failing blindly, and still says what is wrong.
        with pytest.raises(BackendUnavailable) as err2:
            await pool.embed(["x"])
        assert host_health(dead).probes >= 1
        assert err2.value.model == f"ollama:{CHAT}"
