"""Test doubles of the workers layer, for tandem and for plugin authors.

* :class:`FakeOllama` — a real HTTP server speaking Ollama's API (``/api/chat``,
  ``/api/embed``, ``/api/tags`` …) with deterministic models, request recording,
  concurrency counters, latency and fault injection.
* :class:`FakeOpenAI` — an OpenAI-compatible ``/v1/chat/completions`` server that
  litellm reaches like any hosted supervisor.
* :func:`hash_embed` — the deterministic embedding the fakes use.
* :func:`fake_config_toml` — a ``tandem.toml`` wired to both fakes (for CLI tests).
* :func:`check_worker` — a conformance check for a :class:`WorkerSpec`: registration →
  ingestion → retrieval → answer → citations (plugin authors: call it from your own tests).

What needs the layers above — the routing check (``check_worker(spec, competitors=…)``)
and :class:`ScriptedSupervisor`, a strict in-process supervisor model — is in
:mod:`tandem.graphs.testing`, which also re-exports everything here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings
from pydantic import BaseModel

from tandem.workers._fakes._http import RecordedRequest
from tandem.workers._fakes.ollama_server import FakeOllama, grounded_reply, hash_embed
from tandem.workers._fakes.openai_server import FakeOpenAI, rule_supervisor
from tandem.workers.backends import Backend, BackendSettings, OllamaSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.plugins import register
from tandem.workers.records import Subtask, WorkerResult
from tandem.workers.spec import WorkerSpec
from tandem.workers.store import WorkerStore
from tandem.workers.worker import Worker, WorkerRun

__all__ = [
    "FakeOllama",
    "FakeOpenAI",
    "QuestionCheck",
    "RecordedRequest",
    "RouteScores",
    "WorkerCheck",
    "acheck_worker",
    "check_worker",
    "fake_config_toml",
    "grounded_reply",
    "hash_embed",
    "rule_supervisor",
]


#: The centroid router with thresholds for the fakes' hashed bag-of-words embeddings (centred
#: scores): the suite's routes do not move when the default (learned) router changes.
FAKE_ROUTER_THRESHOLDS: dict[str, float | str] = {
    "kind": "centroid",
    "min_score": 0.12,
    "part_min_score": 0.1,
    "plan_margin": 0.0,
}


def fake_config_toml(
    ollama: FakeOllama,
    openai: FakeOpenAI,
    data_dir: Path,
    *,
    workers: Sequence[WorkerSpec] | None = None,
    router: dict[str, float | str] | None = None,
    worker_model: str = "ollama:qwen2.5:1.5b",
    extra: Sequence[str] = (),
    trust_supervisor: bool = True,
) -> str:
    """A ``tandem.toml`` that points tandem's CLI at the two fake servers.

    Args:
        ollama: The fake Ollama server (workers and router embeddings).
        openai: The fake OpenAI-compatible server (the supervisor).
        data_dir: Where stores, threads and logs go.
        workers: Worker specs to write (default: the built-in demo specialists).
        router: Router thresholds (default: :data:`FAKE_ROUTER_THRESHOLDS`; ``{}`` keeps
            tandem's own defaults).
        worker_model: The model every written worker uses.
        extra: Further TOML lines appended as they are (their own tables).
        trust_supervisor: List the fake supervisor's ``host:port`` in ``[privacy]
            trusted_hosts``, so that it counts as a model on this machine (an ``openai/``
            model is otherwise remote whatever its endpoint). False: it stands in for a
            hosted provider (then pass any ``[privacy]`` lines in ``extra``).

    Returns:
        The file's text.
    """
    if workers is None:
        workers = builtin_specs()
    thresholds = FAKE_ROUTER_THRESHOLDS if router is None else router
    lines = [
        f"data_dir = {json.dumps(str(data_dir))}",
        "[supervisor]",
        'model = "openai/fake-large"',
        f'api_base = "{openai.api_base}"',
        'extra = { api_key = "test-key" }',
        "[ollama]",
        f'host = "{ollama.url}"',
        "[router]",
        'embed_model = "ollama:nomic-embed-text"',
        *(f"{key} = {json.dumps(value)}" for key, value in thresholds.items()),
    ]
    if trust_supervisor:
        lines += ["[privacy]", f"trusted_hosts = [{json.dumps(_host_port(openai.api_base))}]"]
    for spec in workers:
        lines += [
            "[[workers]]",
            f"name = {json.dumps(spec.name)}",
            f"description = {json.dumps(spec.description)}",
            f"examples = {json.dumps(list(spec.examples))}",
            f"model = {json.dumps(worker_model)}",
            f"system_prompt = {json.dumps(spec.system_prompt)}",
            f"knowledge = {json.dumps([str(k) for k in spec.knowledge])}",
        ]
    lines += list(extra)
    return "\n".join(lines) + "\n"


def _host_port(url: str) -> str:
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    return authority


_CHAT = "tandem-check-chat"
_EMBED = "tandem-check-embed"


RouteScores = Callable[[Backend], Callable[[str], Awaitable[dict[str, float]]]]
"""Builds a scorer from the check's embedding backend: ``await score(question)`` gives each
worker's routing score (:mod:`tandem.graphs.testing` passes one built on tandem's router)."""


class QuestionCheck(BaseModel):
    """How one question went through retrieval, answer and validation."""

    question: str
    """The question asked (an example from the spec, unless given)."""
    passages: list[str]
    """Sources of the retrieved passages, best first."""
    answer: str
    """The worker's validated answer."""
    citations: list[str]
    """Sources the answer cites (``file#chunk``)."""
    routed_to: str | None = None
    """The best-scoring worker for the question, when competitors were given."""


