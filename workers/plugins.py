"""Worker plugins: discovery through the ``tandem.workers`` entry-point group.

A third party adds a specialist by ``pip install``-ing a package that declares::

    [project.entry-points."tandem.workers"]
    maritime = "tandem_maritime:specs"

The entry point resolves to a :class:`WorkerSpec`, a list of them, or a callable
returning either. :func:`register` is the one validation path (name rules, model
reference, knowledge shipped inside the plugin's own package, duplicates); the
built-in demo workers are the entry point ``builtin`` of tandem itself and go
through it too.

Control: ``TANDEM_PLUGINS`` is an allowlist of entry-point or distribution names
(unset = all installed, empty = none, ``a,b`` = only those); the ``[plugins]``
config section disables workers or overrides their model. A plugin that fails
to import or returns invalid specs is reported (distribution, entry point,
error) and skipped; the others keep working.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tandem.workers.errors import PluginError
from tandem.workers.spec import WorkerSpec, parse_model_ref

__all__ = [
    "GROUP",
    "PluginReport",
    "PluginSettings",
    "PluginWorkerSettings",
    "allowed_plugins",
    "discover",
    "register",
]

GROUP = "tandem.workers"
"""The entry-point group plugins declare."""

BUILTIN = "builtin"
"""The origin (and entry-point name) of tandem's own demo workers."""


class PluginWorkerSettings(BaseModel):
    """Overrides for one discovered worker (``[plugins.workers.<name>]``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """``false`` leaves the worker out of every run."""
    model: str | None = None
    """Replace the plugin's default model (``ollama:<model>`` or ``embedded:<name>``)."""

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model_ref(value)
        return value


class PluginSettings(BaseModel):
    """Installed worker plugins (``[plugins]`` in tandem.toml)."""

    model_config = ConfigDict(extra="forbid")

    disabled: list[str] = Field(default_factory=list)
    """Worker, entry-point or distribution names never to load (e.g. ``["tandem-maritime"]``)."""
    workers: dict[str, PluginWorkerSettings] = Field(default_factory=dict)
    """Per-worker overrides, keyed by worker name (``[plugins.workers.maritime]``)."""


class PluginReport(BaseModel):
    """The outcome of plugin discovery."""

    specs: list[WorkerSpec] = Field(default_factory=list)
    """Valid worker specs, in discovery order (built-ins first)."""
    errors: list[str] = Field(default_factory=list)
    """One readable line per plugin or worker that was skipped."""
    disabled: list[str] = Field(default_factory=list)
    """Workers left out by the ``[plugins]`` configuration."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_plugins() -> set[str] | None:
    """The ``TANDEM_PLUGINS`` allowlist, normalised (``None`` = all installed)."""
    raw = os.environ.get("TANDEM_PLUGINS")
    if raw is None:
        return None
    return {_norm(p.strip()) for p in raw.split(",") if p.strip()}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return str(exc.message)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_knowledge(
    spec: WorkerSpec, origin: str, package_root: Path, base_dir: Path
) -> WorkerSpec:
    root = package_root.resolve()
    paths = []
    for raw in spec.knowledge:
        path = (base_dir / raw if not raw.is_absolute() else raw).resolve()
        if not path.is_relative_to(root):
            raise PluginError(
                f"{origin}: worker '{spec.name}': knowledge path {raw} is outside the plugin's "
                f"package ({root}); ship the corpus as package data"
            )
        if not path.exists():
            raise PluginError(
                f"{origin}: worker '{spec.name}': knowledge path {path} does not exist; is it "
                "listed in [tool.setuptools.package-data]?"
            )
        paths.append(path)
    return spec.model_copy(update={"knowledge": tuple(paths)})


def register(
    obj: Any,
    *,
    origin: str,
    package_root: Path | None = None,
    base_dir: Path | None = None,
) -> list[WorkerSpec]:
    """Validate what an entry point produced into worker specs (the one registration path).

    Args:
        obj: A :class:`WorkerSpec`, a mapping with its fields, a list/tuple of either, or a
            callable (factory) returning one of those.
        origin: ``builtin`` or ``"<distribution> <version>"``; stamped on every spec.
        package_root: When given, every knowledge path must lie inside it (the plugin's
            installed package) and exist.
        base_dir: Relative knowledge paths are resolved against it (default: ``package_root``).

    Returns:
        The validated specs, each with ``origin`` set and knowledge paths absolute.

    Raises:
        PluginError: Not a spec/list/factory, an invalid spec (name, model, description…),
            knowledge outside the package or missing, or the same name twice.
    """
    if callable(obj) and not isinstance(obj, WorkerSpec | type):
        try:
            obj = obj()
        except Exception as exc:
            raise PluginError(f"{origin}: the factory raised {_describe(exc)}") from None
    items: Iterable[Any]
    if isinstance(obj, WorkerSpec | dict):
        items = [obj]
    elif isinstance(obj, list | tuple):
        items = obj
    else:
        raise PluginError(
            f"{origin}: expected a WorkerSpec, a list of them or a factory returning them, "
            f"got {type(obj).__name__}"
        )
    out: list[WorkerSpec] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, WorkerSpec | dict):
            raise PluginError(f"{origin}: expected a WorkerSpec, got {type(item).__name__}")
        data = item.model_dump() if isinstance(item, WorkerSpec) else dict(item)
        data["origin"] = origin
        label = data.get("name", "?")
        try:
            spec = WorkerSpec.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise PluginError(f"{origin}: worker '{label}': invalid {where}: {msg}") from None
        if package_root is not None:
            spec = _check_knowledge(spec, origin, package_root, base_dir or package_root)
        if spec.name in seen:
            raise PluginError(f"{origin}: worker '{spec.name}' is registered twice")
        seen.add(spec.name)
        out.append(spec)
    return out


def _origin(ep: EntryPoint) -> tuple[str, str]:
    """``(origin, distribution name)`` of an entry point."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, ep.name
    if ep.name == BUILTIN and _norm(dist.name) == "tandem":
        return BUILTIN, dist.name
    return f"{dist.name} {dist.version}", dist.name


