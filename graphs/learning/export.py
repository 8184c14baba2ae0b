"""Chat fine-tuning exports of learning records, and an Ollama Modelfile for the specialist.

One training example per record: the worker's system prompt, the user turn exactly as the
worker saw it (task and quoted passages), and as the target the reply the worker should
have given — its JSON reply format, with the supervisor's answer. Formats:

* ``openai`` — ``{"messages": [{"role": "system"|"user"|"assistant", "content": …}]}``
  (OpenAI chat fine-tuning; also read by Axolotl, LLaMA-Factory, Unsloth, TRL);
* ``sharegpt`` — ``{"conversations": [{"from": "system"|"human"|"gpt", "value": …}]}``.

Exports are redacted by default (the placeholders the run used, computed when the record
was written, so an export of many thousands of records costs no detection); ``raw`` keeps
the original values. Records are deduplicated by question (the newest answer wins) and,
unless asked otherwise, must pass the quality filter (:func:`quality`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from langchain_core.documents import Document

from tandem.graphs.learning.records import Record, normalize_question
from tandem.graphs.learning.store import LearningStore
from tandem.workers.records import Subtask
from tandem.workers.spec import WorkerSpec
from tandem.workers.worker import build_worker_messages

__all__ = [
    "ExportReport",
    "Format",
    "distill_stats",
    "export_records",
    "modelfile",
    "quality",
    "training_example",
]

Format = Literal["openai", "sharegpt"]
_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def quality(record: Record) -> list[str]:
    """Why a record would make a poor training example ([] = it passes the filter)."""
    problems = [f"check failed: {name}" for name in record.failed_checks]
    if record.status == "dropped":
        problems.append("dropped")
    if record.conflict:
        problems.append("conflicts with the curated corpus")
    return problems


def training_example(record: Record, spec: WorkerSpec, *, raw: bool, fmt: Format) -> str:
    """One JSONL line: the worker's prompt and the reply it should have given."""
    passages = record.passages if raw else (record.passages_redacted or record.passages)
    instruction = record.instruction if raw else (record.instruction_redacted or record.instruction)
    answer = record.answer if raw else (record.answer_redacted or record.answer)
    docs = [Document(page_content=p.text, metadata={"source": p.source}) for p in passages]
    messages = build_worker_messages(
        spec, Subtask(worker=spec.name, instruction=instruction, query=instruction), docs
    )
    ids = {(p.source): f"S{i}" for i, p in enumerate(passages, 1)}
    cited = list(dict.fromkeys(ids[c.source] for c in record.citations if c.source in ids))
    target = json.dumps(
        {
            "answer": answer,
            "confidence": 0.9,
            "citations": cited,
            "needs_escalation": False,
        },
        ensure_ascii=False,
    )
    turns: list[dict[str, str]] = [
        *({"role": str(m["role"]), "content": str(m["content"])} for m in messages),
        {"role": "assistant", "content": target},
    ]
    if fmt == "sharegpt":
        body: dict[str, object] = {
            "conversations": [
                {"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in turns
            ]
        }
    else:
        body = {"messages": [{"role": m["role"], "content": m["content"]} for m in turns]}
    return json.dumps(body, ensure_ascii=False)


@dataclass
class ExportReport:
    """What an export wrote and what it left out."""

    written: int = 0
    duplicates: int = 0
    filtered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _newest_per_question(records: Iterable[Record]) -> tuple[list[Record], int]:
    latest: dict[str, Record] = {}
    total = 0
    for r in records:
        total += 1
        latest[normalize_question(r.instruction)] = r  # ascending ids: newest wins
    kept = sorted(latest.values(), key=lambda r: r.id)
    return kept, total - len(kept)


def export_records(
    store: LearningStore,
    spec: WorkerSpec,
    out: Path,
    *,
    fmt: Format = "openai",
    raw: bool = False,
    filtered: bool = True,
) -> ExportReport:
    """Write ``spec``'s records as chat fine-tuning JSONL to ``out`` (mode 0600).

    Args:
        store: The learning store.
        spec: The specialist (its system prompt is part of every example).
        out: The JSONL file to write.
        fmt: ``openai`` or ``sharegpt``.
        raw: Keep the original values instead of the placeholders.
        filtered: Leave out records that fail the quality filter (:func:`quality`).
    """
    report = ExportReport()
    records, report.duplicates = _newest_per_question(store.iter_records(worker=spec.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        tmp.chmod(0o600)  # learning records may hold the user's own data
        for record in records:
            problems = quality(record)
            if record.status == "dropped" or (filtered and problems):
                report.filtered += 1
                for p in problems:
                    report.reasons[p] = report.reasons.get(p, 0) + 1
                continue
            f.write(training_example(record, spec, raw=raw, fmt=fmt) + "\n")
            report.written += 1
    tmp.replace(out)
    return report


def distill_stats(store: LearningStore) -> dict[str, dict[str, int]]:
    """Per worker: records, kept/pending/dropped, distinct questions, and how many pass the
    quality filter (what ``tandem distill export`` would write)."""
    out: dict[str, dict[str, int]] = {}
    counts = store.counts()
    for worker in sorted(counts):
        records, dups = _newest_per_question(store.iter_records(worker=worker))
        row = {"records": len(records) + dups, "distinct": len(records), "pass": 0}
        for status, n in counts[worker].items():
            row[status] = n
        row["pass"] = sum(1 for r in records if not quality(r))
        row["local_only"] = sum(1 for r in records if r.sensitivity == "local_only")
        out[worker] = row
    return out


_OLLAMA_NAMES = {
    "qwen2.5-coder-0.5b": "qwen2.5-coder:0.5b",
    "qwen2.5-coder-1.5b": "qwen2.5-coder:1.5b",
}


def base_model(spec: WorkerSpec) -> str:
    """The Ollama name of the worker's model (the ``FROM`` of its Modelfile)."""
    engine, _, name = spec.model.partition(":")
    if engine == "ollama":
        return name
    return _OLLAMA_NAMES.get(name, name)


def modelfile(spec: WorkerSpec, *, adapter: str = "./adapter", base: str | None = None) -> str:
    """An Ollama ``Modelfile`` serving the specialist with a fine-tuned LoRA adapter.

    ``ADAPTER`` takes a GGUF LoRA file or a safetensors adapter folder made for the ``FROM``
    model (see the README's fine-tuning section).
    """
    system = build_worker_messages(spec, Subtask(worker=spec.name, instruction="-", query="-"), [])[
        0
    ]["content"].replace('"""', "'''")
    return "\n".join(
        [
            f"# Ollama Modelfile for the tandem specialist '{spec.name}'.",
            f"# Build: ollama create tandem-{spec.name} -f Modelfile",
            f'# Use:   [[workers]] name = "{spec.name}", model = "ollama:tandem-{spec.name}"',
            f"FROM {base or base_model(spec)}",
            f"ADAPTER {adapter}",
            f'SYSTEM """{system}"""',
            "PARAMETER temperature 0",
            "PARAMETER num_ctx 4096",
            "",
        ]
    )


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of an export (for checks)."""
    with path.open(encoding="utf-8") as f:
        yield from f