class WorkerCheck(BaseModel):
    """The report of :func:`check_worker`."""

    worker: str
    """The worker's name."""
    model: str
    """The worker's configured model (the check itself talks to a fake Ollama)."""
    files: int
    """Knowledge files ingested."""
    chunks: int
    """Chunks in the worker's store after ingestion."""
    questions: list[QuestionCheck]
    """One entry per question checked."""


def _fail(spec: WorkerSpec, stage: str, message: str) -> AssertionError:
    return AssertionError(f"check_worker('{spec.name}') failed at {stage}: {message}")


async def acheck_worker(
    spec: WorkerSpec,
    *,
    questions: Sequence[str] | None = None,
    route_scores: RouteScores | None = None,
) -> WorkerCheck:
    """Async form of :func:`check_worker`.

    Args:
        spec: The worker to check.
        questions: Questions to ask (default: every example in the spec).
        route_scores: When given, each question must score highest for ``spec`` (the
            routing stage); :func:`tandem.graphs.testing.check_worker` passes tandem's router.
    """
    try:
        (spec,) = register(spec, origin=spec.origin)
    except Exception as exc:
        raise _fail(spec, "registration", str(exc)) from None
    asked = list(questions or spec.examples)
    if not asked:
        raise _fail(spec, "setup", "the spec has no examples; pass questions=[...]")
    if not spec.knowledge:
        raise _fail(spec, "setup", "the spec declares no knowledge to retrieve from")
    tmp = tempfile.mkdtemp(prefix="tandem-check-")
    try:
        fake = FakeOllama(chat_models=(_CHAT,), embed_models=(_EMBED,))
        with fake:
            seen: list[dict[str, Any]] = []

            def respond(request: dict[str, Any]) -> str:
                seen.append(request)
                return str(grounded_reply(request))

            fake.respond_with(_CHAT, respond)
            settings = BackendSettings(ollama=OllamaSettings(host=fake.url, timeout=30.0))
            embedder = make_backend(f"ollama:{_EMBED}", settings)
            client = chromadb.PersistentClient(
                path=tmp, settings=Settings(anonymized_telemetry=False)
            )
            store = WorkerStore(spec.name, client, embedder)
            ingested = await store.ingest(spec.knowledge)
            if ingested.errors:
                raise _fail(spec, "ingestion", "; ".join(ingested.errors))
            chunks = await store.count()
            if not ingested.files or not chunks:
                raise _fail(
                    spec,
                    "ingestion",
                    f"no .md/.txt files found in {list(map(str, spec.knowledge))}",
                )
            worker = Worker(
                spec.model_copy(update={"model": f"ollama:{_CHAT}"}),
                make_backend(f"ollama:{_CHAT}", settings, worker=spec.name),
                store,
                embedder,
            )
            score = route_scores(embedder) if route_scores is not None else None
            report = WorkerCheck(
                worker=spec.name,
                model=spec.model,
                files=ingested.files,
                chunks=chunks,
                questions=[],
            )
            for question in asked:
                report.questions.append(await _check_one(spec, question, worker, score, seen))
            return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _check_one(
    spec: WorkerSpec,
    question: str,
    worker: Worker,
    score: Callable[[str], Awaitable[dict[str, float]]] | None,
    seen: list[dict[str, Any]],
) -> QuestionCheck:
    routed_to = None
    if score is not None:
        scores = await score(question)
        routed_to = max(scores, key=lambda n: scores[n])
        if routed_to != spec.name:
            raise _fail(
                spec,
                "routing",
                f"{question!r} scores highest for '{routed_to}' "
                f"({scores}); sharpen the description or examples",
            )
    subtask = Subtask(worker=spec.name, instruction=question, query=question)
    probe = WorkerRun(result=WorkerResult(worker=spec.name, instruction=question, status="failed"))
    passages, note = await worker.retrieve(subtask, None, probe)
    if not passages:
        raise _fail(spec, "retrieval", f"nothing retrieved for {question!r} ({note})")
    seen.clear()
    run = await worker.run(subtask)
    result = run.result
    if not seen:
        raise _fail(spec, "answer", f"the model was never called for {question!r}")
    prompt = seen[-1]["messages"]
    if spec.system_prompt.strip() and spec.system_prompt.strip() not in prompt[0]["content"]:
        raise _fail(spec, "answer", "the system prompt did not reach the model")
    if result.status != "ok":
        raise _fail(spec, "validation", f"{question!r}: worker failed ({result.reason})")
    if not result.citations:
        raise _fail(
            spec,
            "validation",
            f"{question!r}: no retrieved passage shares a content word with the question, so "
            f"the answer cites nothing (retrieved: "
            f"{[str(p.metadata.get('source')) for p in run.passages]}); does the corpus cover it?",
        )
    sources = {str(p.metadata.get("source")) for p in run.passages}
    stray = [c.source for c in result.citations if c.source not in sources]
    if stray:
        raise _fail(spec, "validation", f"citations {stray} are not among the retrieved passages")
    return QuestionCheck(
        question=question,
        passages=[str(p.metadata.get("source")) for p in run.passages],
        answer=result.answer,
        citations=[f"{c.source}#{c.chunk}" for c in result.citations],
        routed_to=routed_to,
    )