def _package_dirs(module: str) -> tuple[Path, Path] | None:
    """``(top-level package dir, the module's own dir)`` of a loaded module."""
    mod = sys.modules.get(module)
    file = getattr(mod, "__file__", None)
    if not file:
        return None
    here = Path(file).resolve().parent
    root = here
    while (root.parent / "__init__.py").exists():
        root = root.parent
    return root, here


def _load(ep: EntryPoint, origin: str) -> list[WorkerSpec]:
    try:
        obj = ep.load()
    except (Exception, SystemExit) as exc:
        raise PluginError(f"cannot import {ep.value}: {_describe(exc)}") from None
    dirs = _package_dirs(ep.module)
    root, here = dirs if dirs else (None, None)
    return register(obj, origin=origin, package_root=root, base_dir=here)


def _apply(
    spec: WorkerSpec, names: set[str], settings: PluginSettings, report: PluginReport
) -> WorkerSpec | None:
    override = settings.workers.get(spec.name)
    if names & {_norm(d) for d in settings.disabled} or (override and not override.enabled):
        report.disabled.append(spec.name)
        return None
    if override and override.model:
        return spec.model_copy(update={"model": override.model})
    return spec


def discover(
    *,
    include_builtin: bool = True,
    settings: PluginSettings | None = None,
    entry_point_loader: Callable[[], Iterable[EntryPoint]] | None = None,
) -> PluginReport:
    """Load every allowed ``tandem.workers`` entry point, isolating failures.

    Args:
        include_builtin: Whether tandem's own demo workers take part.
        settings: The ``[plugins]`` configuration (disable workers, override models).
        entry_point_loader: Where entry points come from (default: the installed ones).

    Returns:
        The valid specs plus one readable line per plugin or worker that was skipped.
    """
    settings = settings or PluginSettings()
    allowed = allowed_plugins()
    report = PluginReport()
    eps = entry_point_loader() if entry_point_loader else entry_points(group=GROUP)
    found: list[tuple[str, WorkerSpec, set[str]]] = []
    for ep in sorted(eps, key=lambda e: (e.name != BUILTIN, e.name)):
        origin, dist = _origin(ep)
        names = {_norm(ep.name), _norm(dist)}
        if allowed is not None and not names & allowed:
            continue
        if origin == BUILTIN and not include_builtin:
            continue
        try:
            specs = _load(ep, origin)
        except PluginError as exc:
            why = exc.message.removeprefix(f"{origin}: ")
            report.errors.append(f"plugin '{ep.name}' from {origin} skipped: {why}")
            continue
        found.extend((origin, spec, names | {_norm(spec.name)}) for spec in specs)
    owners: dict[str, list[str]] = {}
    for origin, spec, _ in found:
        owners.setdefault(spec.name, []).append(origin)
    for origin, spec, names in found:
        if len(owners[spec.name]) > 1:
            if owners[spec.name][0] == origin:
                report.errors.append(
                    f"worker '{spec.name}' is registered by both "
                    f"{' and '.join(owners[spec.name])}; neither is loaded: uninstall one or "
                    "leave one out with TANDEM_PLUGINS or [plugins] disabled"
                )
            continue
        kept = _apply(spec, names, settings, report)
        if kept is not None:
            report.specs.append(kept)
    if allowed is None and include_builtin:
        known = {spec.name for _, spec, _ in found}
        for name in sorted(set(settings.workers) - known):
            report.errors.append(f"[plugins.workers.{name}]: no installed worker named '{name}'")
    return report
