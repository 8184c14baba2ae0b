"""Shared pieces for the benchmarks: fakes, configs, percentiles and the result record."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TANDEM_PLUGINS", "")

from tandem.graphs import Runtime, TandemConfig
from tandem.workers import WorkerSpec
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.testing import FakeOllama, FakeOpenAI

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CHAT_MODEL = "qwen2.5:1.5b"
EMBED_MODEL = "nomic-embed-text"
SUPERVISOR = "openai/fake-large"


@dataclass
class Figure:
    """One headline number with its target."""

    label: str
    value: float
    target: str
    passed: bool | None
    fmt: str = "{:.3f}"

    def shown(self) -> str:
        return self.fmt.format(self.value)


@dataclass
class BenchResult:
    """What a benchmark module returns to the runner."""

    key: str
    title: str
    method: str
    headers: list[str]
    rows: list[list[str]]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    extra_tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest-rank on sorted values)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_jsonl(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def demo_specs() -> list[WorkerSpec]:
    """The built-in specialists, served by the fake Ollama chat model."""
    return [s.model_copy(update={"model": f"ollama:{CHAT_MODEL}"}) for s in builtin_specs()]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def fake_config(ollama: Any, openai: Any, data_dir: Path, /, **over: Any) -> TandemConfig:
    """A config wired to the fakes (the same settings the fast test suite uses)."""
    base: dict[str, Any] = {
        "ollama": {"host": ollama.url, "timeout": 30.0},
        "supervisor": {
            "model": SUPERVISOR,
            "api_base": openai.api_base,
            "extra": {"api_key": "bench"},
            "timeout": 30.0,
        },
        "router": {
            "embed_model": f"ollama:{EMBED_MODEL}",
            "min_score": 0.12,
            "part_min_score": 0.1,
            "plan_margin": 0.0,
        },
        "workers": demo_specs(),
        "data_dir": data_dir,
        "privacy": {"policy": "allow"},
        "checkpointer": "memory",
        "retry": {"initial_delay": 0.01, "max_delay": 0.05, "jitter": 0.0},
    }
    fields = TandemConfig.model_fields
    base = {k: v for k, v in base.items() if k in fields}
    return TandemConfig(**_merge(base, over))


def allow_parallel(config_over: dict[str, Any]) -> dict[str, Any]:
    """Raise the per-host in-flight limit (if this build has one) so fakes run in parallel."""
    from tandem.workers.backends import OllamaSettings

    for name in ("max_parallel", "max_in_flight", "concurrency"):
        if name in OllamaSettings.model_fields:
            return _merge(config_over, {"ollama": {name: 64}})
    return config_over


def parallel_setting() -> str:
    """How the per-host concurrency limit was set, for RESULTS.md."""
    from tandem.workers.backends import OllamaSettings

    for name in ("max_parallel", "max_in_flight", "concurrency"):
        if name in OllamaSettings.model_fields:
            return f"`[ollama] {name} = 64` (per-host in-flight limit raised for the fakes)"
    return "no per-host in-flight limit exists in this build (requests go out unthrottled)"


_SEEDED: Path | None = None
_SCRATCH: list[Path] = []


def scratch(prefix: str) -> Path:
    """A temporary directory removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _SCRATCH.append(path)
    return path


@atexit.register
def _cleanup() -> None:
    for path in _SCRATCH:
        shutil.rmtree(path, ignore_errors=True)


def seeded_data_dir() -> Path:
    """A fresh data dir with the demo corpora already ingested (ingested once per process)."""
    global _SEEDED
    if _SEEDED is None:
        root = scratch("tandem-bench-seed-")
        ol = FakeOllama(chat_models=(CHAT_MODEL,), embed_models=(EMBED_MODEL,))
        with ol, FakeOpenAI() as oa:
            rt = Runtime(fake_config(ol, oa, root))
            asyncio.run(rt.ensure_ingested())
        _SEEDED = root
    target = scratch("tandem-bench-")
    shutil.copytree(_SEEDED / "stores", target / "stores")
    return target


@contextmanager
def fakes(
    *, chat_latency: float = 0.0, sup_latency: float = 0.0
) -> Iterator[tuple[FakeOllama, FakeOpenAI]]:
    """Fake Ollama + OpenAI; latency applies to chat calls only (embeddings stay instant)."""
    with ChatLatencyOllama(chat_latency) as ol, FakeOpenAI(latency=sup_latency) as oa:
        yield ol, oa  # type: ignore[misc]


class ChatLatencyOllama(FakeOllama):
    """FakeOllama whose ``/api/chat`` waits a fixed time; ``/api/embed`` answers at once."""

    def __init__(self, chat_latency: float) -> None:
        super().__init__(chat_models=(CHAT_MODEL,), embed_models=(EMBED_MODEL,))
        self.chat_latency = chat_latency
        inner = self.routes[("POST", "/api/chat")]

        def slow_chat(path: str, body: dict[str, Any]) -> Any:
            time.sleep(self.chat_latency)
            return inner(path, body)

        self.routes[("POST", "/api/chat")] = slow_chat


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def repeated_cv(label: str, embedder: Any, routes: list[Any], seeds: list[int]) -> None:
    """The router bench's cross-validation (5 folds over ``data/routing_eval.jsonl``, the
    default settings) once per fold assignment in ``seeds``, with ``embedder`` and the
    training ``routes`` given: each assignment's figures, then their mean (for probes)."""
    from tandem.agents.router import RouterSettings, evaluate_router
    from tandem.agents.router._data import load_routes

    specs = builtin_specs()
    data = load_routes(DATA / "routing_eval.jsonl")
    cache = scratch(f"probe-{label}-")
    runs = []
    for seed in seeds:
        report = await evaluate_router(
            specs,
            embedder,
            RouterSettings(),
            data,
            folds=5,
            routes=routes,
            cache_dir=cache,
            seed=seed,
        )
        o = report.overall
        runs.append(o)
        print(
            f"{label} seed {seed}: exact {o.accuracy:.1%}, cross {o.cross_recall:.1%}, "
            f"out-of-scope precision {o.none_precision:.1%}",
            flush=True,
        )
    print(
        f"{label} mean of {len(runs)}: exact {statistics.mean(o.accuracy for o in runs):.1%}, "
        f"cross {statistics.mean(o.cross_recall for o in runs):.1%}, out-of-scope precision "
        f"{statistics.mean(o.none_precision for o in runs):.1%}"
    )
