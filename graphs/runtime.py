"""Everything a run needs, built once from a :class:`TandemConfig`.

Backends, stores, workers, the router and the supervisor(s) live here, outside
the graph state, so the state stays small and checkpointable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import cast

from langchain_core.language_models import BaseChatModel

from tandem.agents.llm import BackendLLM, LangChainLLM, LiteLLM, SupervisorLLM
from tandem.agents.router import Router
from tandem.agents.supervisor import Supervisor
from tandem.graphs.config import SupervisorSettings, TandemConfig, load_config
from tandem.graphs.learning import Learning
from tandem.workers.backends import Backend, BackendSettings, make_backend
from tandem.workers.errors import ConfigError
from tandem.workers.plugins import discover
from tandem.workers.spec import WorkerSpec
from tandem.workers.store import IngestReport, WorkerStore, knowledge_fingerprint, open_client
from tandem.workers.worker import Worker

__all__ = ["Runtime", "embedded_models", "make_supervisor_llm"]

IngestProgress = Callable[[str, int, int, str], None]
"""``progress(worker, files_done, files_total, current_file)``."""


def make_supervisor_llm(
    model: str, settings: SupervisorSettings, backends: BackendSettings
) -> SupervisorLLM:
    """The large model for a model string: ``embedded/<name>`` or any litellm model."""
    if model.startswith("embedded/"):
        backend = make_backend(f"embedded:{model.removeprefix('embedded/')}", backends)
        # The embedded engine's own output cap applies too: a small CPU model that rambles
        # for 1024 tokens would hold up the whole run for minutes.
        cap = int(backends.embedded.get("max_tokens") or settings.max_tokens)
        return BackendLLM(
            backend, max_tokens=min(settings.max_tokens, cap), temperature=settings.temperature
        )
    api_base = settings.api_base
    if api_base is None and model.startswith(("ollama/", "ollama_chat/")):
        api_base = backends.ollama.host
    return LiteLLM(
        model,
        api_base=api_base,
        timeout=settings.timeout,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        extra=settings.extra,
        local_hosts=settings.local_hosts,
        egress=settings.egress,
    )


def _backend_settings(config: TandemConfig) -> BackendSettings:
    return BackendSettings(ollama=config.ollama, embedded=config.embedded.model_dump())


class Runtime:
    """Backends, stores, workers, router and supervisors for one configuration.

    Args:
        config: The configuration (default: :func:`load_config`).
        supervisor: Overrides the configured supervisor: a LangChain ``BaseChatModel`` or
            any object with the :class:`~tandem.agents.llm.SupervisorLLM` interface.
        workers: Extra in-code worker specs, added to the configured ones.
    """

    def __init__(
        self,
        config: TandemConfig | None = None,
        *,
        supervisor: BaseChatModel | SupervisorLLM | None = None,
        workers: Sequence[WorkerSpec] = (),
    ) -> None:
        self.config = config or load_config()
        cfg = self.config
        self.backend_settings = _backend_settings(cfg)
        specs = list(cfg.workers)
        report = discover(include_builtin=cfg.use_builtin_workers(), settings=cfg.plugins)
        self.plugin_report = report
        self.plugin_errors = report.errors
        names = {s.name for s in specs}
        for spec in [*report.specs, *workers]:
            if spec.name in names:
                raise ConfigError(
                    f"worker '{spec.name}' is defined twice ({spec.origin} and config)",
                    hint="rename one, or disable the plugin's with [plugins] disabled = "
                    f'["{spec.name}"]',
                )
            names.add(spec.name)
            specs.append(spec)
        if not specs:
            raise ConfigError(
                "no workers: declare [[workers]] in tandem.toml or enable builtin_workers",
                file=cfg.source,
            )
        self.specs = {s.name: s for s in specs}
        self.embedder: Backend = make_backend(cfg.router.embed_model, self.backend_settings)
        client = open_client(cfg.data_dir / "stores", cfg.stores)
        timeout = cfg.reliability.store_timeout
        self.stores = {
            n: WorkerStore(n, client, self.embedder, timeout=timeout) for n in self.specs
        }
        self.workers = {
            n: Worker(
                s,
                make_backend(s.model, self.backend_settings, worker=n),
                self.stores[n],
                self.embedder,
                retry=cfg.retry,
                max_tokens=cfg.worker_max_tokens,
                memory_k=cfg.learning.memory_k if cfg.learning.memory != "off" else 0,
                memory_min_score=cfg.learning.memory_min_score,
            )
            for n, s in self.specs.items()
        }
        self.learning = Learning(self)
        """Learning records, answer memory and router feedback (``[learning]``)."""
        self.router = Router(
            self._routing_specs(),
            self.embedder,
            cfg.router,
            cache_path=cfg.data_dir / "cache" / "router-profiles.json",
        )
        if supervisor is None:
            llm = make_supervisor_llm(cfg.supervisor.model, cfg.supervisor, self.backend_settings)
        elif hasattr(supervisor, "complete"):
            llm = cast(SupervisorLLM, supervisor)
        else:
            llm = LangChainLLM(supervisor)
        self.supervisor = Supervisor(llm, max_subtasks=cfg.max_subtasks, retry=cfg.retry)
        self._local: Supervisor | None = None
        self._ingest_lock = threading.Lock()
        self._ingested: set[str] = set()

    def _routing_specs(self) -> list[WorkerSpec]:
        """Worker specs as the router sees them: plus the approved learned routing examples."""
        learned = self.learning.routing_examples()
        return [
            s.model_copy(update={"examples": (*s.examples, *learned[n])}) if learned.get(n) else s
            for n, s in self.specs.items()
        ]

    def refit_router(self) -> None:
        """Re-fit the router on the current examples, learned ones included (profiles are
        re-embedded on the next decision, only for texts not embedded before)."""
        self.router.workers = self._routing_specs()
        self.router._centroids = None

    def local_supervisor(self) -> Supervisor:
        """The supervisor used when nothing may leave the machine."""
        if self.supervisor.llm.where == "local":
            return self.supervisor
        if self._local is None:
            # Only generation limits and local_hosts carry over: the [supervisor] endpoint,
            # credentials and egress belong to the remote model. Whether the local model is
            # really local is decided from its own endpoint; if not, the graph refuses it.
            sup = self.config.supervisor
            local = SupervisorSettings(
                model=self.config.privacy.local_supervisor,
                timeout=sup.timeout,
                max_tokens=sup.max_tokens,
                temperature=sup.temperature,
                local_hosts=sup.local_hosts,
            )
            llm = make_supervisor_llm(local.model, local, self.backend_settings)
            self._local = Supervisor(
                llm, max_subtasks=self.config.max_subtasks, retry=self.config.retry
            )
        return self._local

    def supervisor_for(self, policy: str) -> Supervisor:
        """The supervisor a run may use under ``policy``."""
        return self.local_supervisor() if policy == "local_only" else self.supervisor

    async def ensure_ingested(
        self, names: Sequence[str] | None = None, *, progress: IngestProgress | None = None
    ) -> dict[str, IngestReport]:
        """Ingest each worker's declared knowledge into its store when the store is empty."""
        reports: dict[str, IngestReport] = {}
        wanted = list(names or self.specs)
        if all(n in self._ingested for n in wanted):
            return reports
        # A thread lock (taken off the event loop) works whichever loop calls us:
        # sync invoke runs nodes on tandem's background loop, ainvoke on the caller's.
        await asyncio.to_thread(self._ingest_lock.acquire)
        try:
            for name in wanted:
                spec, store = self.specs[name], self.stores[name]
                if name in self._ingested or not spec.knowledge:
                    continue
                # Only a complete ingestion is recorded: an interrupted one runs again on the
                # next start and skips the chunks already stored (no duplicates).
                fingerprint = knowledge_fingerprint(spec.knowledge)
                if await store.ingested() != fingerprint:

                    def cb(done: int, total: int, current: str, name: str = name) -> None:
                        if progress:
                            progress(name, done, total, current)

                    reports[name] = await store.ingest(spec.knowledge, progress=cb)
                    if not reports[name].errors:
                        await store.mark_ingested(fingerprint)
                self._ingested.add(name)
        finally:
            self._ingest_lock.release()
        # Kept learning records are the source of truth of answer memory: a rebuilt or moved
        # store gets its learned passages back.
        await self.learning.ensure_synced(wanted)
        return reports


def embedded_models(runtime: Runtime) -> list[str]:
    """Names of the bundled models this runtime will load (to prepare them up front)."""
    cfg = runtime.config
    refs = [s.model for s in runtime.specs.values()] + [cfg.router.embed_model]
    names = [r.removeprefix("embedded:") for r in refs if r.startswith("embedded:")]
    for llm in (runtime.supervisor.llm, *([runtime._local.llm] if runtime._local else [])):
        if llm.model.startswith("embedded:"):
            names.append(llm.model.removeprefix("embedded:"))
    if cfg.privacy.policy == "local_only" and cfg.privacy.local_supervisor.startswith("embedded/"):
        names.append(cfg.privacy.local_supervisor.removeprefix("embedded/"))
    return sorted(set(names))
