"""Rich rendering of answers, routes and ledgers for the terminal, and the printer that
streams an answer as it is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status
from rich.table import Table
from rich.text import Text

from tandem.agents.privacy.terminal import strip_controls

if TYPE_CHECKING:
    from tandem.graphs import Answer, Ledger

__all__ = [
    "DemoRow",
    "StreamPrinter",
    "answer_json",
    "demo_summary",
    "render_answer",
    "render_ledger",
    "render_route",
]


class StreamPrinter:
    """Prints a run's ``custom`` events as they arrive: a status line (``routing…``,
    ``asking tenancy…``) until the first token, answer tokens, and ``↻ reason`` when a
    streamed draft is dropped (an escalation, a repaired reply). Pass it as the event sink
    of :meth:`tandem.graphs.Session.ask`; :meth:`close` it when the run is over.

    Args:
        console: Where the text goes.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.streamed = ""
        """The text printed since the last reset."""
        self._status: Status | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "status":
            if not self.streamed:  # a status line only until the answer starts
                self.status(strip_controls(str(event.get("text", ""))))
        elif kind == "token":
            self.close()
            # The graph already strips control sequences from what it streams; a terminal
            # gets the same guarantee whatever produced the event.
            text = strip_controls(str(event.get("text", "")))
            self.streamed += text
            self.console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
            self.console.file.flush()
        elif kind == "reset":
            self.close()
            if self.streamed:
                self.console.print()
            reason = escape(strip_controls(str(event.get("reason", ""))))
            self.console.print(f"[dim]↻ {reason}[/]", highlight=False)
            self.streamed = ""

    def status(self, text: str) -> None:
        """Show ``text`` on a transient status line (a spinner; terminals only)."""
        if not text or not self.console.is_terminal:
            return
        if self._status is None:
            self._status = self.console.status(escape(text), spinner="dots")
            self._status.start()
        else:
            self._status.update(escape(text))

    def close(self) -> None:
        """Remove the status line (the answer starts, or the run is over)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def shows(self, text: str) -> bool:
        """Whether what was streamed is ``text`` (so it need not be printed again)."""
        return bool(self.streamed) and self.streamed.strip() == text.strip()


def render_route(answer: Answer) -> Text:
    """One line: the route kind, the workers and why."""
    route = answer.route
    kind = route.kind + (" → escalated to supervisor" if answer.escalated else "")
    workers = ", ".join(route.workers) or "—"
    line = Text.assemble(("route ", "bold"), (kind, "cyan"), f"  workers: {workers}\n")
    line.append(f"why: {strip_controls(route.reason)}", style="dim")
    return line


def _short(model: str) -> str:
    return model.removeprefix("embedded:").removeprefix("embedded/").removeprefix("ollama:")


def render_ledger(ledger: Ledger, title: str = "ledger") -> Table:
    """A table of model calls with totals (a cost column only when something cost money)."""
    paid = ledger.totals.cost_usd > 0
    planned = {
        "router": "plan: built by the router from the question's parts (no planning call)",
        "supervisor": "plan: made by the supervisor",
    }
    table = Table(
        title=title,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        caption=planned.get(ledger.planned_by or ""),
        caption_justify="left",
    )
    table.add_column("call", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("model", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("where", no_wrap=True, min_width=6)
    for col in ("in", "out", "sec", *(("$",) if paid else ())):
        table.add_column(col, justify="right", no_wrap=True)
    for c in ledger.calls:
        where = Text(c.where, style="green" if c.where == "local" else "yellow")
        call = f"{c.role}·{c.purpose}" + (f"·{c.worker}" if c.worker else "")
        cost = (f"{c.cost_usd:.4f}",) if paid else ()
        table.add_row(
            call + (" ✗" if c.error else ""),
            _short(c.model),
            where,
            str(c.tokens_in),
            str(c.tokens_out),
            f"{c.seconds:.1f}",
            *cost,
        )
    t = ledger.totals
    table.add_section()
    table.add_row(
        f"{t.calls} calls",
        f"{t.supervisor_calls} to supervisor",
        f"{t.local_share:.0%} local",
        str(t.tokens_in),
        str(t.tokens_out),
        f"{t.seconds:.1f}",
        *((f"{t.cost_usd:.4f}",) if paid else ()),
        style="bold",
    )
    return table


@dataclass
class DemoRow:
    """One question of ``tandem demo``: its text, answer and wall time."""

    question: str
    answer: Answer
    seconds: float


def demo_summary(rows: list[DemoRow]) -> Table:
    """The demo's summary: one line per question (long questions end in "…", never wrap)."""
    paid = any(r.answer.ledger.totals.cost_usd > 0 for r in rows)
    table = Table(title="demo summary", title_justify="left", pad_edge=False, expand=True)
    table.add_column("question", no_wrap=True, overflow="ellipsis", ratio=1, min_width=16)
    table.add_column("route", no_wrap=True)
    table.add_column("workers", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("calls", justify="right", no_wrap=True)
    table.add_column("local", justify="right", no_wrap=True)
    table.add_column("sec", justify="right", no_wrap=True)
    if paid:
        table.add_column("$", justify="right", no_wrap=True)
    for r in rows:
        t = r.answer.ledger.totals
        table.add_row(
            " ".join(strip_controls(r.question).split()),
            r.answer.route.kind + (" ↑" if r.answer.escalated else ""),
            ", ".join(r.answer.route.workers) or "—",
            str(t.calls),
            f"{t.local_share:.0%}",
            f"{r.seconds:.1f}",
            *((f"{t.cost_usd:.4f}",) if paid else ()),
        )
    if len(rows) > 1:
        table.add_section()
        table.add_row(
            f"{len(rows)} questions",
            "",
            "",
            str(sum(r.answer.ledger.totals.calls for r in rows)),
            "",
            f"{sum(r.seconds for r in rows):.1f}",
            *((f"{sum(r.answer.ledger.totals.cost_usd for r in rows):.4f}",) if paid else ()),
            style="bold",
        )
    return table


def _egress(answer: Answer) -> str:
    t = answer.ledger.totals
    found = ", ".join(f"{k}×{v}" for k, v in answer.privacy.findings.items())
    if not answer.privacy.scanned:
        sensitive = "not scanned: every model runs on this machine"
    else:
        sensitive = f"sensitive spans: {found}" if found else "no sensitive spans found"
    if t.remote_calls == 0:
        return f"nothing left this machine · {sensitive}"
    how = " (redacted to placeholders)" if answer.privacy.policy == "redact" and found else ""
    return f"{t.remote_calls} remote calls sent {t.bytes_sent_remote} bytes{how} · {sensitive}"


def render_answer(console: Console, answer: Answer, *, show_text: bool = True) -> None:
    """Print an answer with its route, citations, notes and ledger."""
    parts: list[RenderableType] = []
    if show_text:
        parts.append(Text(strip_controls(answer.text) or "(no answer)"))
    console.print(Panel(Group(*parts), title="answer", title_align="left")) if parts else None
    console.print(render_route(answer))
    if answer.citations:
        cites = ", ".join(f"{c.worker}:{c.source}" for c in answer.citations)
        console.print(Text.assemble(("citations ", "bold"), strip_controls(cites)))
    learning = answer.learning
    if learning.used:
        console.print(Text(f"from memory: {', '.join(learning.used)}", style="dim"))
    if learning.kept:
        kept = ", ".join(f"learned:{i}" for i in learning.kept)
        console.print(Text(f"remembered as {kept} ([learning] memory = auto)", style="cyan"))
    if learning.pending:
        ids = " ".join(map(str, learning.pending))
        console.print(
            Text(f"learned: record {ids} · `tandem memory keep {ids}` remembers it", style="cyan")
        )
    for note in answer.notes:
        console.print(Text(f"note: {strip_controls(note)}", style="yellow"))
    console.print(Text.assemble(("privacy ", "bold"), _egress(answer)))
    console.print(render_ledger(answer.ledger))


def answer_json(answer: Answer) -> dict[str, Any]:
    """The one-object JSON form of an answer (``tandem ask --json``)."""
    return {
        "text": answer.text,
        "status": answer.status,
        "missing": list(answer.missing),
        "route": {
            "kind": answer.route.kind,
            "workers": list(answer.route.workers),
            "reason": answer.route.reason,
            "scores": dict(answer.route.scores),
            "probabilities": dict(answer.route.probabilities),
            "none_probability": answer.route.none_probability,
            "parts": [p.model_dump() for p in answer.route.parts],
            "split": answer.route.split,
            "stage": answer.route.stage,
            "second_stage": answer.route.second_stage,
            "fast_workers": answer.route.fast_workers,
        },
        "escalated": answer.escalated,
        "worker_results": [
            {
                "worker": r.worker,
                "status": r.status,
                "model": r.model,
                "answer": r.answer,
                "confidence": r.confidence,
                "needs_escalation": r.needs_escalation,
                "p_correct": r.p_correct,
                "signals": r.signals.model_dump() if r.signals is not None else None,
                "reason": r.reason,
            }
            for r in answer.worker_results
        ],
        "citations": [{"worker": c.worker, "source": c.source} for c in answer.citations],
        "notes": list(answer.notes),
        "learning": answer.learning.model_dump(),
        "ledger": {
            "calls": [c.model_dump() for c in answer.ledger.calls],
            "totals": answer.ledger.totals.model_dump(),
            "planned_by": answer.ledger.planned_by,
        },
    }
