"""Durable runs: ``kill -9`` in the middle of a run, resume the thread, nothing redone.

The fake servers live in this (test) process, so their request logs survive the killed
one: they show which model calls had finished before the kill and which were made after.
Interrupted ingestion resumes without duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tandem.graphs import Runtime
from tandem.workers.testing import FakeOllama, FakeOpenAI

CHAT = "qwen2.5:1.5b"
QUERY = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
PLAN = {
    "subtasks": [
        {"worker": "tenancy", "instruction": "Can my landlord put the rent up by 8% this year?"},
        {"worker": "finance", "instruction": "How much can I claim as Renters' Tax Credit?"},
        {"worker": "health", "instruction": "Can I take ibuprofen together with paracetamol?"},
    ],
    "rationale": "three domains",
}
SCRIPT = """
import json, sys
from tandem.graphs import TandemConfig, build_graph
from tandem.graphs.checkpoint import open_checkpointer_sync

config = TandemConfig(**json.loads(open(sys.argv[1]).read()))
mode, query = sys.argv[2], sys.argv[3]
with open_checkpointer_sync(config) as saver:
    graph = build_graph(config, checkpointer=saver)
    thread = {"configurable": {"thread_id": "crash-test"}}
    out = graph.invoke({"query": query} if mode == "start" else None, thread)
    print(json.dumps(out["answer"].model_dump(mode="json")))
"""


def _spawn(tmp_path: Path, config: Any, mode: str) -> subprocess.Popen[str]:
    (tmp_path / "config.json").write_text(json.dumps(config.model_dump(mode="json")))
    (tmp_path / "run.py").write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "config.json"), mode, QUERY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )


def _key(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"], sort_keys=True)


@pytest.mark.integration  # kills and restarts a process
def test_kill_9_mid_run_then_resume_redoes_no_finished_model_call(
    make_config: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(checkpointer=f"sqlite:///{tmp_path / 'threads.sqlite'}")
    fake_openai.script(PLAN)  # the plan; the synthesis is rule-based
    fake_ollama.stall(1.0, path="/api/chat", times=100)  # each worker answer takes 1 s

    proc = _spawn(tmp_path, config, "start")
    try:
        deadline = time.monotonic() + 90
        while True:  # until two worker answers have finished and the third is in flight
            chats = fake_ollama.requests_to("/api/chat")
            done = [r for r in chats if r.status == 200]
            if len(done) >= 2 and any(r.ended == 0 for r in chats):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        time.sleep(0.3)  # the finished worker's step is written (durability "sync")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)  # reaps it and closes its pipes
    assert proc.returncode == -signal.SIGKILL, err

    finished = {_key(r.body) for r in fake_ollama.requests_to("/api/chat") if r.status == 200}
    interrupted = [r for r in fake_ollama.requests_to("/api/chat") if r.status != 200]
    before = len(fake_ollama.requests)
    plans_before = [b for b in fake_openai.completions() if b.get("response_format")]
    assert len(finished) == 2 and len(interrupted) == 1 and len(plans_before) == 1

    resumed = _spawn(tmp_path, config, "resume")
    try:
        stdout, stderr = resumed.communicate(timeout=120)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.communicate()
    assert resumed.returncode == 0, stderr
    answer = json.loads(stdout.strip().splitlines()[-1])

    after = fake_ollama.requests[before:]
    chats_after = [r for r in after if r.path == "/api/chat"]
    # Only the interrupted worker answered again; the two finished ones were not re-asked.
    assert [_key(r.body) for r in chats_after] == [_key(interrupted[0].body)]
    assert not any(_key(r.body) in finished for r in chats_after)
    # No routing embedding and no plan again: those steps had finished too.
    assert not any(r.path == "/api/embed" and r.body.get("input") == QUERY for r in after)
    purposes = ["plan" if b.get("response_format") else "text" for b in fake_openai.completions()]
    assert purposes == ["plan", "text"]  # one plan before the kill, one synthesis after

    # The same final answer shape as an uninterrupted run.
    assert answer["route"]["kind"] == "plan"
    results = answer["worker_results"]
    assert sorted(r["worker"] for r in results) == ["finance", "health", "tenancy"]
    assert all(r["status"] == "ok" for r in results)
    assert answer["text"].startswith("Combined answer:")
    assert all(f"[{w}]" in answer["text"] for w in ("tenancy", "finance", "health"))


async def test_interrupted_ingestion_resumes_without_duplicates(
    make_config: Any, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(data_dir=tmp_path / "fresh")

    class Killed(Exception):
        pass

    def die_halfway(worker: str, done: int, total: int, current: str) -> None:
        if worker == "tenancy" and done == 7:
            raise Killed

    first = Runtime(config)
    try:
        await first.ensure_ingested(["tenancy"], progress=die_halfway)
    except Killed:
        pass
    else:
        raise AssertionError("the ingestion should have been interrupted")
    partial = await first.stores["tenancy"].count()
    assert partial > 0
    assert await first.stores["tenancy"].ingested() is None  # not recorded as complete
    fake_ollama.reset()

    second = Runtime(config)  # a new start, like the next `tandem ask`
    report = (await second.ensure_ingested(["tenancy"]))["tenancy"]
    store = second.stores["tenancy"]
    total = await store.count()
    assert report.skipped == partial and report.added == total - partial
    embedded = sum(len(r.body["input"]) for r in fake_ollama.requests_to("/api/embed"))
    assert embedded == report.added  # only the missing chunks were embedded
    ids = await store._call(lambda: store._coll().get(include=[])["ids"], "read")
    assert len(ids) == len(set(ids)) == total

    # Complete now: the next start does not ingest again.
    fake_ollama.reset()
    assert await Runtime(config).ensure_ingested(["tenancy"]) == {}
    assert fake_ollama.requests_to("/api/embed") == []
