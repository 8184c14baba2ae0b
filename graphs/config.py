"""Settings: one pydantic-settings object loaded from ``tandem.toml`` + ``TANDEM_*`` env.

Precedence (highest first): arguments to :class:`TandemConfig`, environment
variables (``TANDEM_DATA_DIR``, ``TANDEM_SUPERVISOR__MODEL`` — nested keys use a
double underscore), then the TOML file. With no file at all, tandem runs on the
embedded engine with the built-in demo workers.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tandem.agents.cost import CostSettings
from tandem.agents.planner import PlannerSettings
from tandem.agents.privacy import PrivacySettings
from tandem.agents.privacy.endpoints import parse_trusted_host
from tandem.agents.router import RouterSettings
from tandem.graphs._reliability import ReliabilitySettings
from tandem.graphs.learning.records import LearningSettings
from tandem.workers.backends import OllamaSettings
from tandem.workers.errors import ConfigError
from tandem.workers.plugins import PluginSettings
from tandem.workers.retry import RetryPolicy
from tandem.workers.spec import WorkerSpec, parse_model_ref
from tandem.workers.store import StoreSettings

__all__ = [
    "DEFAULT_SUPERVISOR",
    "CascadeSettings",
    "PrivacySettings",
    "ServeSettings",
    "SupervisorSettings",
    "TandemConfig",
    "load_config",
]

DEFAULT_SUPERVISOR = "embedded/qwen2.5-coder-1.5b"
"""The zero-config supervisor: the bundled 1.5B model, in-process."""

_TOML: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tandem_toml", default=None
)


class SupervisorSettings(BaseModel):
    """The large model (``[supervisor]``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_SUPERVISOR
    """A litellm model string (``openai/gpt-4o-mini``, ``anthropic/claude-…``,
    ``ollama_chat/llama3.3:70b``) or ``embedded/<name>`` for the in-process engine."""
    api_base: str | None = None
    """Endpoint override, e.g. an OpenAI-compatible server (``http://host:8000/v1``)."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds per supervisor call (litellm's own default is 6000)."""
    max_tokens: int = Field(default=1024, ge=16)
    """Cap on the supervisor's output per call."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    """Sampling temperature."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """More keyword arguments passed to ``litellm.acompletion`` (e.g. ``api_key``)."""
    local_hosts: list[str] = Field(default_factory=list)
    """Deprecated: the same as ``[privacy] trusted_hosts`` (its entries are added there)."""
    egress: Literal["auto", "remote"] = "auto"
    """Whether supervisor calls leave the machine: ``auto`` classifies the endpoint (see
    ``[privacy] trusted_hosts``); ``remote`` forces it remote."""

    @field_validator("egress", mode="before")
    @classmethod
    def _check_egress(cls, value: object) -> object:
        if value == "local":
            raise ValueError(
                "'local' is no longer accepted (a local proxy or tunnel to a hosted API would "
                "pass unguarded); list the endpoint's host:port in [privacy] trusted_hosts if "
                "the model really runs on a machine of yours"
            )
        return value

    @field_validator("local_hosts")
    @classmethod
    def _check_local_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_trusted_host(entry)
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the supervisor model cannot be empty")
        if value.startswith("embedded:"):
            raise ValueError(
                f"'{value}': the supervisor takes litellm-style names; use "
                f"'embedded/{value.removeprefix('embedded:')}' for the embedded engine"
            )
        if value.startswith("ollama:"):
            raise ValueError(
                f"'{value}': the supervisor takes litellm-style names; use "
                f"'ollama_chat/{value.removeprefix('ollama:')}' for Ollama"
            )
        return value


class ServeSettings(BaseModel):
    """``tandem serve``: tandem as an OpenAI-compatible endpoint (``[serve]``)."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(default_factory=list, repr=False)
    """Keys a client must send as ``Authorization: Bearer <key>``; the ``TANDEM_API_KEYS``
    environment variable (comma-separated) adds more. With no key at all the server listens
    on loopback only and refuses a non-loopback ``--host``."""
    host: str = "127.0.0.1"
    """Interface to listen on (``--host``)."""
    port: int = Field(default=8400, ge=0, le=65535)
    """TCP port (``--port``)."""
    max_concurrent: int = Field(default=8, ge=1, le=4096)
    """Runs in progress at once; further requests wait in the queue."""
    queue: int = Field(default=64, ge=0, le=100_000)
    """Requests that may wait for a run slot; one more is answered 429 with ``Retry-After``."""
    queue_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request may wait in the queue before it is answered 429."""
    deadline: float | None = Field(default=None, gt=0)
    """Seconds one request may take, queue included; then its run is cancelled and the client
    gets a 504 (or an error event on a stream). Default: the run's own ``[reliability]``
    deadline plus 30 s, so a run first degrades gracefully at its own deadline."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest request body accepted (HTTP 413 beyond it)."""
    shutdown_grace: float = Field(default=30.0, ge=0)
    """On SIGTERM/SIGINT: seconds in-flight requests get to finish before their runs are
    cancelled (a run on a thread is checkpointed step by step: sending the same request on
    the thread again resumes it)."""
    user_threads: bool = False
    """Use OpenAI's ``user`` field as the thread id when a request sends no ``thread_id``."""
    metrics_auth: bool = False
    """Require an API key for ``GET /metrics`` too (``/healthz`` and ``/readyz`` never do)."""
    cors_origins: list[str] = Field(default_factory=list)
    """Web origins allowed to call the API from a browser (a chat UI served from another
    origin that calls tandem directly), e.g. ``["http://localhost:3000"]``; ``["*"]`` allows
    any. Empty: no CORS headers (server-side clients need none)."""
    keepalive: float = Field(default=15.0, gt=0)
    """Seconds between SSE comment lines on a stream that has nothing to send yet (keeps
    proxies from closing it; clients ignore them)."""


class EmbeddedConfig(BaseModel):
    """The in-process engine (``[embedded]``)."""

    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = None
    """Where assembled GGUF files live (default: the user cache dir, or ``TANDEM_MODEL_CACHE``)."""
    n_ctx: int = Field(default=4096, ge=512)
    """Context window in tokens."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads for generation (default: the cores other processes leave free, shared
    between the models running at once; re-read as a call runs)."""
    n_threads_batch: int | None = Field(default=None, ge=1)
    """CPU threads for prompt processing (default: as ``n_threads``)."""
    prefix_cache: bool = True
    """Reuse the KV state of a system prompt's prefix across calls with the same system
    prompt (a worker's ~230 shared tokens are evaluated once)."""
    persist_prefixes: bool = True
    """Also save those states beside the model files (owner-only), so a new process (each
    ``tandem ask``) restores them instead of evaluating the prefix again. Only system
    prompts are saved, never a user's text."""
    max_tokens: int = Field(default=400, ge=16)
    """Cap on tokens generated by any embedded call (workers and an embedded supervisor)."""
    repeat_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    """Penalty on recently generated tokens (llama.cpp's ``repeat_penalty``, the same 1.1 as
    Ollama's default): a small model that starts repeating itself is pushed off the loop
    instead of running to the cap. 1.0 turns it off."""
    embed_threads: int = Field(default=1, ge=1)
    """onnxruntime threads of the bundled embedding model (``embedded:minilm``); 1 is the fast
    setting on a busy 2-core machine."""


def _default_data_dir() -> Path:
    env = os.environ.get("TANDEM_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("tandem"))


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_TOML.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TOML.get() or {})


class _EnvSource(EnvSettingsSource):
    """``TANDEM_PLUGINS`` is the plugin allowlist (a list of names), not ``[plugins]``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "plugins":
            return None, field_name, False
        return super().get_field_value(field, field_name)


class CascadeSettings(BaseModel):
    """The ``[cascade]`` section: when a direct answer may stay local (see
    :mod:`tandem.graphs.cascade`)."""

    max_local_error: float | None = Field(default=0.05, gt=0.0, lt=1.0)
    """The largest share of local answers allowed to be wrong, read off the calibration's
    cross-validated answers; ``None``: only each worker's ``min_confidence`` applies."""
    escalation: Literal["auto", "plan", "answer"] = "auto"
    """What an escalated direct answer becomes. ``plan``: the supervisor plans, specialists
    answer the plan's subtasks, the supervisor synthesizes (two supervisor calls). ``answer``:
    the supervisor answers the question itself from the passages the specialist retrieved
    (one call, streamed) — only with a supervisor on this machine (passages never leave for
    this; a remote supervisor plans instead). ``auto``: ``answer`` when the supervisor is the
    in-process engine (``embedded:…``, where every planning token costs seconds), else
    ``plan``."""
    recheck_below: float | None = Field(default=0.25, ge=0.0, le=1.0)
    """A planned part whose specialist answered it with a ``p_correct`` below this is
    answered again by a local supervisor from the specialist's passages, in the structured
    synthesis call itself (no extra call); ``None``: never. (A part said to be "not
    covered" gets a focused call of its own first: ``rescue_calls`` below.) Chosen on
    questions 1–20 of the cross-domain set: below 0.25 fell 12 of the 14 wrong parts and 3
    right ones."""
    rescue_calls: int | None = Field(default=1, ge=0)
    """With a local supervisor answering escalations (``escalation`` above) and a structured
    synthesis: at most this many planned parts said to be "not covered" get a focused
    supervisor call of their own (the first in plan order); the others are answered from
    their passages within the synthesis call, one supervisor call fewer each. ``None``: every
    such part gets its own call. ``0`` folded every part into the synthesis call: on the
    cross-domain set that cost the demo question its first part ("Yes, it is allowed")."""
    rescue_passages: int = Field(default=2, ge=1, le=20)
    """How many of the specialist's passages (best first) the supervisor is shown when it
    answers from them (``answer`` above, and planned parts a specialist found not covered).
    Each passage is ~200 prompt tokens, ~5 s on the bundled 1.5B; with the bundled MiniLM
    the right document was the first or second passage for 145 of 148 labelled questions."""


class TandemConfig(BaseSettings):
    """Everything tandem needs to run; every field has a safe default."""

    model_config = SettingsConfigDict(
        env_prefix="TANDEM_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    """The large model that plans and synthesizes."""
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    """How to reach Ollama (used by ``ollama:`` workers and embeddings)."""
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    """The in-process llama.cpp engine."""
    router: RouterSettings = Field(default_factory=RouterSettings)
    """Routing thresholds and the embedding model (also used by every store)."""
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    """Who plans cross-domain questions (the router's parts or the supervisor) and how the
    answer is synthesized and checked for coverage."""
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    """Egress policy, detection settings and the egress audit."""
    learning: LearningSettings = Field(default_factory=LearningSettings)
    """Learning records, answer memory and router feedback from escalations (``[learning]``)."""
    cost: CostSettings = Field(default_factory=CostSettings)
    """Custom model prices and per-run budgets (remote dollars, supervisor calls)."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """The single retry layer for model calls."""
    reliability: ReliabilitySettings = Field(default_factory=ReliabilitySettings)
    """Run deadline, per-worker fallbacks, escalation of failed subtasks and input bounds."""
    cascade: CascadeSettings = Field(default_factory=CascadeSettings)
    """When a direct answer stays local: the risk target for ``p_correct``."""
    serve: ServeSettings = Field(default_factory=ServeSettings)
    """``tandem serve``: API keys, limits and the listening address."""
    stores: StoreSettings = Field(default_factory=StoreSettings)
    """Where the worker stores live: a local Chroma directory, or a Chroma server (``url``)."""
    workers: list[WorkerSpec] = Field(default_factory=list)
    """Workers declared in the file (``[[workers]]``)."""
    builtin_workers: bool | None = None
    """Include the built-in demo workers; default: only when no workers are declared."""
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    """Installed worker plugins: disable workers, override their model (``[plugins]``)."""
    data_dir: Path = Field(default_factory=_default_data_dir)
    """Where stores and checkpoints live (default: the user data dir, or ``TANDEM_HOME``)."""
    checkpointer: str = "sqlite"
    """Where conversation threads persist: ``sqlite`` (``<data_dir>/threads.sqlite``),
    ``sqlite:///abs/path.sqlite``, ``memory`` (lost on exit), or ``postgresql://user:pass@host/db``
    (shared by every process that uses it)."""
    max_subtasks: int = Field(default=4, ge=1, le=16)
    """Upper bound on subtasks in one plan."""
    recursion_limit: int = Field(default=25, ge=5, le=200)
    """LangGraph's step limit for one run."""
    worker_max_tokens: int = Field(default=256, ge=16, le=8192)
    """Cap on a worker's output length in tokens. A worker answers in one JSON object whose
    answer is a figure or a sentence or two (~40-90 tokens); a reply cut off by the cap is
    closed locally (no second model call)."""
    source: str | None = Field(default=None, exclude=True)
    """The file this configuration was read from (informational)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls)

    @field_validator("workers")
    @classmethod
    def _unique_workers(cls, value: list[WorkerSpec]) -> list[WorkerSpec]:
        seen: set[str] = set()
        for w in value:
            if w.name in seen:
                raise ValueError(f"worker '{w.name}' is declared twice")
            seen.add(w.name)
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("router")
    @classmethod
    def _check_embed(cls, value: RouterSettings) -> RouterSettings:
        parse_model_ref(value.embed_model)
        return value

    def trusted_hosts(self) -> list[str]:
        """``[privacy] trusted_hosts`` plus the deprecated ``[supervisor] local_hosts``."""
        return [*self.privacy.trusted_hosts, *self.supervisor.local_hosts]

    def use_builtin_workers(self) -> bool:
        """Whether the built-in demo workers are part of this configuration."""
        return self.builtin_workers if self.builtin_workers is not None else not self.workers


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative paths in a file are relative to that file, not to the working directory."""
    if isinstance(data.get("data_dir"), str):
        data["data_dir"] = str(base / Path(data["data_dir"]).expanduser())
    router = data.get("router")
    if isinstance(router, dict) and isinstance(router.get("train"), str):
        router["train"] = str(base / Path(router["train"]).expanduser())
    _resolve_knowledge(data, base)


def _resolve_knowledge(data: dict[str, Any], base: Path) -> None:
    for worker in data.get("workers", []) or []:
        if isinstance(worker, dict) and isinstance(worker.get("knowledge"), list | str):
            items = (
                [worker["knowledge"]]
                if isinstance(worker["knowledge"], str)
                else worker["knowledge"]
            )
            worker["knowledge"] = [str(base / Path(str(p)).expanduser()) for p in items]


def _format_errors(exc: ValidationError, data: dict[str, Any]) -> tuple[str, str]:
    lines = []
    first_key = ""
    for err in exc.errors():
        loc: list[str] = []
        node: Any = data
        for part in err["loc"]:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                item = node[part]
                name = item.get("name") if isinstance(item, dict) else None
                loc[-1:] = [f"{loc[-1] if loc else ''}[{part}]" + (f" ({name})" if name else "")]
                node = item
            else:
                loc.append(str(part))
                node = node.get(part) if isinstance(node, dict) else None
        key = ".".join(loc)
        first_key = first_key or key
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see `tandem config show`)"
        lines.append(f"{key}: {msg}")
    return first_key, "; ".join(lines)


def load_config(path: str | Path | None = None, **overrides: Any) -> TandemConfig:
    """Load configuration.

    Args:
        path: A ``tandem.toml``; default: ``TANDEM_CONFIG``, else ``./tandem.toml`` if present,
            else no file (embedded engine + built-in demo workers).
        **overrides: Field values that win over file and environment.

    Raises:
        ConfigError: The file is missing/malformed or a value is invalid; names file and key.
    """
    explicit = path or os.environ.get("TANDEM_CONFIG")
    file = Path(explicit) if explicit else Path("tandem.toml")
    data: dict[str, Any] = {}
    source: str | None = None
    if explicit or file.exists():
        source = str(file)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                "file not found", file=source, hint="pass an existing file or unset TANDEM_CONFIG"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file ({exc})", file=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=source) from None
        _resolve_paths(data, file.resolve().parent)
    token = _TOML.set(data)
    try:
        config = TandemConfig(**overrides)
    except ValidationError as exc:
        key, message = _format_errors(exc, data)
        error = ConfigError(message, file=source or "environment (TANDEM_*)")
        error.key = key
        raise error from None
    finally:
        _TOML.reset(token)
    config.source = source
    return config
