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

__all__ = ["DEMO_MODEL", "routing_path", "specs", "training_path"]

DEMO_MODEL = "embedded:qwen2.5-coder-0.5b"
"""The bundled small model the demo specialists use."""


def routing_path() -> Path:
    """Labelled routes for the demo specialists (the ``tandem eval`` JSONL format).

    The router learns from them when the built-in workers are in use. It is the same set
    as ``benchmarks/data/routing_eval.jsonl``: routing figures on it come from k-fold
    cross-validation (``tandem router eval … --cv K``), never from a router trained on it.
    """
    return Path(str(resources.files(__name__))) / "routing.jsonl"


def training_path() -> Path:
    """Labelled routes written for the router to learn from (not evaluation data), in the
    ``tandem eval`` JSONL format: single-domain questions of each demo specialist across its
    corpus's topics (beyond the few ``examples`` in ``workers.toml``) — some of them naming
    another specialist's field only in passing ("I sublet my spare room … Do I need to tell
    the tax office?" is finance alone) — then cross-domain ones, then a few out-of-scope
    questions that use the specialists' words (``expected_workers: []``).

    None of them is taken from ``routing.jsonl``, and none is within cosine 0.78 (MiniLM)
    of any of its questions, so cross-validated figures on that set stay honest.
    """
    return Path(str(resources.files(__name__))) / "routing_train.jsonl"


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
