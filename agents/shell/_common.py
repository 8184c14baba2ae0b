"""Shared pieces of the ``tandem`` commands: consoles, the ``--config`` option, running a
coroutine with one-line errors, building a runtime, and model/ingestion progress bars."""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tandem.agents.shell import _gc
from tandem.workers.errors import TandemError

if TYPE_CHECKING:
    import asyncio

    from rich.progress import Progress, TaskID

    from tandem.graphs import Runtime
    from tandem.workers.store import IngestReport

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "console",
    "err",
    "ingest_missing",
    "prepare_models",
    "ready",
    "reflow_help",
    "run",
    "runtime",
    "warn_plugins",
]

T = TypeVar("T")

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Path to tandem.toml (default: $TANDEM_CONFIG, ./tandem.toml)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def run(
    coro_fn: Callable[[], Coroutine[Any, Any, T]],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a coroutine, turning tandem errors into a one-line message and exit code 1.

    ``loop_factory``: the event loop to run it on (default: asyncio's).
    """
    try:
        import asyncio

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro_fn())
    except TandemError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def warn_plugins(rt: Runtime) -> None:
    """Skipped plugins, as warnings on stderr (a skipped plugin is never a failure)."""
    for problem in rt.plugin_errors:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


def runtime(config: Path | None, *, warn: bool = True) -> Runtime:
    """Build a :class:`~tandem.graphs.Runtime`; with ``warn``, skipped plugins are warnings
    on stderr at once (else call :func:`warn_plugins` when it suits the output)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from tandem.graphs import Runtime, load_config

    rt = Runtime(load_config(config))
    _gc.resume()  # start-up's imports are done: collect as usual from here on
    if warn:
        warn_plugins(rt)
    return rt


def prepare_models(
    rt: Runtime,
    quiet: bool = False,
    only: Sequence[str] | None = None,
    *,
    names: list[str] | None = None,
) -> list[Path]:
    """Assemble/verify the bundled models the runtime needs (or ``names``; or those of
    ``only``, model references), with a progress bar for each one that needs work."""
    from tandem.graphs.runtime import embedded_models

    wanted = embedded_models(rt) if names is None else names
    if only is not None:
        refs = {ref.removeprefix("embedded:") for ref in only}
        wanted = [n for n in wanted if n in refs]
    if not wanted:
        return []
    with _bars(quiet) as progress:
        return [_prepare(rt, name, progress) for name in wanted]


@contextlib.contextmanager
def _bars(quiet: bool) -> Iterator[Progress]:
    """Progress bars on stderr for model files (bytes) and ingestion (files). The display
    starts with the first bar (:func:`_add_bar`): when there is no work to show, nothing is
    printed, not even a blank line."""
    from rich.progress import BarColumn, Progress, TextColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
    )
    progress = Progress(*columns, console=err, disable=quiet)
    try:
        yield progress
    finally:
        if progress.live.is_started:  # stop() prints a newline off a terminal, even unstarted
            progress.stop()


def _add_bar(progress: Progress, description: str, total: float | None) -> TaskID:
    """A bar on ``progress``, starting its display (thread-safe: ``Live.start`` locks)."""
    progress.start()
    return progress.add_task(description, total=total, detail="")


def _prepare(rt: Runtime, name: str, progress: Progress) -> Path:
    """One model through :func:`~tandem.workers.backends.ensure_model`, as a progress task
    shown only once there is work to show (assembling or hashing): a model already in the
    cache and vouched for by its checksum sidecar prints nothing."""
    from tandem.workers.backends import ensure_model

    task: TaskID | None = None

    def cb(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = _add_bar(progress, f"model {name}", total)
        progress.update(task, completed=done, total=total, detail=_mb(done, total))

    path = ensure_model(name, rt.config.embedded.cache_dir, cb)
    if task is not None:
        size = path.stat().st_size
        progress.update(
            task, description=f"model {name} ✓", total=size, completed=size, detail=_mb(size, size)
        )
    return path


def _mb(done: int, total: int) -> str:
    return f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB"


async def _ingest(rt: Runtime, progress: Progress) -> dict[str, IngestReport]:
    """Every worker's declared knowledge into its empty store, as progress tasks."""
    tasks: dict[str, TaskID] = {}

    def cb(worker: str, done: int, total: int, current: str) -> None:
        if worker not in tasks:
            tasks[worker] = _add_bar(progress, f"ingest {worker}", total)
        progress.update(
            tasks[worker], completed=done, total=total, detail=f"{done}/{total} {current}"
        )

    def notice(line: str) -> None:
        progress.console.print(f"[yellow]{escape(line)}[/]", highlight=False)

    return await rt.ensure_ingested(progress=cb, notice=notice)


def _report(rt: Runtime, reports: dict[str, IngestReport], quiet: bool) -> None:
    for name, problem in rt.knowledge_problems.items():  # once per run, never retried
        err.print(f"  [yellow]{name}: {escape(problem)}; skipped[/]", highlight=False)
    for name, report in reports.items():
        if not quiet:
            err.print(
                f"  {name}: {report.files} files, {report.added} chunks added, "
                f"{report.skipped} unchanged"
            )
        for problem in report.errors:
            err.print(f"  [yellow]{name}: {escape(problem)}[/]", highlight=False)


async def ingest_missing(rt: Runtime, quiet: bool = False) -> None:
    """Ingest each worker's declared knowledge into empty stores, with progress bars."""
    with _bars(quiet) as progress:
        reports = await _ingest(rt, progress)
    _report(rt, reports, quiet)


async def ready(rt: Runtime, quiet: bool = False) -> Runtime:
    """``rt`` with its bundled models prepared and its empty stores ingested (progress bars
    on stderr unless ``quiet``): what every command that answers questions needs first.

    Ingestion needs only the embedding model: it is prepared first, and the chat models
    (1.6 GB of GGUF to assemble and hash on a first run) are assembled in a thread while
    the stores fill.
    """
    import asyncio

    from tandem.graphs.runtime import embedded_models

    names = embedded_models(rt)
    embedder = rt.config.router.embed_model.removeprefix("embedded:")
    first = [n for n in names if n == embedder]
    started = time.perf_counter()
    took: dict[str, float] = {}
    with _bars(quiet) as progress:
        for name in first:
            _prepare(rt, name, progress)

        def others() -> None:
            for name in names:
                if name not in first:
                    _prepare(rt, name, progress)
            took["models"] = time.perf_counter() - started

        async def ingest() -> dict[str, IngestReport]:
            reports = await _ingest(rt, progress)
            took["ingestion"] = time.perf_counter() - started
            return reports

        _, reports = await asyncio.gather(asyncio.to_thread(others), ingest())
    _report(rt, reports, quiet)
    if not quiet and max(took.values()) >= 1.0:
        err.print(
            f"[dim]ready in {time.perf_counter() - started:.1f} s: models "
            f"{took['models']:.1f} s while the stores filled in {took['ingestion']:.1f} s[/]",
            highlight=False,
        )
    return rt


def reflow_help(group: typer.Typer) -> None:
    """Let every command of ``group`` (and of its sub-groups) show its help as running text.

    Typer (rich mode) keeps a docstring's source line breaks, which left half-empty lines at
    80 columns, both in a group's command list and on a command's own ``--help`` page. Each
    command gets a one-line summary (the first paragraph) and a help text whose prose
    paragraphs are joined into single lines for rich to wrap; a paragraph with indented or
    bulleted lines, or marked ``\\b``, keeps its breaks.
    """
    for info in group.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback is not None else None)
        if not doc:
            continue
        paragraphs = inspect.cleandoc(doc).split("\n\n")
        if info.short_help is None:
            info.short_help = " ".join(paragraphs[0].split())
        info.help = "\n\n".join(_flow(p) for p in paragraphs)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)


def _flow(paragraph: str) -> str:
    """One prose paragraph as one line; a laid-out one (indented/bulleted lines, ``\\b``)
    as it is."""
    lines = paragraph.splitlines()
    laid_out = paragraph.startswith("\b") or any(
        line.startswith((" ", "-", "*", "•")) for line in lines[1:]
    )
    return paragraph if laid_out else " ".join(paragraph.split())
