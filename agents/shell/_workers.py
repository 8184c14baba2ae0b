"""``tandem workers list|show``: what specialists this configuration has and where they came from.

Origins are ``builtin``, ``config`` or ``<distribution> <version>`` for an
installed plugin; plugins that were skipped are reported as warnings on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, JsonOpt, console, err, run, runtime, warn_plugins
from tandem.workers.errors import TandemError

if TYPE_CHECKING:
    from tandem.graphs import Runtime

__all__ = ["workers_app"]

workers_app = typer.Typer(help="Inspect the specialist workers.", no_args_is_help=True)


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


async def _rows(rt: Runtime) -> list[dict[str, Any]]:
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


@workers_app.command("list")
def workers_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List workers with their origin (built-in, config or plugin), model and store size."""

    async def go() -> None:
        rt = runtime(config, warn=False)
        rows = await _rows(rt)
        if as_json:
            sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        else:
            table = Table(expand=True)
            # Names and models whole (one line each); the description gives way, cut with
            # an ellipsis at the terminal's width rather than wrapped word by word.
            for col in ("name", "origin", "model"):
                longest = max((len(r[col]) for r in rows), default=0)
                table.add_column(col, no_wrap=True, min_width=min(longest, 32))
            table.add_column("chunks", no_wrap=True, justify="right")
            table.add_column(
                "description", no_wrap=True, overflow="ellipsis", ratio=1, min_width=16
            )
            later = False
            for r in rows:
                pending = not r["chunks"] and bool(rt.specs[r["name"]].knowledge)
                later = later or pending
                table.add_row(
                    r["name"],
                    escape(r["origin"]),
                    escape(r["model"]),
                    "0 *" if pending else str(r["chunks"]),
                    escape(r["description"]),
                )
            console.print(table)
            if later:
                console.print("[dim]* empty: its knowledge is ingested on first use[/]")
            for name in rt.plugin_report.disabled:
                err.print(f"[dim]{name}: disabled by \\[plugins] in the configuration[/]")
        warn_plugins(rt)

    run(go)


@workers_app.command("show")
def workers_show(
    name: Annotated[str, typer.Argument(help="The worker's name.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one worker: description, model, origin, knowledge, store and routing examples."""

    async def go() -> None:
        rt = runtime(config, warn=False)
        spec = rt.specs.get(name)
        if spec is None:
            warn_plugins(rt)
            raise TandemError(f"no worker named '{name}'; known: {', '.join(rt.specs)}")
        info: dict[str, Any] = {
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
            if spec.examples:  # the label once, then a bulleted list that wraps under itself
                bullets = Table.grid(padding=(0, 1))
                bullets.add_column()
                bullets.add_column()
                for example in spec.examples:
                    bullets.add_row("•", escape(example))
                grid.add_row("examples", bullets)
            console.print(grid)
        warn_plugins(rt)

    run(go)
