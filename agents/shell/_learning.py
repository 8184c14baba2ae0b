"""``tandem memory …`` and ``tandem distill …``: what escalations taught the specialists, on this
machine only (``tandem router feedback`` is in ``_router.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, console, err
from tandem.agents.shell._common import prepare_models as _prepare_models
from tandem.agents.shell._common import run as _run
from tandem.agents.shell._common import runtime as _runtime
from tandem.workers.errors import UsageError

if TYPE_CHECKING:  # the graph layer is imported when a command runs (`tandem --help` stays light)
    from tandem.graphs.learning import LearningStore
    from tandem.graphs.learning.export import Format

__all__ = ["distill_app", "memory_app"]

memory_app = typer.Typer(
    help="Answer memory: learning records of escalated answers, kept as passages in their "
    "specialist's store. Nothing here leaves the machine.",
    no_args_is_help=True,
)
distill_app = typer.Typer(
    help="Fine-tuning data from learning records: chat JSONL exports, stats, a Modelfile.",
    no_args_is_help=True,
)


def _store(config: Path | None) -> LearningStore:
    from tandem.graphs import load_config
    from tandem.graphs.learning import LearningStore, learning_dir

    return LearningStore(learning_dir(load_config(config).data_dir) / "learning.sqlite")


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text[:width] + ("…" if len(text) > width else "")


@memory_app.command("list")
def memory_list(
    worker: Annotated[str | None, typer.Option("--worker", "-w", help="Only this worker.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="pending, kept or dropped.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Learning records, newest first: id, worker, memory status, checks, kind, question."""

    async def go() -> None:
        records = _store(config).records(worker=worker, status=status, limit=limit)
        if as_json:
            for r in records:
                sys.stdout.write(
                    json.dumps(r.model_dump(exclude={"passages", "passages_redacted"})) + "\n"
                )
            return
        if not records:
            console.print(
                "no learning records yet (they appear when the supervisor answers "
                "what a specialist could not)"
            )
            return
        # One line per record at any width: the question gives way (an ellipsis), the
        # rest stays whole; when it was recorded is on `tandem memory show ID`.
        table = Table(show_edge=False, expand=True)
        table.add_column("id", justify="right", no_wrap=True)
        table.add_column("worker", no_wrap=True, overflow="ellipsis", max_width=22)
        table.add_column("status", no_wrap=True)
        table.add_column("checks", no_wrap=True, overflow="ellipsis", max_width=12)
        table.add_column("kind", no_wrap=True)
        table.add_column("question", no_wrap=True, overflow="ellipsis", ratio=1, min_width=16)
        for r in records:
            checks = "ok" if r.checks_passed else ", ".join(r.failed_checks) or "-"
            sens = " (local_only)" if r.sensitivity == "local_only" else ""
            table.add_row(
                str(r.id),
                r.worker + sens,
                r.status,
                checks,
                r.kind,
                escape(" ".join(r.question.split())),
            )
        console.print(table)

    _run(go)


@memory_app.command("show")
def memory_show(
    record: Annotated[int, typer.Argument(help="The record id (see `tandem memory list`).")],
    config: ConfigOpt = None,
) -> None:
    """One record in full: question, the specialist's attempt, the supervisor's answer,
    provenance, checks."""

    async def go() -> None:
        r = _store(config).get(record)
        if r is None:
            raise UsageError(f"no learning record {record}", hint="see `tandem memory list`")
        rows = [
            ("record", f"{r.id} · {r.kind} · {r.status} · {r.sensitivity}"),
            ("worker", f"{r.worker} ({r.worker_model})"),
            ("question", r.question),
            ("asked", r.instruction),
            (
                "attempt",
                f"{r.attempt or '-'} [{r.attempt_status}, confidence "
                f"{r.attempt_confidence if r.attempt_confidence is not None else '-'}"
                f"{f', p_correct {r.p_correct:.2f}' if r.p_correct is not None else ''}]",
            ),
            ("answer", r.answer),
            ("source", f"{r.source_model} · {r.created} · thread {r.thread_id or '-'}"),
            ("passage", r.source if r.status == "kept" else "- (not kept)"),
            ("checks", ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in r.checks.items())),
            ("conflict", r.conflict or "-"),
            ("route", f"{r.route_kind} {', '.join(r.route_workers)}"),
            ("seen", ", ".join(f"{p.source}#{p.chunk}" for p in r.passages) or "-"),
        ]
        for key, value in rows:
            console.print(f"[bold]{key:>9}[/] {escape(value)}", highlight=False, soft_wrap=True)

    _run(go)


def _ids_command(action: str) -> Any:
    async def act(ids: list[int], config: Path | None) -> list[int]:
        rt = _runtime(config)
        if action == "keep":
            _prepare_models(rt)
        done: list[int] = await getattr(rt.learning, action)(ids)
        return done

    return act


@memory_app.command("keep")
def memory_keep(
    records: Annotated[list[int], typer.Argument(help="Record ids to keep as memory.")],
    config: ConfigOpt = None,
) -> None:
    """Keep records as answer memory (\\[learning] memory = "approve": what /keep does)."""

    async def go() -> None:
        kept = await _ids_command("keep")(records, config)
        console.print(f"kept: {', '.join(f'learned:{i}' for i in kept)}")

    _run(go)


