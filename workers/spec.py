"""What a specialist worker is: :class:`WorkerSpec`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.workers.modelref import parse_model_ref

__all__ = ["NAME_PATTERN", "WorkerSpec", "parse_model_ref"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
"""Worker names: lowercase, start with a letter, letters/digits/underscores, 2–40 chars."""


class WorkerSpec(BaseModel):
    """A specialist small-model worker: its domain, model, prompt and knowledge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Unique identifier-like name (``tenancy``, ``maritime_law``): lowercase, 2–40 chars."""
    description: str
    """What the worker knows; the router compares queries against it."""
    examples: tuple[str, ...] = ()
    """Sample questions this worker answers well; they sharpen routing."""
    model: str = "embedded:qwen2.5-coder-0.5b"
    """The small model: ``ollama:<model>`` or ``embedded:<name>``."""
    system_prompt: str = ""
    """The worker's persona and rules, prepended to every prompt."""
    knowledge: tuple[Path, ...] = ()
    """Files or folders (``.txt``/``.md``) to ingest into the worker's store."""
    top_k: int = Field(default=4, ge=1, le=50)
    """How many passages to retrieve per subtask."""
    keyword_weight: float = Field(default=0.05, ge=0.0, le=1.0)
    """How much keyword overlap counts when ranking passages: each of the embedding's nearest
    candidates scores its embedding similarity plus this weight × its BM25 match with the
    question (scaled 0–1 over the candidates), so a passage naming what the question names
    wins a near-tie. ``0`` ranks by the embedding alone."""
    evidence: int = Field(default=0, ge=0, le=8)
    """How many passage sentences that match the subtask best (word overlap, then embedding
    similarity: :func:`tandem.workers.ask.evidence`) are quoted again after the passages, as
    a hint where the answer is — to this worker's model and to a local supervisor answering
    from its passages. A small model tends to answer with the first figure it reads; the
    hint points it at the sentence that answers. ``0`` (default): no hint. On the bundled
    0.5B, ``2`` made 81 of 168 answers right instead of 72 (~7 % more prompt time), but
    ``p_correct`` then tells right from wrong less well (CV AUROC 0.85 → 0.81; the kept
    answers' error 7 % → 11 %): the model answers from the very sentences the grounding
    signals check. The prompt changes with it, so re-fit (``tandem calibrate``)."""
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    """Below this self-reported confidence a direct answer escalates to the supervisor."""
    sensitivity: Literal["normal", "local_only"] = "normal"
    """``local_only``: passages from this worker's store never leave the machine and its answer
    is redacted before any remote model sees it, whatever the privacy policy."""
    origin: str = "config"
    """Where the spec came from: ``config``, ``builtin`` or a plugin distribution."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"'{value}' is not a valid worker name; expected lowercase letters, digits "
                "and underscores, starting with a letter, 2-40 characters (e.g. 'tenancy')"
            )
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        parse_model_ref(value)
        return value

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a worker needs a non-empty description (the router uses it)")
        return value.strip()
