"""(13) Repeat workload: do escalations teach the specialists? Memory on vs off.

The 40 questions of ``data/repeat_workload.jsonl`` are in-domain but no corpus file answers
them, so a specialist should escalate and the supervisor answers. Each is asked twice: first
as written, then paraphrased. Per pass: large-model requests, escalations, answers taken
from answer memory, and fact recall — with ``[learning] memory = "off"`` and ``"auto"``.

Against the fakes, three stand-ins are explicit (each replaces what another issue builds):

* the **supervisor** knows the dataset's facts (a large model's general knowledge) and answers
  ``The answer is <fact>. [<worker>]``; it plans like the rule-based fake;
* the **router** sends each question (and its paraphrase) to its labelled specialist (the
  learned router of issue 14; the row "configured router" shows the real one instead);
* the **specialist** reads its passages semantically: it answers from the passage most similar
  to the question (cosine of the run's own embedding model) when that similarity reaches
  ``TAU``, and escalates otherwise (calibrated escalation is issue 15). Passage choice is the
  model's; which passages it sees — curated top-k plus answer memory — is tandem's.

Under ``memory = "auto"`` approved routing feedback re-fits the learned router in the
background; each question is asked once that re-fit has finished (a user's questions are
seconds apart, a fit takes a few seconds here). Asked back to back, the re-fits cancelled
one another and the configured router's figures varied from run to run with their timing.

Embeddings are the run's embedding model: the bundled MiniLM (``embedded:minilm``) when this
build has it, else the fakes' hashed bag of words (which cannot match paraphrases that share
no words; the report says which was used).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHAT_MODEL,
    BenchResult,
    Figure,
    demo_specs,
    fake_config,
    load_jsonl,
    scratch,
)
from _learning_why import cause, kept_sources, summary
from _memory_guard import report as memory_guard_report

from tandem.agents.router import RouteDecision
from tandem.graphs import build_graph
from tandem.graphs.evaluate import fact_in
from tandem.workers.backends import cosine
from tandem.workers.testing import FakeOllama, FakeOpenAI, hash_embed, rule_supervisor

TAU = 0.55
"""The fake specialist answers from a passage whose cosine to the question reaches this."""

_QUERY = re.compile(r"<query>((?:(?!<query>).)*?)</query>", re.S)
_PASSAGE = re.compile(r'<passage id="([^"]+)"[^>]*>\n?(.*?)\n?</passage>', re.S)
_TASK = re.compile(r"^Task:\s*(.+)$", re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])|\n")

Embed = Callable[[Sequence[str]], list[list[float]]]


def rows() -> list[dict[str, Any]]:
    return load_jsonl("repeat_workload.jsonl")


def knowing_supervisor(data: list[dict[str, Any]]) -> Callable[[dict[str, Any]], str]:
    """The fake large model with the dataset's general knowledge."""

    def respond(request: dict[str, Any]) -> str:
        schema = json.dumps(request.get("response_format") or {})
        if '"subtasks"' in schema:
            return rule_supervisor(request)
        text = "\n".join(str(m.get("content", "")) for m in request["messages"])
        found = _QUERY.findall(text)
        query = html.unescape(found[-1].strip()) if found else ""
        for r in data:
            if r["question"] in query or r["paraphrase"] in query:
                return f"The answer is {r['facts'][0]}. [{r['expected_workers'][0]}]"
        return rule_supervisor(request)

    return respond


def semantic_specialist(embed: Embed, tau: float = TAU) -> Callable[[dict[str, Any]], str]:
    """A fake specialist that reads its passages by meaning (see the module doc)."""

    def respond(request: dict[str, Any]) -> str:
        user = next(
            (m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), ""
        )
        task = _TASK.findall(user)
        question = task[0] if task else user
        passages = [(pid, html.unescape(text)) for pid, text in _PASSAGE.findall(user)]
        escalate = {
            "answer": "The passages do not cover this.",
            "confidence": 0.1,
            "citations": [],
            "needs_escalation": True,
        }
        if not passages:
            return json.dumps(escalate)
        vectors = embed([question, *(t for _, t in passages)])
        sims = [cosine(vectors[0], v) for v in vectors[1:]]
        best = max(range(len(sims)), key=lambda i: sims[i])
        if sims[best] < tau:
            return json.dumps(escalate)
        pid, text = passages[best]
        sentence = next((s for s in _SENTENCE.split(text) if s.strip()), text)
        return json.dumps(
            {
                "answer": sentence.strip(),
                "confidence": 0.9,
                "citations": [pid],
                "needs_escalation": False,
            }
        )

    return respond


