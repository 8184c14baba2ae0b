"""(7) ``tandem serve``: the HTTP layer's overhead, and 100 concurrent streaming clients.

(a) Overhead. One process, one event loop (uvloop, as ``tandem serve`` runs when it is
installed): ``tandem serve``'s app under uvicorn on a loopback socket, and the same runtime's
graph called with ``graph.ainvoke``, interleaved request by request, against fake models in a
separate process (latency 0, so the run itself is as short as it gets and the overhead as
visible as it gets). Overhead = the median over requests of (HTTP round trip − the
``ainvoke`` just before it), for a JSON response and for a stream read to ``[DONE]``. The
server's runs do not stream a specialist's draft (it is held back anyway), which a default
``ainvoke`` does, so its graph part is cheaper; the HTTP layer alone — the round trip minus
the server's own run time (its ``Server-Timing`` header) — is reported too. The client
(httpx) runs on the same loop, so its CPU counts: an upper bound.

(b) Load. The real ``tandem serve`` command as its own process (a ``tandem.toml`` pointing at
the fakes, whose worker model waits ``L`` and quotes the ``ref zqNNNN`` token of its task),
and 100 streaming clients at once (the official ``openai`` client), in batches: every request
must succeed and its streamed answer quote its own question's token; every other request
runs on a thread of its own (``thread_id``, the SQLite checkpointer), whose stored turn must
be its own; the server's RSS is read after each batch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
from _common import (
    BenchResult,
    Figure,
    allow_parallel,
    fake_config,
    pct,
    seeded_data_dir,
)
from _fakehost import REF, Endpoint, remote_fakes

from tandem.agents.shell.serve import SessionEngine, create_app, server_loop
from tandem.graphs import Runtime
from tandem.graphs.config import ServeSettings
from tandem.workers.testing import fake_config_toml

QUERY = "How long does Brightwater Lettings take to return a tenant's deposit?"
RUNS = 200
CLIENTS = 100
BATCHES = 6  # the first warms up; memory is compared over the others
LOAD_LATENCY = 0.05


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- (a) overhead -------------------------------------------------------------------------


async def _overhead(ollama: Endpoint, openai_ep: Endpoint, data: Path, runs: int) -> dict[str, Any]:
    import uvicorn
    from langgraph.checkpoint.memory import InMemorySaver

    config = fake_config(ollama, openai_ep, data, **allow_parallel({}))
    runtime = Runtime(config)
    await runtime.ensure_ingested()
    engine = SessionEngine(runtime, InMemorySaver())
    graph = engine.stateless  # the very graph the server runs stateless requests on
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(engine, ServeSettings()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    )
    serving = asyncio.ensure_future(server.serve())
    for _ in range(1000):  # uvicorn offers no event for "listening"
        if server.started:
            break
        await asyncio.sleep(0.01)
    body = {"model": "tandem", "messages": [{"role": "user", "content": QUERY}]}
    direct, http, stream, layer = [], [], [], []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

        async def one_http() -> tuple[float, float]:
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            wall = time.perf_counter() - t0
            run_ms = float(r.headers["server-timing"].split("dur=")[1])
            return wall, wall - run_ms / 1000

        async def one_stream() -> float:
            t0 = time.perf_counter()
            async with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}
            ) as r:
                data = b"".join([part async for part in r.aiter_bytes()])
            assert data.endswith(b"data: [DONE]\n\n"), data[-200:]
            return time.perf_counter() - t0

        for _ in range(5):  # warm-up: profiles, clients, collections, the detector
            await graph.ainvoke({"query": QUERY})
            await one_http()
            await one_stream()
        for _ in range(runs):
            t0 = time.perf_counter()
            out = await graph.ainvoke({"query": QUERY})
            direct.append(time.perf_counter() - t0)
            assert out["answer"].route.kind == "direct"
            wall, only = await one_http()
            http.append(wall)
            layer.append(only)
            stream.append(await one_stream())
    server.should_exit = True
    await serving
    p50 = statistics.median
    return {
        # Per request: the HTTP round trip minus the ainvoke run just before it (interleaved,
        # so slow drift in the machine's load cancels out); the headline figures.
        "paired": p50([h - d for h, d in zip(http, direct, strict=True)]),
        "paired_stream": p50([s - d for s, d in zip(stream, direct, strict=True)]),
        "ainvoke": p50(direct),
        "http": p50(http),
        "stream": p50(stream),
        "layer": p50(layer),
        "layer_p95": pct(layer, 95),
        "overhead": p50(http) - p50(direct),
        "stream_overhead": p50(stream) - p50(direct),
    }


# -- (b) load -------------------------------------------------------------------------------


def _question(n: int) -> str:
    return f"How quickly does Brightwater Lettings return a tenant's deposit? ref zq{n:04d}"


async def _batch(client: openai.AsyncOpenAI, start: int) -> dict[str, Any]:
    failures: list[str] = []
    crossed = 0
    firsts: list[float] = []
    walls: list[float] = []

    async def one(n: int) -> None:
        nonlocal crossed
        question = _question(n)
        extra = {"thread_id": f"load-{n:05d}"} if n % 2 == 0 else {}
        t0 = time.perf_counter()
        try:
            stream = await client.chat.completions.create(
                model="tandem",
                messages=[{"role": "user", "content": question}],
                stream=True,
                extra_body=extra,
            )
            text = ""
            async for chunk in stream:
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if piece and not text:
                    firsts.append(time.perf_counter() - t0)
                text += piece or ""
        except openai.APIError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        walls.append(time.perf_counter() - t0)
        if REF.findall(text) != [f"zq{n:04d}"]:
            crossed += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(start, start + CLIENTS)))
    return {
        "wall": time.perf_counter() - t0,
        "failures": failures,
        "crossed": crossed,
        "first_p50": statistics.median(firsts) if firsts else float("nan"),
        "p50": statistics.median(walls) if walls else float("nan"),
        "p95": pct(walls, 95),
    }


def _threads_are_their_own(data_dir: Path, batches: int) -> int:
    """Stored threads whose turn is not their own question (read from the SQLite store)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from tandem.graphs import build_graph, load_config

    wrong = 0
    conn = sqlite3.connect(str(data_dir / "threads.sqlite"), check_same_thread=False)
    try:
        config = load_config(data_dir / "tandem.toml")
        graph = build_graph(config, checkpointer=SqliteSaver(conn))
        for n in range(0, batches * CLIENTS, 2):
            state = graph.get_state({"configurable": {"thread_id": f"load-{n:05d}"}})
            texts = [str(m.content) for m in state.values.get("messages", [])]
            if len(texts) != 2 or texts[0] != _question(n) or f"zq{n:04d}" not in texts[1]:
                wrong += 1
    finally:
        conn.close()
    return wrong


