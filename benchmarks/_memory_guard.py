"""Does answer memory serve the wrong memory to a near-miss question? (bench_learning.py)

Each of the 40 repeat-workload questions has a labelled near miss in
``data/memory_near_miss.jsonl``: close in wording, asking something else ("Which organ
produces bile?" beside "Which organ produces insulin?"). The recorded question's learned
passage (``learned_text`` of the question and a stand-in answer, ``The answer is <fact>.``)
is the memory; three kinds of new question meet it:

* its **paraphrase** (should be served),
* its **near miss** (must not be),
* a paraphrase whose best-matching passage (of all 40, as retrieval ranks them) is another
  question's (a **wrong memory**, must not be served).

The memory step serves a remembered answer on the question path when the question guard
(``asks_else``: no new name or figure; no swapped word at share ``SWAP_SHARE``) passes and
the question is at least ``answer_memory_above`` close to the recorded one; on the
specialist-agreement path when the guard passes and the passage scored at least
``trust_memory_above`` (the worst case is assumed: a specialist that copies the passage
whatever was asked).

``SWAP_SHARE`` was chosen on the 40 near misses of ``data/memory_near_miss.jsonl`` (the
tuning set), which pick a question bar too: the lowest at which none of them and no wrong
memory is served (0.67). A second set, ``data/memory_near_miss_heldout.jsonl``, written
before any of its scores were looked at, showed that bar serving 4 of its 40 near misses;
the shipped ``answer_memory_above`` (0.82) was raised after that, so the held-out set no
longer vouches for it — the report says both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from _common import Figure, load_jsonl

from tandem.workers import memory as mem
from tandem.workers.backends import cosine

Embed = Callable[[Sequence[str]], list[list[float]]]


def _cases(embed: Embed) -> dict[str, dict[int, tuple[str, float, float, str]]]:
    """Per question index: its paraphrase and its near miss, each met by the learned passage
    it matches best among all 40 (as retrieval would hand the specialist); a paraphrase
    whose best match is another question's passage is a wrong-memory case."""
    rows = load_jsonl("repeat_workload.jsonl")
    near = {n["of"]: n["question"] for n in load_jsonl("memory_near_miss.jsonl")}
    held = {n["of"]: n["question"] for n in load_jsonl("memory_near_miss_heldout.jsonl")}
    said = [f"The answer is {r['facts'][0]}." for r in rows]
    qv = embed([r["question"] for r in rows])
    lv = embed([mem.learned_text(r["question"], a) for r, a in zip(rows, said, strict=True)])
    n = len(rows)

    def case(text: str, v: Sequence[float]) -> tuple[int, tuple[str, float, float, str]]:
        j = max(range(n), key=lambda k: cosine(v, lv[k]))
        return j, (text, cosine(v, qv[j]), cosine(v, lv[j]), rows[j]["question"] + "\x00" + said[j])

    out: dict[str, dict[int, tuple[str, float, float, str]]] = {
        "paraphrase": {},
        "near miss": {},
        "wrong memory": {},
        "held-out near miss": {},
    }
    pv = embed([r["paraphrase"] for r in rows])
    nv = embed([near[i] for i in range(n)])
    hv = embed([held[i] for i in range(n)])
    for i in range(n):
        j, c = case(rows[i]["paraphrase"], pv[i])
        out["paraphrase" if j == i else "wrong memory"][i] = c
        out["near miss"][i] = case(near[i], nv[i])[1]
        out["held-out near miss"][i] = case(held[i], hv[i])[1]
    return out


def _served(c: tuple[str, float, float, str], share: float, bar: float, trust: float) -> bool:
    text, close, passage, known = c
    asked, said = known.split("\x00")
    saved = mem.SWAP_SHARE
    mem.SWAP_SHARE = share
    try:
        guarded = mem.asks_else(text, asked, said) == ""
    finally:
        mem.SWAP_SHARE = saved
    return guarded and (close >= bar or passage >= trust)


def _count(cases: dict[str, dict[int, Any]], idx: set[int], *bars: float) -> dict[str, int]:
    return {
        kind: sum(_served(c, *bars) for k, c in group.items() if k in idx)
        for kind, group in cases.items()
    }


def evaluate(embed: Embed, bar: float, trust: float) -> dict[str, Any]:
    """Served counts of each kind (of 40):

    * ``question path``: at the shipped ``answer_memory_above`` (``bar``), guard passed;
    * ``agreement path, worst case``: guard passed and the passage scored at least
      ``trust_memory_above`` (``trust``), assuming the specialist copies it;
    * ``picked``: the bar the tuning set picks (the lowest at which none of its near misses
      and no wrong memory is served), and the question path's counts there.
    """
    cases = _cases(embed)
    every = set(range(40))
    off = 2.0  # a bar no cosine reaches: that path closed
    tuning = {k: v for k, v in cases.items() if k != "held-out near miss"}
    picked = next(
        (
            b
            for b in [x / 100 for x in range(50, 101)]
            if not any(
                _count(tuning, every, mem.SWAP_SHARE, b, off)[k]
                for k in ("near miss", "wrong memory")
            )
        ),
        1.0,
    )
    return {
        "question path": _count(cases, every, mem.SWAP_SHARE, bar, off),
        "agreement path, worst case": _count(cases, every, mem.SWAP_SHARE, off, trust),
        "picked": picked,
        "question path at picked": _count(cases, every, mem.SWAP_SHARE, picked, off),
    }


def report(embed: Embed) -> tuple[Figure, str]:
    """The bench's figure and note, at the shipped ``[learning]`` defaults."""
    from tandem.graphs.learning import LearningSettings

    ls = LearningSettings()
    g = evaluate(embed, ls.answer_memory_above or 2.0, ls.trust_memory_above or 2.0)
    q, w, at = g["question path"], g["agreement path, worst case"], g["question path at picked"]
    figure = Figure(
        "near misses served from memory, question path (second set, of 40; see note)",
        q["held-out near miss"],
        "0",
        q["held-out near miss"] == 0,
        "{:.0f}",
    )
    note = (
        f"memory step, question path at answer_memory_above {ls.answer_memory_above}: "
        f"paraphrases {q['paraphrase']}/40, near misses {q['near miss']}/40 (tuning set), "
        f"{q['held-out near miss']}/40 (second set), wrong memories {q['wrong memory']}; "
        f"the tuning set alone picks {g['picked']:.2f}: paraphrases {at['paraphrase']}/40, "
        f"second-set near misses {at['held-out near miss']}/40 (held out then; the shipped "
        "bar was raised after that, so the second set no longer vouches for it); agreement "
        f"path if the specialist copied the passage (trust_memory_above "
        f"{ls.trust_memory_above}): near misses {w['near miss']}/40 tuning, "
        f"{w['held-out near miss']}/40 second set"
    )
    return figure, note