class LabelledRouter:
    """Routes each benchmark question (and paraphrase) to its labelled specialist."""

    def __init__(self, router: Any, labels: dict[str, list[str]]) -> None:
        self.router = router
        self.labels = labels

    async def decide(self, query: str, calls: Any = None) -> tuple[RouteDecision, list[float]]:
        workers = self.labels.get(query)
        if not workers:
            return await self.router.decide(query, calls)  # type: ignore[no-any-return]
        res = await self.router.embedder.embed([query])
        return RouteDecision(kind="direct", workers=workers, reason="labelled"), res.vectors[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)


def recall(text: str, facts: Sequence[str]) -> float:
    """Share of the reference facts stated in ``text`` (the matcher every bench uses)."""
    return sum(fact_in(f, text) for f in facts) / len(facts)


async def _pass(
    graph: Any,
    openai: FakeOpenAI,
    data: list[dict[str, Any]],
    key: str,
    kept: list[dict[str, str]],
) -> dict[str, Any]:
    """One pass over ``data``; ``kept[i]`` collects the learned passages question ``i``'s
    runs kept, and a paraphrase that still calls the large model gets a cause."""
    before = len(openai.completions())
    out: dict[str, Any] = {"requests": 0, "escalated": 0, "memory": 0, "recall": 0.0}
    causes: list[str] = []
    started = time.perf_counter()
    store = graph.runtime.learning.store
    for i, r in enumerate(data):
        asked = len(openai.completions())
        state = await graph.ainvoke({"query": r[key]})
        await graph.runtime.router.refitted()  # see the module doc: approved routing feedback
        answer = state["answer"]
        out["escalated"] += answer.escalated
        out["memory"] += bool(answer.learning.used)
        out["recall"] += recall(answer.text, r["facts"])
        if key == "paraphrase" and len(openai.completions()) > asked:
            causes.append(cause(state, kept[i]))
        if key == "question":
            kept[i] = kept_sources(state, store)
    out["why"] = causes
    out["requests"] = len(openai.completions()) - before
    out["recall"] = round(out["recall"] / len(data), 3)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _embedder(choice: str) -> tuple[str, Embed]:
    """The embedding model ref for the config and an embed function for the fake specialist."""
    if choice == "minilm":
        from tandem.workers.backends import BackendSettings, make_backend
        from tandem.workers.embedding import run_sync

        backend = make_backend("embedded:minilm", BackendSettings())

        def embed(texts: Sequence[str]) -> list[list[float]]:
            return list(run_sync(backend.embed(list(texts))).vectors)

        return "embedded:minilm", embed
    return "ollama:nomic-embed-text", lambda texts: [hash_embed(t) for t in texts]