@memory_app.command("drop")
def memory_drop(
    records: Annotated[list[int], typer.Argument(help="Record ids not to keep.")],
    config: ConfigOpt = None,
) -> None:
    """Refuse records as memory (they stay on file, marked dropped; exports leave them out)."""

    async def go() -> None:
        dropped = await _ids_command("drop")(records, config)
        console.print(f"dropped: {', '.join(map(str, dropped))}")

    _run(go)


@memory_app.command("forget")
def memory_forget(
    record: Annotated[int, typer.Argument(help="The record id to delete for good.")],
    config: ConfigOpt = None,
) -> None:
    """Delete a record for good: its learned passage, its routing example and the record."""

    async def go() -> None:
        rt = _runtime(config)
        r = await rt.learning.forget(record)
        console.print(f"forgot record {r.id} ({r.worker}): {escape(_short(r.question))}")

    _run(go)


@memory_app.command("clear")
def memory_clear(
    worker: Annotated[str, typer.Argument(help="The worker whose memory to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete every learning record and learned passage of a worker."""
    if not yes and not typer.confirm(f"delete every learning record of '{worker}'?"):
        raise typer.Exit(1)

    async def go() -> None:
        rt = _runtime(config)
        n = await rt.learning.clear(worker)
        console.print(f"{worker}: {n} records and their learned passages deleted")

    _run(go)


@distill_app.command("export")
def distill_export(
    worker: Annotated[str, typer.Argument(help="The specialist whose records to export.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSONL file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="openai ({messages}) or sharegpt.")
    ] = "openai",
    raw: Annotated[
        bool, typer.Option("--raw", help="Keep original values (default: placeholders).")
    ] = False,
    keep_all: Annotated[
        bool, typer.Option("--all", help="Include records that fail the quality filter.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Write chat fine-tuning records: the worker's system prompt and passages as it saw them,
    the supervisor's answer as the target. Redacted and deduplicated by default."""

    async def go() -> None:
        if fmt not in ("openai", "sharegpt"):
            raise UsageError(f"unknown format '{fmt}'", hint="use openai or sharegpt")
        from tandem.graphs.learning.export import export_records

        form: Format = "sharegpt" if fmt == "sharegpt" else "openai"
        rt = _runtime(config)
        spec = rt.specs.get(worker)
        if spec is None:
            raise UsageError(f"no worker named '{worker}'; known: {', '.join(rt.specs)}")
        report = export_records(
            rt.learning.store,
            spec,
            output,
            fmt=form,
            raw=raw,
            filtered=not keep_all,
        )
        console.print(
            f"{worker}: {report.written} examples → {escape(str(output))} ({fmt}"
            f"{', raw values' if raw else ', redacted'}) · {report.duplicates} duplicates and "
            f"{report.filtered} filtered out",
            highlight=False,
        )
        for reason, n in sorted(report.reasons.items()):
            err.print(f"[dim]  {n} × {escape(reason)}[/]")
        if spec.sensitivity == "local_only":
            err.print(f"[yellow]note:[/] '{worker}' is local_only: keep this file on this machine")

    _run(go)


@distill_app.command("stats")
def distill_stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Records per worker: kept / pending / dropped, distinct questions, and how many pass the
    quality filter (what an export writes)."""

    async def go() -> None:
        from tandem.graphs.learning.export import distill_stats

        stats = distill_stats(_store(config))
        if as_json:
            sys.stdout.write(json.dumps(stats) + "\n")
            return
        table = Table(show_edge=False)
        cols = ("worker", "records", "distinct", "kept", "pending", "dropped", "pass", "local_only")
        for col in cols:
            table.add_column(col, justify="left" if col == "worker" else "right")
        for worker, row in stats.items():
            table.add_row(worker, *(str(row.get(c, 0)) for c in cols[1:]))
        console.print(table if stats else "no learning records yet")

    _run(go)


@distill_app.command("modelfile")
def distill_modelfile(
    worker: Annotated[str, typer.Argument(help="The specialist.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write.")] = Path(
        "Modelfile"
    ),
    adapter: Annotated[
        str, typer.Option("--adapter", help="The LoRA adapter (GGUF file or folder).")
    ] = "./adapter.gguf",
    base: Annotated[
        str | None, typer.Option("--base", help="The Ollama base model (default: the worker's).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write an Ollama Modelfile serving the specialist with a fine-tuned LoRA adapter."""

    async def go() -> None:
        rt = _runtime(config)
        spec = rt.specs.get(worker)
        if spec is None:
            raise UsageError(f"no worker named '{worker}'; known: {', '.join(rt.specs)}")
        from tandem.graphs.learning.export import modelfile

        output.write_text(modelfile(spec, adapter=adapter, base=base), encoding="utf-8")
        console.print(f"wrote {escape(str(output))}: ollama create tandem-{worker} -f {output}")

    _run(go)
