"""The interactive REPL behind ``tandem chat``.

:func:`run_repl` is a plain function: give it a configuration (or a prepared runtime) and,
for tests, a prompt_toolkit input/output pair (``create_pipe_input()`` + ``DummyOutput()``)
and a rich console writing to a buffer. Answers stream token by token; Ctrl-C cancels the
answer being produced (not the session); Ctrl-D or ``/exit`` quits.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tandem.agents.privacy import EgressRequest
from tandem.agents.privacy.terminal import strip_controls
from tandem.agents.shell._repl_render import (
    render_cost,
    render_footer,
    render_privacy,
    render_route_decision,
    render_worker_results,
)
from tandem.agents.shell.render import StreamPrinter, render_ledger
from tandem.graphs import Answer, Runtime, Session, TandemConfig, build_graph, open_checkpointer
from tandem.graphs.ledger import build_ledger
from tandem.workers.errors import TandemError, UsageError

__all__ = ["HELP", "Repl", "redact_config", "run_repl"]

HELP = """\
Ask a question and press Enter; the answer streams as it is written.
Multi-line input: end a line with \\ to continue it, or press Esc then Enter for a newline.
Ctrl-C cancels the answer being written (or clears the line); Ctrl-D or /exit quits.

/help                    this help
/workers                 the specialists, their models and store sizes
/route QUESTION          how QUESTION would be routed (scores, kind, reason), without running
/cost                    this session's ledger: calls, tokens, $, local share, savings
/trace                   the last run: nodes, model calls, p_correct and its signals
/privacy                 the egress policy and what left this machine this session
/thread [new|list|ID]    show, start, list or resume a conversation (threads persist)
/ingest WORKER PATH…     add .md/.txt files or folders to a worker's store
/model WORKER MODEL      use another model for a worker this session (ollama:… / embedded:…)
/keep                    remember the last escalated answer: its specialist answers it next time
/drop                    do not remember the last escalated answer
/config                  the effective configuration (secrets masked)
/exit                    quit (also Ctrl-D)"""

_SECRET_WORDS = frozenset(
    ("key", "apikey", "token", "secret", "password", "passwd", "authorization", "cookie")
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]+:)[^@/\s]+(?=@)", re.I)


def _secret(key: str) -> bool:
    """``api_key``, ``access-token``, ``Authorization`` — not ``max_tokens`` or ``keep_alive``."""
    return any(word in _SECRET_WORDS for word in re.split(r"[_\-.\s]+", key.lower()))


def redact_config(data: Any) -> Any:
    """A configuration dump with secrets masked: values of credential keys (``api_key``,
    ``token``, ``password``, an ``Authorization`` header …) and passwords inside URLs."""
    if isinstance(data, dict):
        return {k: "***" if _secret(str(k)) and v else redact_config(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_config(v) for v in data]
    if isinstance(data, str):
        return _URL_PASSWORD.sub(r"\g<head>***", data)
    return data


Reader = Callable[[str], Awaitable[str | None]]
"""``await read(prompt)`` returns a line, or ``None`` at end of input."""


class Repl:
    """The read–answer loop over a :class:`~tandem.graphs.Session`.

    Args:
        session: The chat session.
        console: Where output goes.
        read: ``await read(prompt)`` returns a line, or ``None`` at end of input;
            raises ``KeyboardInterrupt`` for Ctrl-C at the prompt.
    """

    def __init__(
        self,
        session: Session,
        console: Console,
        read: Reader,
    ) -> None:
        self.session = session
        self.console = console
        self.read = read
        self.current: asyncio.Task[Answer] | None = None
        self.printer = StreamPrinter(console)
        session.approve = self._approve  # [privacy] policy = "ask"
        self.commands: dict[str, Callable[[str], Awaitable[None]]] = {
            "help": self._help,
            "workers": self._workers,
            "route": self._route,
            "cost": self._cost,
            "trace": self._trace,
            "privacy": self._privacy,
            "thread": self._thread,
            "ingest": self._ingest,
            "model": self._model,
            "config": self._config,
            "keep": self._keep,
            "drop": self._drop,
        }

    async def run(self) -> None:
        """Read and answer until ``/exit`` or end of input."""
        while True:
            try:
                line = await self._read_input()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            if line in ("/exit", "/quit", "exit", "quit"):
                break
            if line.startswith("/"):
                await self._command(line)
            else:
                await self.answer(line)
        self.console.print("bye", style="dim")

    def interrupt(self) -> None:
        """Cancel the answer being produced (what Ctrl-C does)."""
        if self.current is not None and not self.current.done():
            self.current.cancel()

    async def _read_input(self) -> str | None:
        lines: list[str] = []
        prompt = f"{self.session.thread_id[:6]}> "
        while True:
            line = await self.read(prompt if not lines else "... ")
            if line is None:
                return "\n".join(lines) if lines else None
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            lines.append(line)
            return "\n".join(lines)

    # -- answering ---------------------------------------------------------------------
    async def _approve(self, request: EgressRequest) -> bool:
        """Show exactly what would leave the machine, then ask yes/no (default no)."""
        self.printer.close()
        if self.printer.streamed:
            self.console.print()
        redacted = ", ".join(f"{k}×{v}" for k, v in request.get("redacted", {}).items())
        self.console.print(
            f"[bold yellow]about to send[/] {request.get('bytes', 0)} bytes to "
            f"{escape(str(request.get('model')))} at {escape(str(request.get('host') or '-'))} "
            f"({escape(str(request.get('purpose')))}; placeholders: {redacted or 'none'})",
            highlight=False,
        )
        for m in request.get("messages", []):
            self.console.rule(strip_controls(str(m.get("role", ""))), style="dim")
            self.console.print(
                strip_controls(str(m.get("content", ""))), markup=False, highlight=False
            )
        self.console.rule(style="dim")
        reply = await self.read(f"send this to {request.get('model')}? [y/N] ")
        self.printer.streamed = ""
        return (reply or "").strip().lower() in ("y", "yes")

    async def answer(self, query: str) -> Answer | None:
        """Answer ``query``, streaming; returns the answer or ``None`` if cancelled/failed."""
        self.printer.streamed = ""
        self.current = asyncio.create_task(self.session.ask(query, self.printer))
        # Ctrl-C while an answer is written cancels it (the prompt has its own handling).
        loop = asyncio.get_running_loop()
        restore = _install_sigint(loop, self.interrupt)
        try:
            answer = await self.current
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the REPL itself is being stopped
            self.console.print("\n[yellow]⏹ cancelled[/] (the session goes on)")
            return None
        except TandemError as exc:
            self.console.print(f"\n[bold red]error:[/] {escape(str(exc))}", highlight=False)
            return None
        finally:
            self.printer.close()
            self.current = None
            if restore is not None:
                restore()
        streamed = self.printer.streamed
        if streamed.strip() != answer.text.strip():
            if streamed:
                self.console.print()
            self.console.print(
                strip_controls(answer.text) or "(no answer)", markup=False, highlight=False
            )
        elif streamed:
            self.console.print()
        self.console.print(render_footer(answer))
        return answer

    # -- commands -----------------------------------------------------------------------
    async def _command(self, line: str) -> None:
        name, _, arg = line[1:].partition(" ")
        handler = self.commands.get(name.lower())
        if handler is None:
            self.console.print(f"[red]unknown command /{escape(name)}[/]; try /help")
            return
        try:
            await handler(arg.strip())
        except TandemError as exc:
            self.console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)

    async def _help(self, arg: str) -> None:
        intro, _, commands = HELP.partition("\n\n")
        self.console.print(intro, markup=False, highlight=False)
        # Two columns, so a description that wraps stays under its column at 80 columns.
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for line in commands.splitlines():
            command, description = re.split(r"\s{2,}", line, maxsplit=1)
            grid.add_row(Text(command), Text(description))
        self.console.print(Text(), grid)

    async def _workers(self, arg: str) -> None:
        rt = self.session.runtime
        # One line per worker: names and models whole, the description cut at the width.
        table = Table(show_edge=False, expand=True)
        for col in ("worker", "model", "where"):
            table.add_column(col, no_wrap=True)
        table.add_column("chunks", no_wrap=True, justify="right")
        table.add_column("description", no_wrap=True, overflow="ellipsis", ratio=1, min_width=12)
        for name, worker in rt.workers.items():
            count = await rt.stores[name].count()
            model = str(rt.specs[name].model)
            if name in self.session.model_overrides:
                model += " (this session)"
            desc = " ".join(rt.specs[name].description.split())
            table.add_row(
                escape(name), escape(model), worker.backend.where, str(count), escape(desc)
            )
        self.console.print(table)

    async def _route(self, arg: str) -> None:
        self.console.print(render_route_decision(await self.session.route(arg)))

    async def _cost(self, arg: str) -> None:
        for item in render_cost(self.session):
            self.console.print(item)

    async def _trace(self, arg: str) -> None:
        trace = self.session.last
        if trace is None:
            self.console.print("no run yet in this session")
            return
        state = " (cancelled)" if trace.cancelled else ""
        head = f"last run{state}: {trace.query[:60]} · {trace.seconds:.2f}s"
        self.console.print(head, markup=False, highlight=False, soft_wrap=True)
        table = Table(show_edge=False)
        for col in ("node", "start s", "took s", ""):
            table.add_column(col, justify="right" if col.endswith("s") else "left")
        for n in trace.nodes:
            table.add_row(n.name, f"{n.start:.2f}", f"{n.seconds:.2f}", n.error[:40])
        self.console.print(table)
        if trace.route is not None:
            self.console.print(render_route_decision(trace.route))
        for item in render_worker_results(trace):
            self.console.print(item)
        self.console.print(render_ledger(build_ledger(trace.calls), title="model calls"))

    async def _privacy(self, arg: str) -> None:
        for item in render_privacy(self.session.privacy()):
            self.console.print(item)

    async def _thread(self, arg: str) -> None:
        s = self.session
        if arg == "new":
            self.console.print(f"new thread [bold]{s.new_thread()}[/]")
        elif arg == "list":
            threads = await s.threads()
            if not threads:
                self.console.print("no saved threads yet")
                return
            table = Table(show_edge=False)
            for col in ("", "thread", "turns", "first question"):
                table.add_column(col)
            for t in threads:
                mark = "▶" if t.thread_id == s.thread_id else ""
                table.add_row(mark, t.thread_id, str(t.turns), t.first_question[:60])
            self.console.print(table)
        elif arg:
            info = await s.switch(arg)
            self.console.print(
                f"resumed thread [bold]{info.thread_id}[/] ({info.turns} turns): "
                f"{escape(info.first_question[:60])}"
            )
        else:
            info = await s.thread_info(s.thread_id)
            self.console.print(f"thread [bold]{s.thread_id}[/] · {info.turns} turns")

    async def _ingest(self, arg: str) -> None:
        parts = shlex.split(arg)
        if len(parts) < 2:
            raise UsageError("usage: /ingest WORKER PATH…")
        worker, paths = parts[0], _paths(parts[1:])
        report = await self.session.ingest(worker, paths)
        self.console.print(
            f"{worker}: {report.files} files · {report.added} chunks added · "
            f"{report.skipped} unchanged · {report.removed} removed"
        )
        for problem in report.errors:
            self.console.print(f"[yellow]skipped[/] {escape(problem)}", highlight=False)

    async def _model(self, arg: str) -> None:
        parts = arg.split()
        if len(parts) != 2:
            raise UsageError("usage: /model WORKER MODEL (e.g. /model health ollama:qwen2.5:3b)")
        previous = self.session.set_model(parts[0], parts[1])
        self.console.print(
            f"{parts[0]}: {escape(previous)} → [bold]{escape(parts[1])}[/] for this session"
        )

    async def _keep(self, arg: str) -> None:
        kept = await self.session.keep()
        store = self.session.runtime.learning.store
        workers = sorted({r.worker for i in kept if (r := store.get(i)) is not None})
        self.console.print(
            f"kept {', '.join(f'learned:{i}' for i in kept)} · "
            f"{', '.join(workers)} will answer it from memory next time"
        )

    async def _drop(self, arg: str) -> None:
        dropped = await self.session.drop()
        self.console.print(f"dropped record {', '.join(map(str, dropped))}: not remembered")

    async def _config(self, arg: str) -> None:
        cfg = self.session.runtime.config
        data = redact_config(json.loads(cfg.model_dump_json()))
        self.console.print_json(json.dumps(data))
        self.console.print(f"source: {cfg.source or 'defaults (no tandem.toml)'}", style="dim")


def _paths(args: list[str]) -> list[Path]:
    return [Path(a).expanduser() for a in args]


def _install_sigint(
    loop: asyncio.AbstractEventLoop, handler: Callable[[], None]
) -> Callable[[], None] | None:
    """Route SIGINT to ``handler``; returns the function that restores the previous one."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
        return None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)

    return restore


