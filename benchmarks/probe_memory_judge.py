"""Probe: can a local chat model tell a paraphrase from a near miss for answer memory?

Not part of ``run.py``. For each of the 40 repeat-workload questions (with the bench's
stand-in answer ``The answer is <fact>.``) the model is asked, with a JSON schema
(``{"verdict": "same" | "different"}``), whether the remembered answer also answers a new
question: the question's paraphrase (should be ``same``), its near miss of
``data/memory_near_miss.jsonl`` and of ``data/memory_near_miss_heldout.jsonl`` (should be
``different``). Prints the ``same`` counts per kind and, with the question guard
(:func:`tandem.workers.memory.asks_else`) and a question-cosine bar, how many of each would
be served.

Run on the bundled models under the CPU lock, e.g.
``flock /tmp/tandem-cpu.lock python benchmarks/probe_memory_judge.py embedded:qwen2.5-coder-0.5b``.
Measured 2026-12-02 (greedy decoding): the 0.5B said ``same`` to 28/40 paraphrases but also
to 35/40 and 32/40 near misses; the 1.5B to 33/40 paraphrases and 11/40, 9/40 near misses —
with the guard and a 0.67 bar it serves 19/40 paraphrases and 1/40 held-out near misses,
no better than the cosine bar alone (22/40 and 4/40 at 0.67, 4/40 and 0/40 at 0.82).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_jsonl

from tandem.workers.backends import BackendSettings, cosine, make_backend
from tandem.workers.memory import asks_else

SYSTEM = (
    "You check whether an answer remembered for one question also answers a new question. "
    'Reply "same" only when the new question asks for exactly the same information as the '
    "recorded question (it may be worded differently or add background), so the remembered "
    'answer answers it fully. Reply "different" when it asks about another term, thing, '
    "figure or aspect, even if it uses similar words."
)
SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["same", "different"]}},
    "required": ["verdict"],
}
BARS = (0.0, 0.6, 0.67, 0.7, 0.82)


async def main(ref: str) -> None:
    chat = make_backend(ref, BackendSettings())
    embed = make_backend("embedded:minilm", BackendSettings())
    rows = load_jsonl("repeat_workload.jsonl")
    near = {n["of"]: n["question"] for n in load_jsonl("memory_near_miss.jsonl")}
    held = {n["of"]: n["question"] for n in load_jsonl("memory_near_miss_heldout.jsonl")}
    kinds = {
        "paraphrase": [r["paraphrase"] for r in rows],
        "near miss": [near[i] for i in range(len(rows))],
        "held-out near miss": [held[i] for i in range(len(rows))],
    }
    recorded = (await embed.embed([r["question"] for r in rows])).vectors
    for kind, texts in kinds.items():
        vectors = (await embed.embed(texts)).vectors
        served = dict.fromkeys(BARS, 0)
        same = 0
        for i, (r, text) in enumerate(zip(rows, texts, strict=True)):
            answer = f"The answer is {r['facts'][0]}."
            user = (
                f"Recorded question: {r['question']}\nRemembered answer: {answer}\n"
                f"New question: {text}"
            )
            res = await chat.chat(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                schema=SCHEMA,
                max_tokens=20,
                temperature=0.0,
            )
            try:
                verdict = json.loads(res.content)["verdict"]
            except (ValueError, KeyError, TypeError):
                verdict = "?"
            if verdict != "same":
                continue
            same += 1
            if asks_else(text, r["question"], answer):
                continue
            close = cosine(vectors[i], recorded[i])
            for bar in BARS:
                served[bar] += close >= bar
        shown = ", ".join(f"≥{b:.2f}: {n}" for b, n in served.items())
        print(f"{ref} {kind}: same {same}/40; guard passed and question cosine {shown}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "embedded:qwen2.5-coder-0.5b"))