def check_worker(
    spec: WorkerSpec,
    *,
    questions: Sequence[str] | None = None,
    route_scores: RouteScores | None = None,
) -> WorkerCheck:
    """Run a worker through registration → ingestion → retrieval → answer → validation.

    Everything runs against a fake Ollama (deterministic :func:`hash_embed` embeddings and a
    chat model that answers from the passage sharing most words with the question, citing
    it), in a temporary store, so it is fast and offline. Use it in a plugin's own tests::

        from tandem.workers.testing import check_worker
        from my_plugin import specs

        def test_conformance():
            for spec in specs():
                check_worker(spec)

    Args:
        spec: The worker to check (its model is not called; a fake stands in).
        questions: Questions to ask (default: every example in the spec).
        route_scores: A routing scorer (see :data:`RouteScores`); when given, each question
            must score highest for ``spec``. :func:`tandem.graphs.testing.check_worker`
            takes ``competitors=`` and checks routing with tandem's router.

    Returns:
        A :class:`WorkerCheck` with, per question, the retrieved sources, the answer and its
        citations.

    Raises:
        AssertionError: Naming the stage that failed (registration, setup, ingestion, routing,
            retrieval, answer, validation) and why.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acheck_worker(spec, questions=questions, route_scores=route_scores))
    raise RuntimeError("check_worker() cannot run inside an event loop; await acheck_worker()")