def _prompt_reader(
    history: Path | None, pt_input: Input | None = None, pt_output: Output | None = None
) -> Reader:
    """Read lines with prompt_toolkit (history file, Esc+Enter for a newline)."""
    if pt_input is None and not sys.stdin.isatty():
        return _plain_reader()
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    if history is not None:
        history.parent.mkdir(parents=True, exist_ok=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)) if history else InMemoryHistory(),
        key_bindings=bindings,
        input=pt_input,
        output=pt_output,
    )

    async def read(message: str) -> str | None:
        try:
            return await prompt.prompt_async(message)
        except EOFError:
            return None

    return read


def _plain_reader() -> Reader:
    """Lines from a non-interactive stdin (``echo … | tandem chat``)."""

    async def read(message: str) -> str | None:
        line = await asyncio.to_thread(sys.stdin.readline)
        return line.rstrip("\n") if line else None

    return read


async def arun_repl(
    runtime: Runtime,
    *,
    thread_id: str | None = None,
    console: Console | None = None,
    read: Reader | None = None,
    pt_input: Input | None = None,
    pt_output: Output | None = None,
) -> Session:
    """Async core of :func:`run_repl`; returns the finished session."""
    console = console or Console()
    config = runtime.config
    async with open_checkpointer(config) as saver:
        graph = build_graph(runtime=runtime, checkpointer=saver)
        session = Session(graph, saver)
        if thread_id:
            try:
                info = await session.switch(thread_id)
                console.print(f"resumed thread [bold]{info.thread_id}[/] ({info.turns} turns)")
            except UsageError:
                session.thread_id = thread_id
                console.print(f"new thread [bold]{escape(thread_id)}[/]")
        console.print(
            f"[bold]tandem chat[/] · supervisor {escape(runtime.supervisor.model)} "
            f"({runtime.supervisor.llm.where}) · workers: {', '.join(runtime.workers)} · "
            f"thread {session.thread_id} · /help for commands, Ctrl-D to quit",
            highlight=False,
        )
        # Where each endpoint runs and why (the privacy guard acts on this): one line per
        # distinct answer, naming every role it covers.
        roles: dict[tuple[bool, str, str], list[str]] = {}
        for role, endpoint in runtime.endpoints.items():
            roles.setdefault((endpoint.local, endpoint.where, endpoint.reason), []).append(role)
        for (local, where, reason), names in roles.items():
            colour = "green" if local else "yellow"
            console.print(
                f"[dim]{escape(', '.join(names))}:[/] [{colour}]{where}[/] "
                f"[dim]— {escape(reason)}[/]",
                highlight=False,
            )
        reader = read or _prompt_reader(config.data_dir / "history", pt_input, pt_output)
        await Repl(session, console, reader).run()
        return session


def run_repl(
    config: TandemConfig | None = None,
    *,
    runtime: Runtime | None = None,
    thread_id: str | None = None,
    console: Console | None = None,
    read: Reader | None = None,
    pt_input: Input | None = None,
    pt_output: Output | None = None,
) -> Session:
    """Run the REPL until ``/exit`` or Ctrl-D.

    Args:
        config: A :class:`~tandem.graphs.TandemConfig` (default: :func:`load_config`).
        runtime: A prepared :class:`~tandem.graphs.Runtime` (wins over ``config``).
        thread_id: Resume (or start) this conversation thread.
        console: Where output goes (default: stdout).
        read: An injectable line reader (``await read(prompt)`` → line or ``None``).
        pt_input: A prompt_toolkit input (tests: ``create_pipe_input()``).
        pt_output: A prompt_toolkit output (tests: ``DummyOutput()``).

    Returns:
        The session (its ledger, answers and last trace).
    """
    if runtime is None:
        runtime = Runtime(config)
    return asyncio.run(
        arun_repl(
            runtime,
            thread_id=thread_id,
            console=console,
            read=read,
            pt_input=pt_input,
            pt_output=pt_output,
        )
    )
