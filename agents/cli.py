"""The ``tandem`` command: a thin shell over the library.

Expected errors (bad config, missing models, unreachable servers) print one
readable line with the fix and exit non-zero; no Python traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
)
from rich.table import Table

from tandem.agents._cli_common import ConfigOpt, console, err
from tandem.agents._cli_common import ingest_missing as _ingest_missing
from tandem.agents._cli_common import prepare_models as _prepare_models
from tandem.agents._cli_common import run as _run
from tandem.agents._cli_common import runtime as _runtime
from tandem.agents._cli_doctor import doctor
from tandem.agents._cli_models import models_app
from tandem.agents._cli_workers import workers_app
from tandem.agents._render import answer_json, render_answer, render_ledger
from tandem.workers.errors import TandemError

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="tandem",
    help="Hybrid LLM + SLM: local specialist models answer what they can, a large supervisor "
    "plans and synthesizes the rest. With no tandem.toml, everything runs offline on the "
    "bundled embedded models and the built-in demo specialists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(__import__("tandem.agents._cli_privacy", fromlist=["_"]).privacy_app, name="privacy")
app.command("eval")(__import__("tandem.agents._cli_eval", fromlist=["_"]).eval_command)

DEMO_QUESTIONS = (
    "How quickly does Brightwater Lettings return a tenant's deposit?",
    "My landlord says my rent is going up by 8% — is that allowed? And how much of my rent "
    "can I claim back through the Renters' Tax Credit?",
    "Please draft a short friendly message to my neighbour Anna Kowalski "
    "(anna.kowalski@example.com, +44 7700 900123) asking if she can water my plants while "
    "I'm away next week.",
)


async def _answer(
    graph: Any, query: str, *, stream: bool, config: dict[str, Any] | None = None
) -> Any:
    """Run one query, streaming the answer's tokens to the terminal when asked.

    Returns the answer and whether the streamed text is the whole answer (so it need not
    be printed again).
    """
    final: dict[str, Any] = {}
    streamed = ""
    async for mode, chunk in graph.astream(
        {"query": query}, config=config, stream_mode=["custom", "values"]
    ):
        if mode == "values":
            final = chunk
        elif stream and chunk.get("event") == "token":
            streamed += chunk["text"]
            console.print(chunk["text"], end="", markup=False, highlight=False, soft_wrap=True)
        elif stream and chunk.get("event") == "reset":
            if streamed:
                console.print()
            console.print(f"[dim]↻ {escape(str(chunk.get('reason', '')))}[/]", highlight=False)
            streamed = ""
    if streamed:
        console.print()
    answer = final.get("answer")
    if answer is None:
        raise TandemError("the graph finished without an answer")
    return answer, bool(streamed) and streamed.strip() == answer.text.strip()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object instead of tables.")
    ] = False,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Stream the answer as it is written.")
    ] = True,
) -> None:
    """Answer one question: route it locally, escalate only when needed, show the ledger."""

    async def go() -> None:
        from tandem.graphs import build_graph

        rt = _runtime(config)
        _prepare_models(rt, quiet=as_json)
        await _ingest_missing(rt, quiet=as_json)
        graph = build_graph(runtime=rt)
        answer, streamed = await _answer(graph, question, stream=stream and not as_json)
        if as_json:
            sys.stdout.write(json.dumps(answer_json(answer), ensure_ascii=False) + "\n")
        else:
            render_answer(console, answer, show_text=not streamed)

    _run(go)


@app.command()
def chat(
    config: ConfigOpt = None,
    thread: Annotated[
        str | None,
        typer.Option("--thread", "-t", help="Resume this conversation (id or unique prefix)."),
    ] = None,
) -> None:
    """Interactive chat: streamed answers, slash commands (/help), persistent threads.

    Ctrl-C cancels the answer being written; Ctrl-D or /exit quits.
    """

    async def go() -> None:
        from tandem.agents.repl import arun_repl

        rt = _runtime(config)
        _prepare_models(rt)
        await _ingest_missing(rt)
        await arun_repl(rt, thread_id=thread, console=console)

    _run(go)


@app.command()
def demo(
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="Ask your own question(s) instead of the showcase."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the offline showcase (three questions with routes, citations and ledgers).

    A direct answer, a planned cross-domain answer and a question with personal data.
    """

    async def go() -> None:
        from tandem.graphs import build_graph, build_ledger

        console.rule("[bold]tandem demo")
        rt = _runtime(config)
        console.print(
            f"supervisor: [cyan]{rt.supervisor.model}[/] ({rt.supervisor.llm.where}) · "
            f"workers: {escape(', '.join(f'{n} [{s.model}]' for n, s in rt.specs.items()))} · "
            f"embeddings: {rt.config.router.embed_model}"
        )
        _prepare_models(rt)
        await _ingest_missing(rt)
        graph = build_graph(runtime=rt)
        summary = Table(title="demo summary", title_justify="left")
        for col in ("question", "route", "workers", "calls", "local", "seconds", "cost $"):
            summary.add_column(col)
        calls = []
        for n, q in enumerate(question or DEMO_QUESTIONS, 1):
            console.rule(f"[bold]question {n}")
            console.print(f"[bold]Q:[/] {q}")
            answer, streamed = await _answer(graph, q, stream=True)
            render_answer(console, answer, show_text=not streamed)
            t = answer.ledger.totals
            calls.extend(answer.ledger.calls)
            summary.add_row(
                q[:48] + ("…" if len(q) > 48 else ""),
                answer.route.kind + (" ↑" if answer.escalated else ""),
                ", ".join(answer.route.workers) or "—",
                str(t.calls),
                f"{t.local_share:.0%}",
                f"{t.seconds:.1f}",
                f"{t.cost_usd:.4f}",
            )
        console.rule()
        console.print(summary)
        console.print(render_ledger(build_ledger(calls), title="session ledger"))

    _run(go)