async def run_fakes(memory: str, *, embed: str, labelled: bool) -> dict[str, Any]:
    data = rows()
    ref, fn = _embedder(embed)
    with (
        FakeOllama(chat_models=(CHAT_MODEL,), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI(responder=knowing_supervisor(data)) as oa,
    ):
        ol.respond_with(CHAT_MODEL, semantic_specialist(fn))
        config = fake_config(
            ol,
            oa,
            scratch("tandem-bench-learn-"),
            router={"embed_model": ref},
            learning={"memory": memory},
        )
        graph = build_graph(config)
        rt = graph.runtime
        if labelled:
            labels = {r[k]: r["expected_workers"] for r in data for k in ("question", "paraphrase")}
            rt.router = LabelledRouter(rt.router, labels)
        await rt.ensure_ingested()
        kept: list[dict[str, str]] = [{} for _ in data]
        first = await _pass(graph, oa, data, "question", kept)
        second = await _pass(graph, oa, data, "paraphrase", kept)
        kept = len(rt.learning.store.records(status="kept"))
        return {
            "first": first,
            "second": second,
            "records": len(rt.learning.store.records()),
            "kept": kept,
        }


def sample(n: int) -> list[dict[str, Any]]:
    """``n`` questions taken round-robin over the specialists (the first of each, then …)."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for r in rows():
        by_worker.setdefault(r["expected_workers"][0], []).append(r)
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n and any(i < len(v) for v in by_worker.values()):
        out += [v[i] for v in by_worker.values() if i < len(v)][: n - len(out)]
        i += 1
    return out


async def run_bundled(n: int, memory: str, passes: Sequence[str]) -> dict[str, Any]:
    """The zero-config bundled models (no fakes): worker, router/stores and supervisor."""
    from tandem.graphs import TandemConfig

    data = sample(n)
    from tandem.workers.builtin import specs

    config = TandemConfig(
        workers=specs(),  # the benchmarks set TANDEM_PLUGINS="" (no entry-point discovery)
        data_dir=scratch("tandem-bench-learn-real-"),
        learning={"memory": memory},
        checkpointer="memory",
    )
    graph = build_graph(config)
    rt = graph.runtime
    await rt.ensure_ingested()
    out: dict[str, Any] = {"questions": [r["question"] for r in data]}
    kept: list[dict[str, str]] = [{} for _ in data]
    for key in passes:
        res = {
            "requests": 0,
            "escalated": 0,
            "records": 0,
            "memory": 0,
            "trusted": 0,
            "served": 0,
            "recall": 0.0,
            "routed": 0,
            "s": 0.0,
            "why": [],
        }
        started = time.perf_counter()
        for i, r in enumerate(data):
            state = await graph.ainvoke({"query": r[key]})
            await rt.router.refitted()
            answer = state["answer"]
            if key == "paraphrase" and answer.ledger.totals.supervisor_calls:
                res["why"].append(cause(state, kept[i]))
            if key == "question":
                kept[i] = kept_sources(state, rt.learning.store)
            res["requests"] += answer.ledger.totals.supervisor_calls
            res["escalated"] += answer.escalated
            res["records"] += len(answer.learning.records)
            res["memory"] += bool(answer.learning.used)
            res["trusted"] += any("answered from learned memory" in n for n in answer.notes)
            res["served"] += any(n.startswith("answered from answer memory") for n in answer.notes)
            res["recall"] += recall(answer.text, r["facts"])
            res["routed"] += answer.route.workers == r["expected_workers"]
            print(
                key,
                repr(r[key][:60]),
                answer.route.kind,
                answer.route.workers,
                answer.escalated,
                answer.learning.model_dump(include={"records", "kept", "used"}),
                [n for n in answer.notes if "learned memory" in n or "escalated" in n],
                repr(answer.text[:120]),
                flush=True,
            )
        res["recall"] = round(res["recall"] / len(data), 3)
        res["s"] = round(time.perf_counter() - started, 1)
        out[key] = res
    return out


async def lookup_ms(passages: int = 1000, queries: int = 100) -> tuple[float, float]:
    """Added retrieval time per direct run with answer memory on: (p50, mean) milliseconds.

    A tenancy store with its corpus and ``passages`` learned passages; the same queries are
    retrieved with ``memory_k = 0`` and ``2``, alternating, so drift hits both alike.
    """
    from tandem.workers.backends import BackendSettings, OllamaSettings, make_backend
    from tandem.workers.memory import learned_metadata, learned_text
    from tandem.workers.records import Subtask, WorkerResult
    from tandem.workers.store import WorkerStore, open_client
    from tandem.workers.worker import Worker, WorkerRun

    spec = next(s for s in demo_specs() if s.name == "tenancy")
    with FakeOllama(chat_models=(CHAT_MODEL,), embed_models=("nomic-embed-text",)) as ol:
        embedder = make_backend(
            "ollama:nomic-embed-text", BackendSettings(ollama=OllamaSettings(host=ol.url))
        )
        store = WorkerStore("tenancy", open_client(scratch("tandem-bench-lookup-")), embedder)
        await store.ingest(spec.knowledge)
        batch = []
        for i in range(passages):
            text = learned_text(f"Question {i} about a tenancy matter {i}?", f"Answer {i}.")
            meta = learned_metadata(
                record_id=i, worker="tenancy", date="", model="m", sensitivity="normal", text=text
            )
            batch.append((f"learned:{i}", text, meta))
        for k in range(0, len(batch), 500):
            await store.add_memory(batch[k : k + 500])
        plain = Worker(spec, embedder, store, embedder, memory_k=0)
        memory = Worker(spec, embedder, store, embedder, memory_k=2)
        times: dict[int, list[float]] = {0: [], 2: []}
        for i in range(queries):
            sub = Subtask(worker="tenancy", instruction=f"How long for deposit {i}?", query="q")
            vector = hash_embed(sub.instruction)
            for w in (plain, memory) if i % 2 else (memory, plain):
                run = WorkerRun(result=WorkerResult(worker="tenancy", instruction="", status="ok"))
                t0 = time.perf_counter()
                await w.retrieve(sub, vector, run)
                times[w.memory_k].append((time.perf_counter() - t0) * 1000)
    added = sorted(a - b for a, b in zip(times[2], times[0], strict=True))
    return added[len(added) // 2], sum(added) / len(added)


def export_seconds(n: int = 10_000) -> tuple[float, int]:
    """Seconds to export ``n`` records (openai format) and how many lines parse as JSON."""
    from tandem.graphs.learning import LearnedPassage, LearningStore, Record
    from tandem.graphs.learning.export import export_records
    from tandem.workers.records import Citation

    spec = next(s for s in demo_specs() if s.name == "tenancy")
    corpus = [p.read_text() for p in sorted(Path(spec.knowledge[0]).glob("*.md"))]
    folder = scratch("tandem-bench-export-")
    store = LearningStore(folder / "learning.sqlite")

    def record(i: int) -> Record:
        passages = [
            LearnedPassage(source=f"{j:02d}.md", text=corpus[(i + j) % len(corpus)][:850])
            for j in range(4)
        ]
        return Record(
            worker="tenancy",
            kind="escalated",
            question=f"Question {i}: how long may a landlord keep deposit number {i}?",
            instruction=f"Question {i}: how long may a landlord keep deposit number {i}?",
            answer=f"Within 14 days (answer {i}).",
            answer_redacted=f"Within 14 days (answer {i}).",
            passages=passages,
            passages_redacted=passages,
            citations=[Citation(worker="tenancy", source="00.md")],
            checks={"substantive": True},
            status="kept",
        )

    store.add_many(record(i) for i in range(n))
    out = folder / "export.jsonl"
    started = time.perf_counter()
    export_records(store, spec, out)
    seconds = time.perf_counter() - started
    valid = 0
    with out.open(encoding="utf-8") as f:
        for line in f:
            json.loads(line)
            valid += 1
    return seconds, valid


def run(embed: str | None = None) -> BenchResult:
    embed = embed or os.environ.get("BENCH_LEARNING_EMBED") or _default_embed()
    results: dict[str, dict[str, Any]] = {}
    for labelled in (True, False):
        for memory in ("off", "auto"):
            name = f"{'labelled' if labelled else 'configured'} router · memory {memory}"
            results[name] = asyncio.run(run_fakes(memory, embed=embed, labelled=labelled))
    rows_out = []
    for name, r in results.items():
        for p in ("first", "second"):
            x = r[p]
            rows_out.append(
                [
                    name,
                    "1 question" if p == "first" else "2 paraphrase",
                    str(x["requests"]),
                    str(x["escalated"]),
                    str(x["memory"]),
                    f"{x['recall']:.0%}",
                    f"{x['seconds']}s",
                ]
            )
    figures = []
    for router in ("labelled", "configured"):
        auto = results[f"{router} router · memory auto"]
        ratio = auto["second"]["requests"] / max(1, auto["first"]["requests"])
        figures += [
            Figure(
                f"{router} router: pass-2 large-model requests / pass 1 (memory auto)",
                ratio,
                "≤ 0.30",
                ratio <= 0.30,
                "{:.2f}",
            ),
            Figure(
                f"{router} router: pass-2 fact recall − pass 1 (memory auto)",
                auto["second"]["recall"] - auto["first"]["recall"],
                "≥ 0",
                auto["second"]["recall"] >= auto["first"]["recall"],
                "{:+.3f}",
            ),
        ]
    p50, mean = asyncio.run(lookup_ms())
    figures.append(
        Figure("memory lookup added per direct run, p50 (ms)", p50, "≤ 10", p50 <= 10, "{:.1f}")
    )
    notes = [
        f"why a paraphrase still reached the large model, {name} (pass 2): "
        + summary(r["second"]["why"])
        for name, r in results.items()
        if name.endswith("memory auto")
    ]
    notes.append(f"memory lookup: mean {mean:.1f} ms added with 1,000 learned passages")
    if embed == "minilm":  # the bars are for the bundled embeddings
        figure, note = memory_guard_report(_embedder(embed)[1])
        figures.append(figure)
        notes.append(note)
    seconds, valid = export_seconds()
    figures.append(
        Figure(
            "export of 10,000 records (s)",
            seconds,
            "≤ 10, all valid JSON",
            seconds <= 10 and valid == 10_000,
            "{:.1f}",
        )
    )
    return BenchResult(
        key="learning",
        title="13. Repeat workload: answer memory on vs off (fakes)",
        method=f"40 questions × 2 passes; embeddings {embed}; fake specialist τ = {TAU}",
        headers=[
            "setup",
            "pass",
            "large-model requests",
            "escalated",
            "from memory",
            "fact recall",
            "time",
        ],
        rows=rows_out,
        figures=figures,
        notes=notes,
    )


def run_bundled_bench(n: int | None = None) -> BenchResult:
    """The repeat workload on the bundled models (a sample: CPU inference is slow)."""
    n = n or int(os.environ.get("BENCH_LEARNING_SAMPLE") or 4)
    found = {m: asyncio.run(run_bundled(n, m, ("question", "paraphrase"))) for m in ("off", "auto")}
    rows_out = []
    for memory, r in found.items():
        for p in ("question", "paraphrase"):
            x = r[p]
            rows_out.append(
                [
                    f"memory {memory}",
                    "1 question" if p == "question" else "2 paraphrase",
                    str(x["requests"]),
                    str(x["escalated"]),
                    str(x["memory"]),
                    f"{x['routed']}/{n}",
                    f"{x['recall']:.0%}",
                    f"{x['s']}s",
                ]
            )
    auto = found["auto"]
    ratio = auto["paraphrase"]["requests"] / max(1, auto["question"]["requests"])
    figures = [
        Figure(
            "bundled: pass-2 large-model requests / pass 1 (memory auto)",
            ratio,
            "≤ 0.30",
            ratio <= 0.30,
            "{:.2f}",
        ),
        Figure(
            "bundled: pass-2 fact recall − pass 1 (memory auto)",
            auto["paraphrase"]["recall"] - auto["question"]["recall"],
            "≥ 0",
            auto["paraphrase"]["recall"] >= auto["question"]["recall"],
            "{:+.3f}",
        ),
    ]
    return BenchResult(
        key="learning-bundled",
        title="13b. Repeat workload on the bundled models: answer memory on vs off",
        method=(
            f"{n} questions (round-robin over the specialists) × 2 passes, zero-config bundled "
            "models: specialists, MiniLM router/stores, 1.5B supervisor; no fakes"
        ),
        headers=[
            "setup",
            "pass",
            "large-model requests",
            "escalated",
            "from memory",
            "routed as labelled",
            "fact recall",
            "time",
        ],
        rows=rows_out,
        figures=figures,
        notes=[
            "learning records written (memory auto, pass 1 / pass 2): "
            f"{auto['question']['records']} / {auto['paraphrase']['records']}",
            "kept local on trusted answer memory ([learning] trust_memory_above, memory auto, "
            f"pass 2): {auto['paraphrase']['trusted']} of {n}; served the remembered answer "
            f"(the cascade's memory step): {auto['paraphrase']['served']} of {n}",
            "why a paraphrase still reached the large model (memory auto, pass 2): "
            + summary(auto["paraphrase"]["why"]),
            "questions: " + " | ".join(found["auto"]["questions"]),
        ],
    )


def _default_embed() -> str:
    try:
        from tandem.workers.backends import BackendSettings, make_backend

        make_backend("embedded:minilm", BackendSettings())
        return "minilm"
    except Exception:
        return "fake"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--embed", choices=("minilm", "fake"))
    parser.add_argument("--bundled", type=int, default=0, help="N questions on the real models")
    parser.add_argument("--memory", default="auto")
    parser.add_argument("--passes", default="question,paraphrase")
    args = parser.parse_args()
    if args.bundled:
        found = asyncio.run(run_bundled(args.bundled, args.memory, args.passes.split(",")))
        print(json.dumps(found, indent=1))
        raise SystemExit(0)
    result = run(args.embed)
    for row in result.rows:
        print(" | ".join(row))
    for f in result.figures:
        print(f.label, f.shown(), f.target, f.passed)
