"""Run every tandem benchmark, print tables, write benchmarks/RESULTS.md and charts.

Usage::

    make bench                          # everything (real-model eval: first 3 questions)
    make bench BENCH_EVAL_LIMIT=0       # skip the real-model eval
    make bench BENCH_EVAL_LIMIT=all     # full real-model eval (slow on CPU)
    make bench BENCH=economy,overhead   # some benchmarks only

Each benchmark's result is stored in benchmarks/results/<name>.json; RESULTS.md
is rebuilt from the latest stored result of every benchmark (the command that
produced each is listed).

Benchmarks compare things side by side in one process and report ratios; the
absolute times describe this machine only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
warnings.filterwarnings("ignore")

from _common import HERE, BenchResult, Figure  # noqa: E402
from _report import charts, machine, print_result, write_results  # noqa: E402

RESULTS = HERE / "results"
ALL = (
    "economy",
    "overhead",
    "router",
    "retrieval",
    "embedding",
    "concurrency",
    "serve",
    "startup",
    "crossdomain",
    "firstrun",
    "eval",
    "calibration",
    "learning",
    "learning-bundled",
)


def _run_one(key: str) -> BenchResult:
    if key == "economy":
        import bench_economy

        return bench_economy.run()
    if key == "overhead":
        import bench_overhead

        return bench_overhead.run()
    if key == "router":
        import bench_router

        return bench_router.run()
    if key == "retrieval":
        import bench_retrieval

        return bench_retrieval.run()
    if key == "embedding":
        import bench_embedding

        return bench_embedding.run()
    if key == "concurrency":
        import bench_concurrency

        return bench_concurrency.run()
    if key == "startup":
        import bench_startup

        return bench_startup.run()
    if key == "crossdomain":
        import bench_cross_domain

        return bench_cross_domain.run()
    if key == "firstrun":
        import bench_first_run

        return bench_first_run.run()
    if key == "serve":
        import bench_serve

        return bench_serve.run()
    if key == "calibration":
        import bench_calibration

        return bench_calibration.run()
    if key == "learning":
        import bench_learning

        return bench_learning.run()
    if key == "learning-bundled":
        import bench_learning

        return bench_learning.run_bundled_bench()
    import bench_eval

    return bench_eval.run()


def _save(result: BenchResult, seconds: float, command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {
        "result": asdict(result),
        "seconds": seconds,
        "command": command,
        "finished": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "load": os.getloadavg()[0],
    }
    (RESULTS / f"{result.key}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))


def _load_all() -> tuple[list[BenchResult], dict[str, str], list[str]]:
    results, timings, commands = [], {}, []
    for key in ALL:
        path = RESULTS / f"{key}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        raw = data["result"]
        raw["figures"] = [Figure(**f) for f in raw["figures"]]
        raw["extra_tables"] = [tuple(t) for t in raw["extra_tables"]]
        results.append(BenchResult(**raw))
        timings[key] = f"`{data['command']}`: {data['seconds']:.0f} s" + (
            f", finished {data['finished']}, 1-min load average {data['load']:.1f}"
            if "finished" in data
            else ""
        )
        if data["command"] not in commands:
            commands.append(data["command"])
    return results, timings, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated benchmarks")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    limit = os.environ.get("BENCH_EVAL_LIMIT")
    command = "make bench" if args.only == ",".join(ALL) else f"make bench BENCH={args.only}"
    if limit is not None and "eval" in keys:
        command += f" BENCH_EVAL_LIMIT={limit}"
    sample = os.environ.get("BENCH_LEARNING_SAMPLE")
    if sample is not None and "learning-bundled" in keys:
        command += f" BENCH_LEARNING_SAMPLE={sample}"
    for key in keys:
        print(f"\n▶ {key} …", flush=True)
        t0 = time.perf_counter()
        result = _run_one(key)
        print_result(result)
        _save(result, time.perf_counter() - t0, command)
    # RESULTS.md is assembled from the latest stored result of every benchmark.
    results, timings, commands = _load_all()
    chart_files = charts(results, HERE / "charts")
    write_results(args.out, results, machine(), commands, timings, chart_files)
    print(f"\nwrote {args.out} and {len(chart_files)} chart(s) in {HERE / 'charts'}")


if __name__ == "__main__":
    main()
