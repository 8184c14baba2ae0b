"""The ``tandem`` command: a thin shell over the library.

Expected errors (bad config, missing models, unreachable servers) print one
readable line with the fix and exit non-zero; no Python traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from tandem.agents.privacy.terminal import strip_controls
from tandem.agents.shell import _gc
from tandem.agents.shell._calibrate import calibrate_command
from tandem.agents.shell._common import (
    ConfigOpt,
    console,
    err,
    prepare_models,
    ready,
    reflow_help,
    run,
    runtime,
)
from tandem.agents.shell._doctor import doctor
from tandem.agents.shell._eval import eval_command
from tandem.agents.shell._learning import distill_app, memory_app
from tandem.agents.shell._models import models_app
from tandem.agents.shell._privacy import privacy_app
from tandem.agents.shell._router import router_app
from tandem.agents.shell._workers import workers_app
from tandem.agents.shell.render import (
    DemoRow,
    StreamPrinter,
    answer_json,
    demo_summary,
    render_answer,
    render_ledger,
)
from tandem.workers.errors import TandemError

if TYPE_CHECKING:
    from tandem.agents.privacy import EgressRequest
    from tandem.graphs import Answer, Session

__all__ = ["DEMO_QUESTIONS", "app", "main"]

app = typer.Typer(
    name="tandem",
    help="Hybrid LLM + SLM: local specialist models answer what they can, a large supervisor "
    "plans and synthesizes the rest. With no tandem.toml, everything runs offline on the "
    "bundled embedded models and the built-in demo specialists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("tandem")
        except PackageNotFoundError:  # running from a source tree that was never installed
            number = "unknown"
        console.print(f"tandem {number}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Options before any command (``--version``); the help text is the app's."""


app.add_typer(workers_app, name="workers")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(privacy_app, name="privacy")
app.add_typer(router_app, name="router")
app.command("eval")(eval_command)
app.add_typer(memory_app, name="memory")
app.add_typer(distill_app, name="distill")
app.command("calibrate")(calibrate_command)

DEMO_QUESTIONS = (
    "How quickly does Brightwater Lettings return a tenant's deposit?",
    "My landlord says my rent is going up by 8% — is that allowed? And how much of my rent "
    "can I claim back through the Renters' Tax Credit?",
    "Please draft a short friendly message to my neighbour Anna Kowalski "
    "(anna.kowalski@example.com, +44 7700 900123) asking if she can water my plants while "
    "I'm away next week.",
)


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
    approve_egress: Annotated[
        bool,
        typer.Option(
            "--approve-egress",
            help="Under \\[privacy] policy = 'ask': send every (redacted) request without a "
            "prompt; each is still written to the egress log.",
        ),
    ] = False,
) -> None:
    """Answer one question: route it locally, escalate only when needed, show the ledger.

    Exit codes: 0 a complete answer; 1 an error (nothing answered; the message says why);
    3 a partial answer (a part of the question is missing, named in the notes); 4 no model
    answered; 5 policy = 'ask' needs an approval this command could not ask for.
    """

    async def go() -> int:
        from langgraph.checkpoint.memory import InMemorySaver

        from tandem.graphs import Session, build_graph

        rt = await ready(runtime(config), quiet=as_json)
        ask_policy = rt.config.privacy.policy == "ask"
        # An approval pauses the graph: it needs a checkpointer to resume.
        session = Session(
            build_graph(runtime=rt, checkpointer=InMemorySaver() if ask_policy else None)
        )
        if ask_policy:
            session.approve = _approver(approve_egress)
        printer = StreamPrinter(console) if stream and not as_json else None
        try:
            answer = await _ask(session, question, printer)
        except ApprovalNeeded as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return EXIT_APPROVAL
        if as_json:
            sys.stdout.write(json.dumps(answer_json(answer), ensure_ascii=False) + "\n")
        else:
            render_answer(
                console, answer, show_text=printer is None or not printer.shows(answer.text)
            )
        return EXIT_CODES[answer.status]

    code = run(go)
    if code:
        raise typer.Exit(code)


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
        from tandem.agents.shell.repl import arun_repl

        await arun_repl(await ready(runtime(config)), thread_id=thread, console=console)

    run(go)


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
        from tandem.graphs import Session, build_graph

        started = time.perf_counter()
        console.rule("[bold]tandem demo")
        rt = runtime(config)
        if "scan_local_runs" not in rt.config.privacy.model_fields_set:
            # The showcase shows what the guard finds even when every model is local (a
            # plain `ask` skips the scan then: nothing can leave).
            rt.config.privacy.scan_local_runs = True
        console.print(
            f"supervisor: [cyan]{rt.supervisor.model}[/] ({rt.supervisor.llm.where}) · "
            f"workers: {escape(', '.join(f'{n} [{s.model}]' for n, s in rt.specs.items()))} · "
            f"embeddings: {rt.config.router.embed_model}"
        )
        session = Session(build_graph(runtime=await ready(rt)))
        setup = time.perf_counter() - started
        rows: list[DemoRow] = []
        for n, q in enumerate(question or DEMO_QUESTIONS, 1):
            console.rule(f"[bold]question {n}")
            console.print(f"[bold]Q:[/] {escape(strip_controls(q))}")
            printer = StreamPrinter(console)
            asked = time.perf_counter()
            answer = await _ask(session, q, printer)
            seconds = time.perf_counter() - asked
            render_answer(console, answer, show_text=not printer.shows(answer.text))
            console.print(f"[bold]question {n} took {_duration(seconds)}[/]", highlight=False)
            rows.append(DemoRow(q, answer, seconds))
        console.rule()
        console.print(demo_summary(rows))
        console.print(render_ledger(session.ledger(), title="session ledger"))
        asked = sum(r.seconds for r in rows)
        console.print(
            f"[bold]{len(rows)} questions in {_duration(asked)}[/] · setup (models, stores) "
            f"{_duration(setup)} · total {_duration(time.perf_counter() - started)}",
            highlight=False,
        )

    run(go)


