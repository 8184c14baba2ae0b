"""Worker plugins: discovery through the ``tandem.workers`` entry-point group.

An entry point resolves to a :class:`WorkerSpec`, a list of them, or a
callable returning either. The built-in demo workers are the entry point
``builtin`` of tandem itself. ``TANDEM_PLUGINS`` is an allowlist of entry-point
names: unset = all installed, empty = none, ``a,b`` = only those. A plugin that
fails to load is reported and skipped; the others keep working.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tandem.workers.errors import PluginError
from tandem.workers.spec import WorkerSpec

__all__ = ["GROUP", "PluginReport", "allowed_plugins", "discover", "register"]

GROUP = "tandem.workers"


class PluginReport(BaseModel):
    """The outcome of plugin discovery."""

    specs: list[WorkerSpec] = Field(default_factory=list)
    """Valid worker specs, in discovery order."""
    errors: list[str] = Field(default_factory=list)
    """One readable line per plugin that was skipped."""


def allowed_plugins() -> set[str] | None:
    """The ``TANDEM_PLUGINS`` allowlist (``None`` = all)."""
    raw = os.environ.get("TANDEM_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def register(obj: Any, *, origin: str) -> list[WorkerSpec]:
    """Validate what an entry point produced into worker specs (the one registration path).

    Raises:
        PluginError: If it is not a spec, a list of specs, or a factory of either.
    """
    if callable(obj) and not isinstance(obj, WorkerSpec):
        obj = obj()
    items: Iterable[Any] = obj if isinstance(obj, list | tuple) else [obj]
    out: list[WorkerSpec] = []
    for item in items:
        try:
            spec = item if isinstance(item, WorkerSpec) else WorkerSpec.model_validate(item)
        except ValidationError as exc:
            raise PluginError(f"{origin}: invalid worker spec: {exc.errors()[0]['msg']}") from None
        out.append(spec.model_copy(update={"origin": origin}))
    return out


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if ep.name == "builtin" and dist is not None and dist.name == "tandem":
        return "builtin"
    return f"{dist.name} {dist.version}" if dist is not None else ep.name


def discover(*, include_builtin: bool = True) -> PluginReport:
    """Load every allowed ``tandem.workers`` entry point, isolating failures."""
    allowed = allowed_plugins()
    report = PluginReport()
    owners: dict[str, str] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name != "builtin", e.name)):
        if allowed is not None and ep.name not in allowed:
            continue
        origin = _origin(ep)
        if origin == "builtin" and not include_builtin:
            continue
        try:
            specs = register(ep.load(), origin=origin)
        except Exception as exc:
            report.errors.append(f"plugin '{ep.name}' ({origin}) skipped: {exc}")
            continue
        for spec in specs:
            if spec.name in owners:
                report.errors.append(
                    f"worker '{spec.name}' is registered by both {owners[spec.name]} and "
                    f"{origin}; kept the first"
                )
                continue
            owners[spec.name] = origin
            report.specs.append(spec)
    return report
