"""``tandem doctor``: is everything this configuration needs in place? One ✓/✗ line per
check, each ✗ with the fix; exit code 1 when anything is missing."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import typer
from rich.markup import escape

from tandem.agents.shell._common import ConfigOpt, console, run, runtime
from tandem.agents.shell._models import is_pulled, ollama_models, used_models
from tandem.workers.errors import RunError, TandemError

if TYPE_CHECKING:
    from tandem.graphs import Runtime

__all__ = ["Check", "diagnose", "doctor"]

T = TypeVar("T")


@dataclass
class Check:
    """One line of the report."""

    ok: bool
    what: str
    fix: str = ""
    warn: bool = False
    """Works, but not as well as it could (shown with ``!``; not counted as a failure)."""


async def _reachable(url: str, wait: float = 3.0) -> str:
    """Empty when a TCP connection to ``url``'s host and port succeeds, else the reason."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.hostname or "localhost", port), wait
        )
    except (OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    writer.close()
    return ""


def _litellm() -> Any:
    """litellm, imported quietly (no price-list fetch, no "Provider List" banner)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _quietly(fn: Callable[[], T]) -> T:
    """Call ``fn`` with stdout/stderr captured: litellm prints ANSI banners on some errors."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return fn()


def _provider_problem(model: str) -> str:
    """Why litellm cannot route ``model`` (an unknown provider), or empty."""
    if model.startswith("embedded/"):
        return ""
    litellm = _litellm()
    try:
        _quietly(lambda: litellm.get_llm_provider(model))
    except Exception:
        prefix = model.split("/", 1)[0] if "/" in model else model
        return f"unknown provider '{prefix}'"
    return ""


def _supervisor_keys(model: str, extra: dict[str, Any]) -> list[str]:
    """Environment variables the provider needs that are not set (litellm's own list)."""
    if any("key" in k.lower() and v for k, v in extra.items()):
        return []
    litellm = _litellm()
    try:
        found = _quietly(lambda: litellm.validate_environment(model=model))
    except Exception:  # an unknown provider: litellm cannot say
        return []
    missing = [str(k) for k in found.get("missing_keys", [])]
    if model.startswith(("ollama/", "ollama_chat/")):
        return []  # its endpoint comes from [ollama] host, not a key
    return missing


async def _supervisor(rt: Runtime) -> list[Check]:
    sup = rt.config.supervisor
    model = rt.supervisor.llm.model
    if model.startswith("embedded:"):
        return [Check(True, f"supervisor {sup.model}: embedded, runs in-process")]
    problem = await asyncio.to_thread(_provider_problem, model)
    if problem:
        return [
            Check(
                False,
                f"supervisor {model}: {problem}",
                f"set [supervisor] model (in {rt.config.source or 'tandem.toml'}) to a "
                "litellm model string such as openai/gpt-4o-mini or ollama_chat/llama3.1",
            )
        ]
    checks = []
    if sup.api_base or model.startswith(("ollama/", "ollama_chat/")):
        base = sup.api_base or rt.config.ollama.host
        why = await _reachable(base)
        checks.append(
            Check(
                not why,
                f"supervisor endpoint {base} "
                + ("reachable" if not why else f"unreachable ({why})"),
                "start the server or fix [supervisor] api_base",
            )
        )
    missing = await asyncio.to_thread(_supervisor_keys, model, sup.extra)
    checks.append(
        Check(
            not missing,
            f"supervisor {model} credentials "
            + ("set" if not missing else f"missing: {', '.join(missing)}"),
            f"export {missing[0]}=… (or set [supervisor] extra = {{ api_key = … }})"
            if missing
            else "",
        )
    )
    return checks


def _endpoints(rt: Runtime) -> list[Check]:
    """Where each endpoint runs and why (informational: refused ones never get this far),
    one line per model and reason, naming every role that uses it."""
    roles: dict[tuple[str, str, str], list[str]] = {}
    for role, c in rt.endpoints.items():
        roles.setdefault((c.model, c.where, c.reason), []).append(role)
    return [
        Check(True, f"{', '.join(names)}: {model} is {where} ({reason})")
        for (model, where, reason), names in roles.items()
    ]


def _detection(rt: Runtime) -> Check:
    from tandem.agents.privacy.recognizers import coverage

    cov = coverage(rt.config.privacy.ner)
    what = f"privacy detection: {', '.join(cov.detected)}"
    if cov.partial:
        what += f"; partly: {', '.join(cov.partial)} — {cov.note}"
    return Check(True, what)


def _knowledge(rt: Runtime) -> list[Check]:
    """Every declared knowledge path exists (else its worker would answer from nothing)."""
    checks = []
    for i, (name, spec) in enumerate(rt.specs.items()):
        for path in spec.knowledge:
            if not path.exists():
                key = f"workers[{i}] ({name}).knowledge" if spec.origin == "config" else name
                checks.append(
                    Check(
                        False,
                        f"worker {name}: knowledge path {path} does not exist",
                        f"fix {key} in {rt.config.source or 'tandem.toml'}, or create it",
                    )
                )
    return checks


async def diagnose(rt: Runtime) -> list[Check]:
    """Run every check for the runtime's configuration."""
    from tandem.workers.backends import BUNDLED_MODELS, default_cache_dir

    checks: list[Check] = [*_endpoints(rt), _detection(rt), *_knowledge(rt)]
    uses = used_models(rt)
    host = rt.config.ollama.host
    available: set[str] | None = None
    if any(m.startswith("ollama:") for m in uses):
        try:
            listed = await ollama_models(host, wait=rt.config.ollama.connect_timeout)
            available = {str(m["model"]) for m in listed}
            checks.append(Check(True, f"Ollama reachable at {host} ({len(available)} models)"))
        except RunError as exc:
            checks.append(
                Check(
                    False,
                    f"Ollama not reachable at {host} ({exc})",
                    "start `ollama serve` or set [ollama] host / OLLAMA_HOST",
                )
            )
    engine = importlib.util.find_spec("llama_cpp") is not None
    cache = (rt.config.embedded.cache_dir or default_cache_dir()).expanduser()
    for ref, users in sorted(uses.items()):
        kind, _, name = ref.partition(":")
        label = f"{', '.join(users)}: {ref}"
        if kind == "ollama":
            if available is not None:
                ok = is_pulled(name, available)
                checks.append(
                    Check(
                        ok,
                        f"{label} " + ("pulled" if ok else "not pulled"),
                        f"tandem models pull {name}",
                    )
                )
        elif kind == "embedded":
            asset = BUNDLED_MODELS.get(name)
            if asset is None:
                known = f"use one of {', '.join(sorted(BUNDLED_MODELS))}"
                checks.append(Check(False, f"{label} is not a bundled model", known))
            elif (cache / asset.filename()).exists():
                checks.append(Check(True, f"{label} prepared"))
            else:
                missing = any(part.locate() is None for part in asset.parts)
                checks.append(
                    Check(
                        not missing,
                        f"{label} "
                        + ("not installed" if missing else "bundled (assembled on first use)"),
                        asset.pip_command,
                    )
                )
    checks.extend(await _supervisor(rt))
    for name, store in rt.stores.items():
        try:
            stale = await store.stale_model()
            if stale is not None:  # filled by another embedding model
                new = store.embedder.ref
                if rt.specs[name].origin == "config":
                    what = f"store {name}: built with {stale}, the embedding model is now {new}"
                    checks.append(Check(False, what, f"tandem ingest --rebuild {name}"))
                else:
                    what = f"store {name}: built with {stale}; rebuilt with {new} on first use"
                    checks.append(Check(True, what))
                continue
            count = await store.count()
        except TandemError as exc:
            checks.append(Check(False, f"store {name}: {exc}"))
            continue
        declared = [p for p in rt.specs[name].knowledge if p.exists()]
        if count == 0 and declared:  # ingested on first use: ready, but say so
            what = f"store {name}: empty; its knowledge is ingested on first use"
            checks.append(Check(True, what))
            continue
        checks.append(
            Check(count > 0, f"store {name}: {count} chunks", f"tandem ingest {name} PATH…")
        )
    kinds = {
        asset.kind
        for u in uses
        if u.startswith("embedded:")
        and (asset := BUNDLED_MODELS.get(u.removeprefix("embedded:"))) is not None
    }
    checks.append(
        Check(
            engine or "gguf" not in kinds,
            "embedded engine (llama-cpp-python) " + ("installed" if engine else "not installed"),
            "pip install llama-cpp-python (see requirements.lock)",
        )
    )
    checks.extend(_calibrations(rt))
    if "onnx" in kinds:
        onnx = importlib.util.find_spec("onnxruntime") is not None
        checks.append(
            Check(
                onnx,
                "embedding engine (onnxruntime) " + ("installed" if onnx else "not installed"),
                "pip install onnxruntime",
            )
        )
    return checks


def _calibrations(rt: Runtime) -> list[Check]:
    """Which calibration each worker's ``p_correct`` uses, and whether one is missing."""
    checks = []
    for name, cascade in rt.cascade.items():
        what = f"calibration {name}: {cascade.describe()}"
        if cascade.warning:
            checks.append(Check(True, f"{what} — {cascade.warning}", warn=True))
        else:
            checks.append(Check(True, what))
    return checks


def doctor(config: ConfigOpt = None) -> None:
    """Check that everything this configuration needs is in place (exit 1 if not).

    Ollama reachable, each worker's model present, the supervisor's endpoint and
    credentials, stores non-empty, the embedded engine installed, each worker's
    calibration ('!' when none was fitted for its model): one ✓/✗ line each, with the fix.
    """

    async def go() -> int:
        checks = await diagnose(runtime(config))
        for c in checks:
            mark = "[yellow]![/]" if c.ok and c.warn else "[green]✓[/]" if c.ok else "[red]✗[/]"
            fix = f"  [dim]→ fix: {escape(c.fix)}[/]" if not c.ok and c.fix else ""
            console.print(f"{mark} {escape(c.what)}{fix}", highlight=False, soft_wrap=True)
        bad = sum(not c.ok for c in checks)
        console.print(f"{len(checks) - bad} ok, {bad} to fix", style="bold" if bad else "green")
        return bad

    if run(go):
        raise typer.Exit(1)