def _duration(seconds: float) -> str:
    """``4.2 s`` / ``3 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on (default: serve.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: serve.port, 8400).")] = None,
) -> None:
    """Serve tandem as an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models).

    Also /metrics, /healthz and /readyz.

    Without API keys (serve.api_keys in tandem.toml, or TANDEM_API_KEYS) it listens on
    loopback only. SIGTERM/Ctrl-C lets in-flight requests finish (serve.shutdown_grace).
    """
    # Starlette, uvicorn and prometheus-client load only for this command.
    try:
        from tandem.agents.shell.serve import run_server, server_loop
    except ImportError as exc:
        err.print(
            f"[bold red]error:[/] tandem serve needs its extra: pip install 'tandem[serve]' "
            f"({escape(str(exc))})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    run(lambda: run_server(config, host=host, port=port), loop_factory=server_loop())


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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from tandem.workers.store import IngestReport

        rt = runtime(config)
        if worker not in rt.stores:
            raise TandemError(f"no worker named '{worker}'; known: {', '.join(rt.stores)}")
        prepare_models(rt)
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

    run(go)


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
        from tandem.agents.shell.repl import redact_config
        from tandem.graphs import load_config

        cfg = load_config(config)
        console.print_json(json.dumps(redact_config(json.loads(cfg.model_dump_json()))))
        err.print(f"source: {cfg.source or 'defaults (no tandem.toml)'}")

    run(go)


app.command("doctor")(doctor)
reflow_help(app)  # last: every command is registered above


EXIT_CODES = {"complete": 0, "partial": 3, "unanswered": 4}
"""``tandem ask``'s exit code for each :attr:`Answer.status` (1: an error)."""
EXIT_APPROVAL = 5


class ApprovalNeeded(TandemError):
    """Policy ``ask`` wants an approval and there is no terminal to ask on."""


def _approver(approve_all: bool) -> Callable[[EgressRequest], Awaitable[bool]]:
    """Answers ``ask`` prompts: all yes (--approve-egress), on the terminal, or fails."""

    async def approve(request: EgressRequest) -> bool:
        what = (
            f"{request['purpose']} request to {request['model']} "
            f"({request['bytes']} bytes, redacted: "
            + (", ".join(f"{k}×{n}" for k, n in request["redacted"].items()) or "nothing")
            + ")"
        )
        if approve_all:
            err.print(f"[dim]sending (--approve-egress): {escape(what)}[/]", highlight=False)
            return True
        if not sys.stdin.isatty():
            raise ApprovalNeeded(
                f"[privacy] policy = 'ask' needs your approval before a {what} leaves this "
                "machine, and there is no terminal to ask on; nothing was sent",
                hint="run it in a terminal to answer the prompt, pass --approve-egress to send "
                "without a prompt, or use `tandem chat`",
            )
        err.print(f"[bold]send {escape(what)}?[/]", highlight=False)
        for m in request["messages"]:
            text = escape(strip_controls(m.get("content", "")))
            err.print(f"[dim]{escape(m.get('role', ''))}:[/] {text}", highlight=False)
        return bool(typer.confirm("send it?", default=False, err=True))

    return approve


async def _ask(session: Session, query: str, printer: StreamPrinter | None) -> Answer:
    """One question through the session, streaming its tokens to the terminal if asked."""
    try:
        answer = await session.ask(query, printer)
    finally:
        if printer is not None:
            printer.close()
    if printer is not None and printer.streamed:
        console.print()
    return answer


def main() -> None:
    """Entry point of the ``tandem`` console script."""
    _gc.pause()  # until the runtime exists (agents/shell/_gc.py)
    try:
        app()
    finally:
        _gc.at_exit()
