"""``tandem workers list|show``: what specialists this configuration has and where they came from.

Origins are ``builtin``, ``config`` or ``<distribution> <version>`` for an
installed plugin; plugins that were skipped are reported as warnings on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem.workers.errors import TandemError

__all__ = ["workers_app"]

workers_app = typer.Typer(help="Inspect the specialist workers.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Path to tandem.toml (default: $TANDEM_CONFIG, ./tandem.toml)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _runtime(config: Path | None) -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from tandem.graphs import Runtime, load_config

    return Runtime(load_config(config))


def _files(paths: tuple[Path, ...]) -> int:
    from tandem.workers.store import SUPPORTED_SUFFIXES

    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(
                1 for f in path.rglob("*") if f.is_file() and f.suffix in SUPPORTED_SUFFIXES
            )
        elif path.is_file():
            total += 1
    return total


def _warn(rt: Any) -> None:
    for problem in rt.plugin_errors:
        _err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


async def _rows(rt: Any) -> list[dict[str, Any]]:
    rows = []
    for name, spec in rt.specs.items():
        rows.append(
            {
                "name": name,
                "origin": spec.origin,
                "model": spec.model,
                "chunks": await rt.stores[name].count(),
                "description": spec.description,
            }
        )
    return rows


def _run(fn: Any) -> None:
    try:
        asyncio.run(fn())
    except TandemError as exc:
        _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@workers_app.command("list")
def workers_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List workers with their origin (built-in, config or plugin), model and store size."""

    async def go() -> None:
        rt = _runtime(config)
        rows = await _rows(rt)
        if as_json:
            sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        else:
            table = Table()
            for col in ("name", "origin", "model", "chunks", "description"):
                table.add_column(col, overflow="fold" if col != "description" else "ellipsis")
            for r in rows:
                table.add_row(
                    r["name"],
                    escape(r["origin"]),
                    escape(r["model"]),
                    str(r["chunks"])
                    if r["chunks"] or not rt.specs[r["name"]].knowledge
                    else "0 (ingested on first use)",
                    escape(r["description"][:60]),
                )
            _out.print(table)
            for name in rt.plugin_report.disabled:
                _err.print(f"[dim]{name}: disabled by \\[plugins] in the configuration[/]")
        _warn(rt)

    _run(go)


@workers_app.command("show")
def workers_show(
    name: Annotated[str, typer.Argument(help="The worker's name.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one worker: description, model, origin, knowledge, store and routing examples."""

    async def go() -> None:
        rt = _runtime(config)
        spec = rt.specs.get(name)
        if spec is None:
            _warn(rt)
            raise TandemError(f"no worker named '{name}'; known: {', '.join(rt.specs)}")
        info = {
            "name": spec.name,
            "description": spec.description,
            "model": spec.model,
            "origin": spec.origin,
            "knowledge": [{"path": str(p), "files": _files((p,))} for p in spec.knowledge],
            "chunks": await rt.stores[name].count(),
            "top_k": spec.top_k,
            "min_confidence": spec.min_confidence,
            "examples": list(spec.examples),
        }
        if as_json:
            sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
        else:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            grid.add_row("name", spec.name)
            grid.add_row("origin", escape(spec.origin))
            grid.add_row("model", escape(spec.model))
            grid.add_row("description", escape(spec.description))
            for k in info["knowledge"]:
                grid.add_row("knowledge", f"{escape(k['path'])} ({k['files']} files)")
            if not spec.knowledge:
                grid.add_row("knowledge", "—")
            chunks = info["chunks"]
            grid.add_row(
                "store",
                f"{chunks} chunks, top {spec.top_k} per question"
                if chunks or not spec.knowledge
                else "empty (ingested on first use)",
            )
            for example in spec.examples:
                grid.add_row("routes", escape(example))
            _out.print(grid)
        _warn(rt)

    _run(go)
