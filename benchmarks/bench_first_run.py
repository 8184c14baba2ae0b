"""(10) First run: ``tandem demo`` end to end as a whole process, and where its time goes.

A fresh data directory (empty stores: the three demo corpora are ingested) and a fresh
model cache (every bundled model assembled from its package parts and checksummed, as
on a new machine), then the demo's three questions on the real bundled models. The
breakdown comes from what the demo prints: the ``ready in …`` line (model assembly
overlapping ingestion), each ``question N took …`` line and the total. The planned
question's answer is checked for both parts' facts and its citations for the two
documents that state them. ``BENCH_FIRST_RUN_BASELINE`` = another checkout's ``tandem``
runs the same demo side by side (slow: the old path took 15–24 minutes).

Setup (creating the venv, installing the locked dependencies, compiling
llama-cpp-python) is not re-run here: it is measured by hand (see the notes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import BenchResult, Figure, scratch

from tandem.graphs.evaluate import fact_in

PLANNED = 2  # the demo's cross-domain question
PLANNED_FACTS = ("5.5%", "15%", "1,000")
PLANNED_SOURCES = ("06-rent-increases.md", "05-renters-tax-credit.md")  # state those facts

_TOOK = re.compile(r"question (\d+) took (?:(\d+) min (\d+) s|([\d.]+) s)")
_READY = re.compile(r"ready in ([\d.]+) s: models ([\d.]+) s while the stores filled in ([\d.]+) s")
_RULE = re.compile(r"─+ question (\d+) ─+")


def _tandem() -> str:
    here = Path(sys.executable).with_name("tandem")
    return str(here if here.exists() else shutil.which("tandem") or "tandem")


def _seconds(m: re.Match[str]) -> float:
    if m.group(4):
        return float(m.group(4))
    return int(m.group(2)) * 60 + int(m.group(3))


def _section(out: str, n: int) -> str:
    """The demo's output for question ``n`` (between its rule and the next)."""
    starts = {int(m.group(1)): m.end() for m in _RULE.finditer(out)}
    if n not in starts:
        return ""
    end = starts.get(n + 1, len(out))
    return out[starts[n] : end]


def _demo(exe: str) -> dict[str, object]:
    work = scratch("tandem-bench-firstrun-")
    env = dict(os.environ)
    # Zero config, as `make demo` runs it: no tandem.toml, fresh stores and model cache.
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "TANDEM_PLUGINS": "builtin",  # the demo specialists only
            "COLUMNS": "80",
            "TANDEM_HOME": str(work / "data"),
            "TANDEM_MODEL_CACHE": str(work / "models"),
        }
    )
    env.pop("TANDEM_CONFIG", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [exe, "demo"], cwd=work, capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - started
    out = proc.stdout + "\n" + proc.stderr
    (work / "demo.log").write_text(out)
    questions = {int(m.group(1)): _seconds(m) for m in _TOOK.finditer(out)}
    ready = _READY.search(out)
    planned = _section(proc.stdout, PLANNED)
    # The citations line may wrap at 80 columns: up to the next labelled line.
    cites = re.search(r"^citations (.+?)\n(?=note: |privacy |learned: )", planned, re.S | re.M)
    cited = " ".join(cites.group(1).split()) if cites else ""
    shutil.rmtree(work / "models", ignore_errors=True)  # 1.6 GB per run
    return {
        "exit": proc.returncode,
        "wall": wall,
        "questions": questions,
        "ready": float(ready.group(1)) if ready else None,
        "models": float(ready.group(2)) if ready else None,
        "ingestion": float(ready.group(3)) if ready else None,
        "facts": [f for f in PLANNED_FACTS if fact_in(f, planned)],
        "cited": cited,
        "sources": [s for s in PLANNED_SOURCES if s in cited],
        "others": [c for c in cited.split(", ") if c and not c.endswith(PLANNED_SOURCES)],
        "log": str(work / "demo.log"),
    }


def run() -> BenchResult:
    systems = {"this tree": _tandem()}
    baseline = os.environ.get("BENCH_FIRST_RUN_BASELINE")
    if baseline:
        systems = {"baseline": baseline, **systems}
    results = {name: _demo(exe) for name, exe in systems.items()}
    rows: list[list[str]] = []
    for name, r in results.items():
        q = r["questions"]
        assert isinstance(q, dict)
        rows.append(
            [
                name,
                f"{r['models']:.0f} s" if r["models"] is not None else "—",
                f"{r['ingestion']:.0f} s" if r["ingestion"] is not None else "—",
                f"{r['ready']:.0f} s" if r["ready"] is not None else "—",
                *(f"{q[n]:.0f} s" if n in q else "—" for n in (1, 2, 3)),
                f"{r['wall']:.0f} s",
            ]
        )
    mine = results["this tree"]
    wall = float(mine["wall"])  # type: ignore[arg-type]
    facts = mine["facts"]
    sources = mine["sources"]
    assert isinstance(facts, list) and isinstance(sources, list)
    return BenchResult(
        key="firstrun",
        title="10. First run: `tandem demo` end to end",
        method="`tandem demo` as one process with a fresh data directory (the demo corpora "
        "are ingested) and a fresh model cache (every bundled model is assembled from its "
        "package parts and checksummed), 80 columns, the real bundled models on CPU. "
        "'models' and 'stores' come from the demo's `ready in …` line: the chat models are "
        "assembled while the stores fill, so 'ready' is less than their sum. q1 direct, q2 "
        "planned (two specialists), q3 supervisor only. "
        + (
            "The baseline is another checkout's `tandem`, run in the same session."
            if baseline
            else ""
        ),
        headers=["system", "models", "stores", "ready", "q1", "q2", "q3", "total"],
        rows=rows,
        figures=[
            Figure("tandem demo end to end", wall / 60, "≤ 5 min", wall <= 300, "{:.1f} min"),
            Figure(
                "planned answer: facts of both parts",
                len(facts) / len(PLANNED_FACTS),
                "1.00",
                len(facts) == len(PLANNED_FACTS),
                "{:.2f}",
            ),
            Figure(
                "planned answer cites the rent-increase and the tax-credit documents",
                len(sources) / len(PLANNED_SOURCES),
                "1.00",
                len(sources) == len(PLANNED_SOURCES),
                "{:.2f}",
            ),
        ],
        notes=[
            f"planned answer's citations: {mine['cited'] or '(none)'} "
            f"({len(mine['others'])} besides the two that state its facts); "  # type: ignore[arg-type]
            f"exit code {mine['exit']}",
            "Setup before the first `tandem demo` (not re-run by this benchmark): a fresh "
            "venv with the locked dependencies takes ~15 min on 2 cores, ~12 of them "
            "compiling llama-cpp-python; with pip's wheel cache (a second clone) ~3.5 min.",
        ],
    )
