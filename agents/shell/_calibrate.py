"""``tandem calibrate DATA.jsonl``: re-fit ``p_correct`` on your own labelled questions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, console, err, ready, run, runtime
from tandem.workers.errors import UsageError

if TYPE_CHECKING:  # the command imports the graph layer when it runs (`tandem --help` stays light)
    from tandem.graphs.calibrate import Sample

__all__ = ["calibrate_command"]


def _fig(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def calibrate_command(
    dataset: Annotated[
        Path, typer.Argument(help="JSONL: question, expected_workers, facts[, answerable].")
    ],
    config: ConfigOpt = None,
    worker: Annotated[
        list[str] | None, typer.Option("--worker", "-w", help="Only these workers (repeat).")
    ] = None,
    per: Annotated[
        str,
        typer.Option(
            "--per", help="worker: also a fit per worker with enough answers; model: one per model."
        ),
    ] = "worker",
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Use only the first N questions.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fits as JSON.")] = False,
) -> None:
    """Fit p_correct on labelled questions; every later run uses the fit.

    Each question is asked to its specialist and the answer labelled by its facts; the fit
    is stored under the data dir."""
    if per not in ("worker", "model"):
        raise typer.BadParameter("worker or model", param_hint="--per")
    scope: Literal["worker", "model"] = "worker" if per == "worker" else "model"

    async def go() -> None:
        from tandem.graphs import load_dataset
        from tandem.graphs.calibrate import collect, fit_samples, save, self_auroc

        cases = load_dataset(dataset)[:limit] if limit else load_dataset(dataset)
        rt = await ready(runtime(config), quiet=as_json)
        unknown = [w for w in worker or [] if w not in rt.workers]
        if unknown:
            known = ", ".join(rt.workers)
            raise UsageError(f"no worker named {', '.join(unknown)}; known: {known}")

        def progress(i: int, sample: Sample | None) -> None:
            if as_json:
                return
            mark = "·" if sample is None else "✓" if sample.right else "✗"
            what = "skipped" if sample is None else f"{sample.worker:<10} {sample.seconds:5.1f} s"
            err.print(f"  [{i + 1}/{len(cases)}] {mark} {what}  {escape(cases[i].question[:60])}")

        samples = await collect(rt, cases, workers=worker or (), on_sample=progress)
        if not samples:
            raise UsageError(
                "no question could be labelled",
                hint='each line needs one expected worker and facts (or "answerable": false)',
            )
        out = []
        for model in sorted({s.model for s in samples}):
            fitted = fit_samples(
                samples,
                model,
                embed_model=rt.config.router.embed_model,
                source=str(dataset),
                per=scope,
            )
            path = save(rt.config.data_dir, fitted)
            mine = [s for s in samples if s.model == model]
            out.append((model, path, fitted, mine))
        if as_json:
            data = [
                {"path": str(p), "self_auroc": self_auroc(mine), **f.model_dump()}
                for _, p, f, mine in out
            ]
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            return
        rt2 = runtime(config)  # picks up the new files: thresholds under [cascade]
        for model, path, fitted, mine in out:
            table = Table(title=f"{model} → {path}", title_justify="left")
            for col in ("fit", "answers", "right", "AUROC p_correct", "AUROC self", "ECE"):
                table.add_column(col, justify="left" if col == "fit" else "right")
            fits = [("pooled", fitted.pooled), *fitted.workers.items()]
            for name, cal in fits:
                if cal is None:
                    continue
                rows = [s for s in mine if cal.worker in (None, s.worker)]
                table.add_row(
                    name,
                    str(cal.questions),
                    str(cal.right),
                    _fig(cal.auroc),
                    _fig(self_auroc(rows)),
                    _fig(cal.ece),
                )
            console.print(table)
        target = rt2.config.cascade.max_local_error
        for name, cascade in rt2.cascade.items():
            if any(s.worker == name for s in samples):
                console.print(f"{name}: {cascade.describe()}", highlight=False)
        if target is not None:
            console.print(
                f"[dim]thresholds keep at most {target:.0%} of local answers wrong "
                "([cascade] max_local_error); coverage is the share of the labelled answers "
                "kept local (cross-validated)[/]"
            )

    run(go)