def _load() -> dict[str, Any]:
    data = seeded_data_dir()  # a fresh copy of the ingested demo stores
    root = data
    with remote_fakes(LOAD_LATENCY, 0.0, echo=True) as (ollama, openai_ep):
        toml = fake_config_toml(
            ollama,  # type: ignore[arg-type]
            openai_ep,  # type: ignore[arg-type]
            data,
            router={"min_score": 0.05, "part_min_score": 0.1, "plan_margin": 0.0},
            extra=["[serve]", f"max_concurrent = {CLIENTS}", "queue = 256"],
        ).replace("[ollama]\n", "[ollama]\nmax_parallel = 64\n")
        (root / "tandem.toml").write_text(toml)
        port = _port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "OTEL_"))}
        env.update(TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True")
        tandem = str(Path(sys.executable).parent / "tandem")
        proc = subprocess.Popen(
            [tandem, "serve", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            server = psutil.Process(proc.pid)
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)

            async def batches() -> list[dict[str, Any]]:
                limits = httpx.Limits(
                    max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS
                )
                async with httpx.AsyncClient(limits=limits, timeout=120) as http:
                    client = openai.AsyncOpenAI(
                        api_key="unused",
                        base_url=f"http://127.0.0.1:{port}/v1",
                        http_client=http,
                        max_retries=0,
                    )
                    out = []
                    for b in range(BATCHES):
                        result = await _batch(client, b * CLIENTS)
                        await asyncio.sleep(0.5)
                        result["rss"] = server.memory_info().rss
                        out.append(result)
                    return out

            results = asyncio.run(batches())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        wrong_threads = _threads_are_their_own(data, BATCHES)
    return {"batches": results, "wrong_threads": wrong_threads, "exit": proc.returncode}


def run(runs: int = RUNS) -> BenchResult:
    with remote_fakes(0.0, 0.0) as (ollama, openai_ep):
        data = seeded_data_dir()
        with asyncio.Runner(loop_factory=server_loop()) as runner:
            over = runner.run(_overhead(ollama, openai_ep, data, runs))
    load = _load()
    batches = load["batches"]
    measured = batches[1:]
    failures = sum(len(b["failures"]) for b in batches)
    crossed = sum(b["crossed"] for b in batches) + load["wrong_threads"]
    rss = [b["rss"] / 2**20 for b in measured]
    growth = rss[-1] - rss[0]
    ms = 1000
    figures = [
        Figure(
            "HTTP overhead vs graph.ainvoke, p50 (JSON response)",
            over["paired"] * ms,
            "≤ 3 ms",
            over["paired"] * ms <= 3,
            fmt="{:.2f} ms",
        ),
        Figure(
            "HTTP overhead vs graph.ainvoke, p50 (stream to [DONE])",
            over["paired_stream"] * ms,
            "≤ 3 ms",
            over["paired_stream"] * ms <= 3,
            fmt="{:.2f} ms",
        ),
        Figure(
            "HTTP layer alone (round trip − server run time), p50",
            over["layer"] * ms,
            "≤ 3 ms",
            over["layer"] * ms <= 3,
            fmt="{:.2f} ms",
        ),
        Figure(
            f"{CLIENTS} concurrent streams × {BATCHES} batches: failed requests",
            failures,
            "0",
            failures == 0,
            fmt="{:.0f}",
        ),
        Figure(
            "answers or threads with another request's content",
            crossed,
            "0",
            crossed == 0,
            fmt="{:.0f}",
        ),
        Figure(
            f"server RSS growth, batch 2 → {BATCHES}",
            growth,
            "≤ 16 MiB (flat)",
            growth <= 16,
            fmt="{:.1f} MiB",
        ),
    ]
    rows = [
        [
            str(i + 1),
            f"{b['wall']:.2f} s",
            f"{b['first_p50'] * ms:.0f} ms",
            f"{b['p50'] * ms:.0f} ms",
            f"{b['p95'] * ms:.0f} ms",
            str(len(b["failures"])),
            str(b["crossed"]),
            f"{b['rss'] / 2**20:.1f} MiB",
        ]
        for i, b in enumerate(batches)
    ]
    return BenchResult(
        key="serve",
        title="7. tandem serve: HTTP overhead and 100 concurrent streaming clients",
        method=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip(),
        headers=[
            "batch",
            "wall",
            "first content p50",
            "request p50",
            "request p95",
            "failed",
            "cross-talk",
            "server RSS",
        ],
        rows=rows,
        figures=figures,
        extra_tables=[
            (
                f"Overhead (median of {runs} interleaved requests each, latency 0)",
                [
                    "graph.ainvoke p50",
                    "HTTP JSON p50",
                    "HTTP stream p50",
                    "p50 differences (JSON / stream)",
                    "HTTP layer alone (p50 / p95)",
                ],
                [
                    [
                        f"{over['ainvoke'] * ms:.2f} ms",
                        f"{over['http'] * ms:.2f} ms",
                        f"{over['stream'] * ms:.2f} ms",
                        f"{over['overhead'] * ms:.2f} / {over['stream_overhead'] * ms:.2f} ms",
                        f"{over['layer'] * ms:.2f} / {over['layer_p95'] * ms:.2f} ms",
                    ]
                ],
            )
        ],
        notes=[
            f"load: worker model latency {LOAD_LATENCY * 1000:.0f} ms at the fake; "
            f"[serve] max_concurrent = {CLIENTS}; threads checked: "
            f"{BATCHES * CLIENTS // 2} (wrong: {load['wrong_threads']}); server exit code "
            f"after SIGTERM: {load['exit']}",
            *(f"failure: {f}" for b in batches for f in b["failures"][:3]),
        ],
    )


if __name__ == "__main__":
    import json
    from dataclasses import asdict

    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
    print(json.dumps(asdict(result), indent=1, ensure_ascii=False))
