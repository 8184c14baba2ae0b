"""The built-in demo specialists (tenancy, finance, health) and their corpora.

They register through the ``tandem.workers`` entry point ``builtin``, exactly
like third-party plugins. The corpora are fictional (the Republic of Veloria)
and written for tandem.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from tandem.workers.spec import WorkerSpec

__all__ = ["DEMO_MODEL", "specs"]

DEMO_MODEL = "embedded:qwen2.5-coder-0.5b"
"""The bundled small model the demo specialists use."""


def specs() -> list[WorkerSpec]:
    """The demo specialists, with knowledge paths inside this package."""
    root = Path(str(resources.files(__name__)))
    data = tomllib.loads((root / "workers.toml").read_text(encoding="utf-8"))
    out = []
    for entry in data["workers"]:
        entry = dict(entry)
        entry["knowledge"] = [root / p for p in entry.get("knowledge", [])]
        entry.setdefault("model", DEMO_MODEL)
        entry["origin"] = "builtin"
        out.append(WorkerSpec.model_validate(entry))
    return out
