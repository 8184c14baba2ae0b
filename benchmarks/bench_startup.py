"""(8) Start-up cost: whole ``tandem`` processes, median of several runs.

``tandem --help`` and ``tandem ask --json`` for a question the router sends straight to a
worker, answered by an *instant* fake model (fake Ollama + fake OpenAI on 127.0.0.1): what
remains is the cost of starting tandem itself (imports, config, runtime, detectors, the
graph, pricing the ledger). Beside them, a bare Python process that only imports the
libraries ``ask`` cannot do without (langgraph, chromadb, the ollama client, onnxruntime
and tokenizers for the embedder): the floor that tandem's own start-up sits on. Every
command of every system runs once per round, so a slow spell of the host falls on all of
them alike. This tree's modules are byte-compiled first, as pip does for an installed
package and ``make setup`` for this checkout: where ``PYTHONDONTWRITEBYTECODE`` is set
(this machine's shells set it), Python would otherwise compile them from source on every
start (~0.2–0.3 s of ``ask``, measured side by side). Set ``BENCH_STARTUP_BASELINE`` to
another checkout's ``tandem`` executable to measure it side by side in the same run.
"""

from __future__ import annotations

import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import HERE, BenchResult, Figure, fakes, scratch

from tandem.workers.testing import fake_config_toml

RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "11"))
ASK = "tandem ask --json (instant fake)"
FLOOR = "python: the stack's imports alone"
STACK = "import langgraph.graph, chromadb, ollama, numpy, onnxruntime, tokenizers"
QUESTION = "How quickly does Brightwater Lettings return a tenant's deposit?"


def _tandem() -> str:
    here = Path(sys.executable).with_name("tandem")
    return str(here if here.exists() else shutil.which("tandem") or "tandem")


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env(), check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "TANDEM_PLUGINS": "", "COLUMNS": "80"})
    return env


def run() -> BenchResult:
    for package in ("agents", "workers", "graphs"):
        compileall.compile_dir(HERE.parent / package, quiet=1)
    systems = {"this tree": _tandem()}
    baseline = os.environ.get("BENCH_STARTUP_BASELINE")
    if baseline:
        systems = {"baseline": baseline, **systems}
    rows: list[list[str]] = []
    medians: dict[tuple[str, str], float] = {}
    with fakes() as (ollama, openai):
        jobs: dict[tuple[str, str], tuple[list[str], Path]] = {}
        for name, exe in systems.items():
            work = scratch("tandem-bench-startup-")
            (work / "tandem.toml").write_text(fake_config_toml(ollama, openai, work / "data"))
            _timed([exe, "ask", "--json", QUESTION], work)  # ingests the stores: not counted
            jobs[(name, "tandem --help")] = ([exe, "--help"], work)
            jobs[(name, ASK)] = ([exe, "ask", "--json", QUESTION], work)
        jobs[("this tree", FLOOR)] = ([sys.executable, "-c", STACK], work)
        for cmd, cwd in jobs.values():
            _timed(cmd, cwd)  # warm the page cache
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in jobs}
        for _ in range(RUNS):  # interleaved: a slow spell of the host hits every command
            for key, (cmd, cwd) in jobs.items():
                runs[key].append(_timed(cmd, cwd))
        for (name, label), timed in runs.items():
            wall = statistics.median(w for w, _ in timed)
            cpu = statistics.median(c for _, c in timed)
            medians[(name, label)] = wall
            rows.append([name, label, f"{wall:.2f} s", f"{cpu:.2f} s", str(RUNS)])
    mine = "this tree"
    figures = [
        Figure(
            "tandem ask on an instant fake (wall, median)",
            medians[(mine, ASK)],
            "≤ 1.5 s",
            medians[(mine, ASK)] <= 1.5,
            "{:.2f} s",
        ),
        Figure(
            "the stack's imports alone (wall, median)",
            medians[(mine, FLOOR)],
            "(reported)",
            None,
            "{:.2f} s",
        ),
        Figure(
            "tandem --help (wall, median)",
            medians[(mine, "tandem --help")],
            "≤ 0.5 s",
            medians[(mine, "tandem --help")] <= 0.5,
            "{:.2f} s",
        ),
    ]
    return BenchResult(
        key="startup",
        title="8. Start-up cost: whole processes",
        method=f"Each command run {RUNS} times as a separate process after one warm-up run "
        "(median wall time; CPU = user + system of the child). `ask` answers a single-domain "
        "question routed straight to a worker; every model is an instant fake on "
        "127.0.0.1, so the time is tandem's own start-up. The stack's imports alone: "
        f"`python -c '{STACK}'`, run between the others. "
        + (
            "The baseline is another checkout's `tandem`, measured in the same run, its "
            "commands interleaved with these."
            if baseline
            else ""
        ),
        headers=["system", "command", "wall (median)", "CPU (median)", "runs"],
        rows=rows,
        figures=figures,
    )
