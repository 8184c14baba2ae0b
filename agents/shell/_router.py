"""``tandem router``: fit the learned router, evaluate a router on labelled questions, and
decide the routing feedback escalations suggest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, console, err, prepare_models, run, runtime

if TYPE_CHECKING:  # the router package imports numpy and the backends: not for `--help`
    from tandem.agents.router import RouterEvalReport

__all__ = ["render_router_report", "router_app"]

router_app = typer.Typer(help="Fit and evaluate the router.", no_args_is_help=True)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_router_report(out: Console, report: RouterEvalReport, *, show: int = 20) -> None:
    """The report as tables that fit 80 columns."""
    o = report.overall
    how = f"{report.folds}-fold cross-validation" if report.folds else "no cross-validation"
    out.print(f"[bold]router[/] {report.router} · {o.n} questions · {how}", highlight=False)
    if report.overlap:
        out.print(
            f"[yellow]{report.overlap} of these questions are in the router's training data; "
            "use --cv K for an honest figure[/]",
            highlight=False,
        )
    summary = Table(show_edge=False, box=None, pad_edge=False)
    for col in ("", "exact", "route", "single", "cross", "cross→plan", "none", "none prec"):
        summary.add_column(col, justify="right" if col else "left")
    rows = [("all", o)] + [(f"fold {i + 1}", m) for i, m in enumerate(report.per_fold)]
    for name, m in rows:
        summary.add_row(
            name,
            _pct(m.accuracy),
            _pct(m.route_accuracy),
            _pct(m.single_recall),
            _pct(m.cross_recall),
            _pct(m.cross_detected),
            _pct(m.none_recall),
            _pct(m.none_precision),
        )
    out.print(summary)
    if report.per_fold:
        mean = sum(m.accuracy for m in report.per_fold) / len(report.per_fold)
        out.print(f"mean of folds: exact {_pct(mean)}", highlight=False)
    if report.repeats:
        m, runs = report.mean, report.repeats
        low, high = min(r.accuracy for r in runs), max(r.accuracy for r in runs)
        out.print(
            f"[bold]over {len(runs)} fold assignments[/] (the tables show the first): exact "
            f"{_pct(m.accuracy)} mean ({_pct(low)}–{_pct(high)}), cross {_pct(m.cross_recall)},"
            f" none prec {_pct(m.none_precision)}; misrouted under every one: "
            f"{len(report.always_misrouted)}",
            highlight=False,
        )
    matrix = Table(
        title="labelled (rows) → routed (columns)", show_edge=False, title_justify="left"
    )
    matrix.add_column("")
    for label in report.labels:
        matrix.add_column(_cut(label, 9), justify="right")
    for label, counts in zip(report.labels, report.confusion, strict=True):
        matrix.add_row(_cut(label, 9), *(str(c) if c else "·" for c in counts))
    out.print(matrix)
    extra = ""
    if report.brier is not None:
        extra = f" · probabilities: Brier {report.brier:.3f}, ECE {report.ece:.3f}"
    fit = ""
    if report.fit_seconds:
        fit = f" · fit {max(report.fit_seconds):.1f} s (slowest)"
    out.print(
        f"decision latency p50 {report.latency_ms_p50:.1f} ms, p95 {report.latency_ms_p95:.1f} ms"
        f" (incl. embedding){fit}{extra}",
        highlight=False,
    )
    asked = [r for r in report.rows if r.fast is not None]
    if asked:
        ms = sorted(r.second_ms or 0.0 for r in asked)
        right = sum(set(r.fast or []) == set(r.expected) for r in asked)
        out.print(
            f"second stage: {len(asked)} of {o.n} questions ({len(asked) / o.n:.1%}), p50 "
            f"{ms[len(ms) // 2]:.0f} ms, p95 {ms[min(len(ms) - 1, int(0.95 * len(ms)))]:.0f} ms;"
            f" on them the fast router was right for {right}, the router now for "
            f"{sum(r.correct for r in asked)}",
            highlight=False,
        )
    wrong = report.misrouted
    if wrong and show:
        out.print(f"[bold]misrouted[/] ({len(wrong)}):", highlight=False)
        for r in wrong[:show]:
            exp = ",".join(r.expected) or "none"
            got = ",".join(r.chosen) or "none"
            head = f"  {exp:>14} → {got:<14} "
            width = max(20, min(out.width, 120) - len(head) - 1)  # one line per question
            out.print(head + escape(_cut(r.question, width)), highlight=False)
        if len(wrong) > show:
            out.print(f"  … and {len(wrong) - show} more (--json lists all)", highlight=False)


@router_app.command("eval")
def router_eval(
    dataset: Annotated[Path, typer.Argument(help="JSONL: question, expected_workers.")],
    config: ConfigOpt = None,
    cv: Annotated[
        int,
        typer.Option(
            "--cv",
            min=0,
            help="K-fold cross-validation: each fold is scored by a router trained without it "
            "(0: score the configured router as it is).",
        ),
    ] = 0,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            min=1,
            help="With --cv: repeat the cross-validation over N fold assignments and report "
            "the mean (one assignment moves accuracy by a few points on a small set).",
        ),
    ] = 1,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Evaluate this router instead: learned or centroid."),
    ] = None,
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback/--no-feedback",
            help="Train on the approved routing feedback of learning (tandem router "
            "feedback); --no-feedback shows the router without it.",
        ),
    ] = True,
    show: Annotated[int, typer.Option("--show", min=0, help="Misrouted questions listed.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object (the report).")
    ] = False,
) -> None:
    """Accuracy (exact specialists and route kind), recall per class, confusion matrix and
    decision latency of the router on labelled questions; with \\[router] second_stage,
    how often it was asked, how long it took and what it changed."""
    if cv == 1:
        raise typer.BadParameter("cross-validation needs at least 2 folds", param_hint="--cv")
    if repeat > 1 and cv < 2:
        raise typer.BadParameter("repeats a cross-validation: add --cv K", param_hint="--repeat")
    if kind not in (None, "learned", "centroid"):
        raise typer.BadParameter("learned or centroid", param_hint="--kind")

    async def go() -> None:
        from tandem.agents.router import evaluate_router, load_routes

        data = load_routes(dataset)
        rt = runtime(config)
        settings = rt.config.router
        if kind is not None:
            chosen: Literal["learned", "centroid"] = "centroid" if kind == "centroid" else "learned"
            settings = settings.model_copy(update={"kind": chosen})
        prepare_models(rt, quiet=as_json, only=[settings.embed_model, settings.second_stage])
        specs, routes = rt.router_training(feedback=feedback)
        second = rt.router.second if settings.kind == "learned" else None
        if not as_json:
            err.print(f"evaluating on {len(data)} questions …", highlight=False)
        report = await evaluate_router(
            specs,
            rt.embedder,
            settings,
            data,
            folds=cv,
            routes=routes,
            cache_dir=rt.config.data_dir / "cache",
            second=None if second is None else second.with_workers(specs),
            repeat=repeat,
        )
        if as_json:
            sys.stdout.write(json.dumps(report.model_dump(), ensure_ascii=False) + "\n")
        else:
            render_router_report(console, report, show=show)

    run(go)


@router_app.command("fit")
def router_fit(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Fit the learned router now (it also fits itself at start-up) and show what it
    learned from; a model cached for the same data and settings is loaded instead."""

    async def go() -> None:
        rt = runtime(config)
        router = rt.router
        if router.learned is None:
            raise typer.BadParameter("[router] kind = 'centroid' has nothing to fit")
        prepare_models(rt, quiet=as_json, only=[rt.config.router.embed_model])
        await router.profiles()
        info = router.learned.fit_info
        if as_json:
            out = info.model_dump() | {
                "workers": [w.name for w in router.workers],
                "feedback": len(rt.learning.routes()),
            }
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
            return
        state = (
            "shipped with tandem (zero config), loaded"
            if info.shipped
            else "loaded from cache"
            if info.cached
            else "fitted"
        )
        console.print(
            f"router {state} in {info.seconds:.2f} s: {info.rows} texts ({info.labelled} "
            f"labelled, {info.synthetic} synthetic cross-domain) for "
            f"{', '.join(w.name for w in router.workers)}",
            highlight=False,
        )
        learned = rt.learning.routes()
        console.print(
            f"routing feedback: {len(learned)} approved examples from escalations "
            f"({escape(str(rt.learning.routing_path))}; tandem router feedback)",
            highlight=False,
        )
        if info.skipped:
            console.print(f"[yellow]{info.skipped} labelled rows name unknown workers[/]")
        how = (
            f"tuned by 4-fold CV (exact route {info.tune_accuracy:.1%} out of fold)"
            if info.tuned and info.tune_accuracy is not None
            else "as configured"
        )
        pairs = ", ".join(f"{k} {v:g}" for k, v in info.thresholds.items())
        console.print(f"thresholds {how}: {pairs}", highlight=False)
        if info.path:
            where = "shipped fit" if info.shipped else "cached in"
            console.print(f"{where} {escape(info.path)}", style="dim", highlight=False)

    run(go)


@router_app.command("feedback")
def router_feedback(
    approve: Annotated[
        list[int] | None, typer.Option("--approve", "-a", help="Approve candidate ids.")
    ] = None,
    reject: Annotated[
        list[int] | None, typer.Option("--reject", "-r", help="Reject candidate ids.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Routing examples suggested by escalations and plans: list, approve or reject them (approved ones are what the router trains on besides the workers' own examples)."""  # noqa: E501

    async def go() -> None:
        rt = runtime(config)
        if approve:
            console.print(f"approved {await rt.learning.approve_routing(approve)}")
        if reject:
            console.print(f"rejected {await rt.learning.reject_routing(reject)}")
        rows = rt.learning.store.candidates()
        table = Table(show_edge=False)
        for col in ("id", "status", "workers", "question"):
            table.add_column(col)
        for rid, status, workers, question in rows:
            table.add_row(
                str(rid), status, ", ".join(workers) or "none", escape(_cut(question, 60))
            )
        console.print(table if rows else "no routing candidates yet")
        console.print(f"approved examples: {escape(str(rt.learning.routing_path))}", style="dim")

    run(go)
