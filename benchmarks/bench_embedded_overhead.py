"""Overhead of ``EmbeddedBackend.chat`` over calling llama-cpp-python directly.

Same prompt, same JSON schema, same loaded ``llama_cpp.Llama`` instance, same
process; runs alternate between the two paths so machine noise hits both.
Both paths start from a reset context (the backend always resets, so the
direct path does too; otherwise llama-cpp-python would skip the whole cached
prompt and the comparison would measure the cache, not the wrapper).

Usage::

    .venv/bin/python benchmarks/bench_embedded_overhead.py [--runs 3] [--max-tokens 96]

Target: overhead <= 5 % in tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from tandem.workers.backends._base import ChatMessage
from tandem.workers.backends.embedded import EmbeddedBackend, EmbeddedSettings
from tandem.workers.records import WorkerReply

MESSAGES: list[ChatMessage] = [
    {
        "role": "system",
        "content": "You are a Python expert. Reply with a JSON object with the keys "
        "answer, confidence, citations and needs_escalation.",
    },
    {"role": "user", "content": "Explain in three sentences what a list comprehension is."},
]


def _direct(llm: Any, schema: dict[str, Any], max_tokens: int, seed: int) -> tuple[int, float]:
    start = time.perf_counter()
    llm.reset()
    response = llm.create_chat_completion(
        messages=MESSAGES,
        response_format={"type": "json_object", "schema": schema},
        temperature=0.0,
        max_tokens=max_tokens,
        seed=seed,
    )
    return int(response["usage"]["completion_tokens"]), time.perf_counter() - start


async def _main(args: argparse.Namespace) -> None:
    settings = EmbeddedSettings(cache_dir=args.cache_dir)
    backend = EmbeddedBackend(args.model, settings)
    schema = WorkerReply.model_json_schema()

    start = time.perf_counter()
    await backend.chat(MESSAGES[-1:], max_tokens=1)  # assemble/verify + load, warm up
    print(f"model ready (verify + load + 1-token warm-up) in {time.perf_counter() - start:.2f} s")
    llm = backend._loaded["chat"].llama  # the very instance the backend uses

    rows: list[tuple[int, str, int, float]] = []
    for run in range(1, args.runs + 1):
        order = ("backend", "direct") if run % 2 else ("direct", "backend")
        for path in order:
            if path == "backend":
                t0 = time.perf_counter()
                result = await backend.chat(MESSAGES, schema=schema, max_tokens=args.max_tokens)
                tokens, seconds = result.tokens_out, time.perf_counter() - t0
            else:
                tokens, seconds = _direct(llm, schema, args.max_tokens, settings.seed)
            rows.append((run, path, tokens, seconds))

    print(f"\n{'run':>3}  {'path':<8} {'tokens':>6} {'seconds':>8} {'tok/s':>7}")
    for run, path, tokens, seconds in rows:
        print(f"{run:>3}  {path:<8} {tokens:>6} {seconds:>8.2f} {tokens / seconds:>7.2f}")

    def rate(path: str) -> float:
        return statistics.median(t / s for _, p, t, s in rows if p == path)

    backend_rate, direct_rate = rate("backend"), rate("direct")
    overhead = (direct_rate / backend_rate - 1) * 100
    print(f"\nmedian tok/s: backend {backend_rate:.2f}, direct {direct_rate:.2f}")
    print(f"ratio backend/direct = {backend_rate / direct_rate:.3f} (overhead {overhead:+.1f} %)")
    print("target: overhead <= 5 %:", "met" if overhead <= 5 else "NOT met")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--cache-dir", type=Path, default=None)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
