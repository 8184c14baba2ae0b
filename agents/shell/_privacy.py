"""``tandem privacy log``: the egress audit — every call that left the machine.

Reads ``<data_dir>/egress.jsonl`` (one record per remote model call: time,
model, host, bytes, entities redacted by type, SHA-256 of the payload) and
shows it as a table with totals, or as JSON lines with ``--json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, console, err, run

if TYPE_CHECKING:
    from tandem.agents.privacy import EgressRecord

__all__ = ["privacy_app"]

privacy_app = typer.Typer(help="Inspect what left the machine.", no_args_is_help=True)


@privacy_app.command("log")
def privacy_log(
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the records as JSON lines instead of a table.")
    ] = False,
    last: Annotated[
        int | None, typer.Option("--last", "-n", min=1, help="Show only the newest N records.")
    ] = None,
    thread: Annotated[
        str | None, typer.Option("--thread", "-t", help="Only records of this thread.")
    ] = None,
) -> None:
    """Show the egress audit log: one record per remote model call."""

    async def go() -> None:
        from tandem.agents.privacy import egress_log_path, read_egress_log
        from tandem.graphs import load_config

        cfg = load_config(config)
        path = egress_log_path(cfg.data_dir)
        records, bad = read_egress_log(path)
        if thread is not None:
            records = [r for r in records if r.thread_id == thread]
        if last is not None:
            records = records[-last:]
        if bad:
            err.print(
                f"[yellow]warning:[/] skipped {bad} unreadable line(s) in {escape(str(path))}"
            )
        if as_json:
            for r in records:
                print(r.model_dump_json(exclude_none=True))
            return
        if not records:
            console.print(f"No remote calls recorded in {escape(str(path))}.", highlight=False)
            return
        console.print(_table(records, path))

    run(go)


def _table(records: list[EgressRecord], path: Path) -> Table:
    from tandem.agents.privacy import summarize_egress

    total = summarize_egress(records)
    redacted = ", ".join(f"{k} {v}" for k, v in sorted(total.redacted.items())) or "none"
    table = Table(
        title=f"egress log ({escape(str(path))})",
        caption=f"{total.requests} remote call(s), {total.bytes_sent:,} bytes sent; "
        f"redacted: {escape(redacted)}; user-approved: {total.user_approved}",
    )
    for col in ("time", "model", "host", "purpose", "bytes", "redacted", "sha256", "outcome"):
        table.add_column(col, justify="right" if col == "bytes" else "left", overflow="fold")
    for r in records:
        table.add_row(
            r.time.replace("T", " ")[:23],
            escape(r.model),
            escape(r.host or "-"),
            r.purpose + (" (asked)" if r.approved == "user" else ""),
            f"{r.bytes_sent:,}",
            escape(", ".join(f"{k}×{v}" for k, v in r.redacted.items()) or "-"),
            r.sha256[:12],
            escape(r.outcome),
        )
    return table
