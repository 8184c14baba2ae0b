"""Shared pieces of the ``tandem`` commands: consoles, the ``--config`` option, running a
coroutine with one-line errors, building a runtime, and model/ingestion progress bars."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
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
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from tandem.graphs import Runtime, load_config
from tandem.graphs.runtime import embedded_models
from tandem.workers.backends import ensure_model
from tandem.workers.errors import TandemError

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "console",
    "err",
    "ingest_missing",
    "prepare_models",
    "ready",
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
    rt = Runtime(load_config(config))
    if warn:
        warn_plugins(rt)
    return rt


def prepare_models(
    rt: Runtime, quiet: bool = False, only: Sequence[str] | None = None
) -> list[Path]:
    """Assemble/verify the bundled models the runtime needs (or those of ``only``, model
    references), with a progress bar."""
    names = embedded_models(rt)
    if only is not None:
        wanted = {ref.removeprefix("embedded:") for ref in only}
        names = [n for n in names if n in wanted]
    if not names:
        return []
    cache = rt.config.embedded.cache_dir
    paths = []
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

            def cb(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total)

            path = ensure_model(name, cache, cb)
            size = path.stat().st_size
            progress.update(task, description=f"model {name} ✓", total=size, completed=size)
            paths.append(path)
    return paths


async def ingest_missing(rt: Runtime, quiet: bool = False) -> None:
    """Ingest each worker's declared knowledge into empty stores, with progress bars."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=err,
        disable=quiet,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def cb(worker: str, done: int, total: int, current: str) -> None:
            if worker not in tasks:
                tasks[worker] = progress.add_task(f"ingest {worker}", total=total, current="")
            progress.update(tasks[worker], completed=done, total=total, current=current)

        def notice(line: str) -> None:
            progress.console.print(f"[yellow]{escape(line)}[/]", highlight=False)

        reports = await rt.ensure_ingested(progress=cb, notice=notice)
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


async def ready(rt: Runtime, quiet: bool = False) -> Runtime:
    """``rt`` with its bundled models prepared and its empty stores ingested (progress bars
    on stderr unless ``quiet``): what every command that answers questions needs first."""
    prepare_models(rt, quiet=quiet)
    await ingest_missing(rt, quiet=quiet)
    return rt