@app.command()
def ingest(
    worker: Annotated[str, typer.Argument(help="The worker whose store receives the files.")],
    paths: Annotated[
        list[Path] | None, typer.Argument(help=".md/.txt files or folders of them.")
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Re-embed the whole store with the configured embedding model first (after "
            "changing the router's embed_model), then ingest PATHS and the worker's knowledge.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Add documents to a worker's store (idempotent: unchanged chunks are skipped).

    Folders are searched recursively for .md/.txt files; files linking outside the folder
    are refused. Exit code 1 when any path could not be ingested.
    """
    paths = list(paths or [])
    if not paths and not rebuild:
        raise typer.BadParameter("give files or folders (or --rebuild)", param_hint="PATHS")

    async def go() -> None:
        from tandem.workers.store import IngestReport

        rt = _runtime(config)
        if worker not in rt.stores:
            raise TandemError(f"no worker named '{worker}'; known: {', '.join(rt.stores)}")
        _prepare_models(rt)
        ignored = _unsupported_in(paths)
        store = rt.stores[worker]
        with Progress(
            TextColumn(f"[bold]ingest {worker}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=err,
        ) as progress:
            task = progress.add_task("ingest", total=None, current="")

            def show(done: int, total: int, current: str) -> None:
                progress.update(task, completed=done, total=total, current=current)

            if rebuild:
                old, _ = await store.embedding_model()
                knowledge = list(rt.specs[worker].knowledge)
                progress.update(task, current="re-embedding")
                count = await store.rebuild(skip=[*paths, *knowledge], progress=show)
                progress.console.print(
                    f"{worker}: store rebuilt with {store.embedder.ref} (was {old or 'empty'}); "
                    f"{count} chunks re-embedded",
                    highlight=False,
                )
                await rt.ensure_ingested([worker], progress=lambda _w, d, t, c: show(d, t, c))
            report = await store.ingest(paths, progress=show) if paths else IngestReport()
        console.print(
            f"{worker}: {report.files} files · {report.added} chunks added · "
            f"{report.skipped} unchanged · {report.removed} removed · "
            f"{len(report.errors)} errors",
            highlight=False,
            soft_wrap=True,
        )
        for problem in report.errors:
            err.print(f"[red]✗[/] {escape(problem)}", highlight=False, soft_wrap=True)
        if ignored:
            err.print(f"[dim]ignored {ignored} files of other types (only .md/.txt)[/]")
        if report.errors:
            raise typer.Exit(1)

    _run(go)


def _unsupported_in(paths: list[Path]) -> int:
    """Files in the given folders that ingestion ignores (not .md/.txt)."""
    from tandem.workers.store import SUPPORTED_SUFFIXES

    return sum(
        1
        for root in paths
        if root.is_dir()
        for f in root.rglob("*")
        if f.is_file() and f.suffix.lower() not in SUPPORTED_SUFFIXES
    )


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file + environment + defaults) as JSON; values
    of keys that look like credentials are masked."""

    async def go() -> None:
        from tandem.agents.repl import redact_config
        from tandem.graphs import load_config

        cfg = load_config(config)
        console.print_json(json.dumps(redact_config(json.loads(cfg.model_dump_json()))))
        err.print(f"source: {cfg.source or 'defaults (no tandem.toml)'}")

    _run(go)


app.command("doctor")(doctor)


def main() -> None:
    """Entry point of the ``tandem`` console script."""
    app()
