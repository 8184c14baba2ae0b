"""Rich rendering for the REPL's slash commands (each takes a session, returns renderables)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tandem.agents.router import RouteDecision
from tandem.agents.shell.render import render_ledger
from tandem.graphs import Answer, Session
from tandem.graphs.session import RunTrace, SessionPrivacy

__all__ = [
    "render_cost",
    "render_footer",
    "render_privacy",
    "render_route_decision",
    "render_worker_results",
]


def render_footer(answer: Answer) -> Text:
    """One dim line under a streamed answer: route, citations, calls, local share, time."""
    t = answer.ledger.totals
    route = answer.route.kind + (" → supervisor" if answer.escalated else "")
    workers = ",".join(answer.route.workers) or "—"
    cites = ", ".join(f"{c.worker}:{c.source}" for c in answer.citations[:4]) or "none"
    cost = f" · ${t.cost_usd:.4f}" if t.cost_usd else ""
    line = Text(
        f"[{route} {workers}] sources: {cites} · {t.calls} calls · {t.local_share:.0%} local · "
        f"{t.seconds:.1f}s{cost}",
        style="dim",
    )
    learning = answer.learning
    if learning.used:
        line.append(f"\nfrom memory: {', '.join(learning.used)}", style="dim")
    if learning.kept:
        kept = ", ".join(f"learned:{i}" for i in learning.kept)
        line.append(f"\nremembered as {kept} (/drop to forget it)", style="cyan")
    if learning.pending:
        ids = ", ".join(map(str, learning.pending))
        line.append(
            f"\nlearned: record {ids} · /keep to remember this answer, /drop to discard",
            style="cyan",
        )
    for note in answer.notes:
        line.append(f"\nnote: {note}", style="yellow")
    return line


def render_route_decision(decision: RouteDecision) -> Group:
    """Per worker probability (or score), the kind, the parts and the reason (``/route``)."""
    head = Text.assemble(
        ("route: ", "bold"), f"{decision.kind} → {', '.join(decision.workers) or 'supervisor'}"
    )
    values = decision.probabilities or decision.scores
    table = Table(show_edge=False)
    table.add_column("worker")
    table.add_column("probability" if decision.probabilities else "score", justify="right")
    table.add_column("chosen")
    for name, value in sorted(values.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{value:.3f}", "✓" if name in decision.workers else "")
    if decision.none_probability is not None:
        table.add_row("(none)", f"{decision.none_probability:.3f}", "")
    out: list[RenderableType] = [head, table]
    if decision.kind == "plan" and decision.parts:
        how = "split" if decision.split else "parts"
        for part in decision.parts:
            who = f"{part.worker} {part.probability:.2f}" if part.worker else "—"
            out.append(Text(f"  {how}: {who}: {part.text}"))
    out.append(Text(f"why: {decision.reason}", style="dim"))
    return Group(*out)


def render_cost(session: Session) -> list[RenderableType]:
    """The session ledger plus local share and savings (``/cost``)."""
    ledger = session.ledger()
    t = ledger.totals
    out: list[RenderableType] = [
        render_ledger(ledger, title=f"session ledger · {len(session.answers)} Q")
    ]
    saved = session.savings()
    money = f"${saved.usd:.4f}" if saved.usd is not None else "n/a"
    out.append(
        Text.assemble(
            ("calls ", "bold"),
            f"{t.calls} ({t.local_calls} local, {t.remote_calls} remote) · ",
            ("tokens ", "bold"),
            f"{t.tokens_in} in / {t.tokens_out} out · ",
            ("spent ", "bold"),
            f"${t.cost_usd:.4f} · ",
            ("local share ", "bold"),
            f"{t.local_share:.0%}\n",
            ("saved ", "bold"),
            f"{money} on {saved.local_tokens} tokens kept local ({saved.rate_source})",
        )
    )
    return out


def render_privacy(info: SessionPrivacy) -> list[RenderableType]:
    """Policy and what left the machine this session (``/privacy``)."""
    found = ", ".join(f"{k}×{v}" for k, v in info.sensitive_found.items()) or "none"
    out: list[RenderableType] = [
        Text.assemble(
            ("policy ", "bold"),
            f"{info.policy} · ",
            ("supervisor ", "bold"),
            f"{info.supervisor} ({info.supervisor_where})\n",
            ("sensitive spans found ", "bold"),
            f"{found} in {info.scanned} of {info.questions} questions scanned"
            + ("" if info.scanned else " (every model runs on this machine)"),
        )
    ]
    remote = info.remote_calls
    if not remote:
        out.append(Text("nothing left this machine this session", style="green"))
        return out
    table = Table(title="left the machine", title_justify="left", show_edge=False)
    for col in ("call", "model", "host", "bytes"):
        table.add_column(col)
    for c in remote:
        table.add_row(f"{c.role}·{c.purpose}", c.model, c.host or "—", str(c.bytes_sent))
    out.append(table)
    how = " (sensitive spans as placeholders)" if info.policy == "redact" else ""
    out.append(Text(f"{len(remote)} calls sent {info.bytes_sent} bytes{how}", style="yellow"))
    sent = info.redacted_sent
    if sent:
        kinds = ", ".join(f"{k}×{v}" for k, v in sorted(sent.items()))
        out.append(Text(f"placeholders sent instead of values: {kinds}", style="yellow"))
    if info.egress_log:
        out.append(Text(f"audit log: {info.egress_log} (tandem privacy log)", style="dim"))
    return out


def _fig(value: float | None, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def render_worker_results(trace: RunTrace) -> list[RenderableType]:
    """Each specialist answer of the last run: ``p_correct`` and the signals behind it."""
    if not trace.results:
        return []
    table = Table(show_edge=False, title="specialist answers", title_justify="left")
    for col in ("worker", "p_correct", "self", "logprob", "retrieval", "grounding"):
        table.add_column(col, justify="left" if col in ("worker", "grounding") else "right")
    for r in trace.results:
        s = r.signals
        if r.status != "ok" or s is None:
            table.add_row(r.worker, "—", "—", "—", "—", f"failed: {r.reason}"[:60])
            continue
        ground = []
        if s.not_covered:
            ground.append("says not covered")
        if s.unsupported:
            ground.append("not in cited passage: " + ", ".join(s.unsupported[:3]))
        elif s.spans:
            ground.append(f"{len(s.spans)} span(s) found in the cited passages")
        if not s.citations:
            ground.append("no citation")
        if s.ask_support is not None:
            ground.append(f"{s.ask_support:.0%} in the sentences that match the question")
        if s.kind_missing:
            ground.append(f"states no {s.asked_kind}")
        if s.truncated or s.repaired:
            ground.append("cut off" if s.truncated else "repaired")
        table.add_row(
            r.worker,
            _fig(r.p_correct),
            _fig(s.self_confidence),
            f"{_fig(s.logprob_mean)} / {_fig(s.logprob_min)}",
            f"{_fig(s.retrieval_best)} (+{_fig(s.retrieval_margin)})",
            "; ".join(ground) or "—",
        )
    out: list[RenderableType] = [table]
    for note in trace.notes:
        if "escalated" in note:
            out.append(Text(f"note: {note}", style="yellow"))
    return out
