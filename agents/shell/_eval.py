"""``tandem eval DATASET.jsonl``: score the configured system on a labelled dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import (
    ConfigOpt,
    console,
    err,
    ready,
    run,
    runtime,
)

if TYPE_CHECKING:
    from tandem.graphs import EvalReport, EvalRow

__all__ = ["eval_command", "render_report"]


def render_report(console: Console, report: EvalReport) -> None:
    """Per-question table and the summary."""
    table = Table(title="tandem eval", title_justify="left")
    for col in ("#", "question", "route", "workers", "ok", "facts", "local", "s"):
        table.add_column(col, overflow="fold" if col == "question" else "ellipsis")
    for i, r in enumerate(report.rows, 1):
        facts = f"{len(r.facts_found)}/{len(r.facts_found) + len(r.facts_missing)}"
        table.add_row(
            str(i),
            escape(r.question[:70]),
            r.route + (" ↑" if r.escalated else ""),
            ", ".join(r.workers) or "—",
            "✓" if r.route_ok else "✗",
            facts,
            f"{r.local_share:.0%}",
            f"{r.seconds:.1f}",
        )
    console.print(table)
    summary = Table(show_header=False, title="summary", title_justify="left")
    summary.add_column("metric")
    summary.add_column("value")
    for name, value in (
        ("questions", str(report.questions)),
        ("route accuracy", f"{report.route_accuracy:.1%}"),
        ("fact recall", f"{report.fact_recall:.1%}"),
        ("fully answered", f"{report.answered:.1%}"),
        ("local share (mean)", f"{report.local_share:.1%}"),
        ("large-model calls", str(report.supervisor_calls)),
        ("cost", f"${report.cost_usd:.6f}"),
        ("latency p50 / p95", f"{report.p50_seconds:.2f} s / {report.p95_seconds:.2f} s"),
    ):
        summary.add_row(name, value)
    if report.judged:

        def fig(v: float | None) -> str:
            return "—" if v is None else f"{v:.3f}"

        for name, value in (
            ("local answers judged", f"{report.judged} ({report.local_accuracy or 0:.1%} right)"),
            ("AUROC p_correct / self", f"{fig(report.auroc)} / {fig(report.self_auroc)}"),
            ("ECE p_correct / self", f"{fig(report.ece)} / {fig(report.self_ece)}"),
        ):
            summary.add_row(name, value)
    console.print(summary)
    if report.risk_coverage:
        risk = Table(title="risk–coverage (error among answers kept local)", title_justify="left")
        for col in ("kept", "p_correct ≥", "error", "self-conf ≥", "error"):
            risk.add_column(col, justify="right")
        for ours, theirs in zip(report.risk_coverage, report.self_risk_coverage, strict=True):
            risk.add_row(
                f"{ours.coverage:.0%}",
                f"{ours.threshold:.2f}",
                f"{ours.error:.1%}",
                f"{theirs.threshold:.2f}",
                f"{theirs.error:.1%}",
            )
        console.print(risk)
    for r in report.rows:
        if r.error:
            console.print(f"[yellow]{escape(r.question[:60])}: {escape(r.error)}[/]")


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="JSONL: question, expected_workers, facts.")],
    config: ConfigOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Evaluate only the first N.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object (the report).")
    ] = False,
) -> None:
    """Evaluate routing and answers on a labelled dataset: route, facts, local share, latency."""

    async def go() -> None:
        from tandem.graphs import build_graph
        from tandem.graphs.evaluate import evaluate, load_dataset

        cases = load_dataset(dataset)
        rt = runtime(config)
        # Measuring must not teach: an eval writes no learning records (so nothing of it
        # becomes answer memory that a later eval would then measure); kept memory is used.
        rt.learning.settings.record = False
        graph = build_graph(runtime=await ready(rt, quiet=as_json))
        total = min(len(cases), limit) if limit else len(cases)

        def progress(i: int, row: EvalRow) -> None:
            if not as_json:
                mark = "✓" if row.route_ok and not row.facts_missing else "·"
                err.print(
                    f"  [{i + 1}/{total}] {mark} {row.route:<10} {row.seconds:6.1f} s  "
                    f"{escape(row.question[:60])}",
                    highlight=False,
                )

        report = await evaluate(graph, cases, limit=limit, on_row=progress)
        if as_json:
            sys.stdout.write(json.dumps(report.model_dump(), ensure_ascii=False) + "\n")
        else:
            render_report(console, report)

    run(go)
