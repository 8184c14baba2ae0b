"""Everything a run needs, built once from a :class:`TandemConfig`.

Backends, stores, workers, the router and the supervisor(s) live here, outside
the graph state, so the state stays small and checkpointable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, cast

from langchain_core.language_models import BaseChatModel

from tandem.agents.llm import BackendLLM, LangChainLLM, LiteLLM, SupervisorLLM
from tandem.agents.privacy.endpoints import EndpointClass, classify_endpoint
from tandem.agents.router import LabelledRoute, Router, SecondStage, load_routes
from tandem.agents.supervisor import Supervisor
from tandem.graphs._egress import egress_hook, install_egress_hook
from tandem.graphs.cascade import WorkerCascade, resolve
from tandem.graphs.config import SupervisorSettings, TandemConfig, load_config
from tandem.graphs.learning import Learning
from tandem.workers.backends import BUNDLED_MODELS, Backend, BackendSettings, make_backend
from tandem.workers.builtin import routing_path, training_path
from tandem.workers.errors import ConfigError, RunError
from tandem.workers.plugins import discover
from tandem.workers.spec import WorkerSpec
from tandem.workers.store import IngestReport, WorkerStore, knowledge_fingerprint, open_client
from tandem.workers.worker import Worker

__all__ = [
    "Runtime",
    "backend_endpoint",
    "builtin_routes",
    "check_embedded_name",
    "embedded_models",
    "empty_workers",
    "make_supervisor_llm",
]

IngestProgress = Callable[[str, int, int, str], None]
"""``progress(worker, files_done, files_total, current_file)``."""


def make_supervisor_llm(
    model: str,
    settings: SupervisorSettings,
    backends: BackendSettings,
    trusted_hosts: Sequence[str] = (),
) -> SupervisorLLM:
    """The large model for a model string: ``embedded/<name>`` or any litellm model.

    Whether it is local is :func:`~tandem.agents.privacy.endpoints.classify_endpoint`'s
    answer for the model and its endpoint (``[supervisor] egress = "remote"`` forces remote).
    """
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
    endpoint = classify_endpoint(model, api_base, trusted_hosts=trusted_hosts)
    where, reason = endpoint.where, endpoint.reason
    if settings.egress == "remote" and where == "local":
        where, reason = "remote", "[supervisor] egress = 'remote'"
    return LiteLLM(
        model,
        api_base=api_base,
        timeout=settings.timeout,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        extra=settings.extra,
        where=where,
        where_reason=reason,
    )


def check_embedded_name(ref: str, *, key: str, file: str | None, chat: bool = False) -> None:
    """Refuse an ``embedded:<name>`` / ``embedded/<name>`` that is not a bundled model, or,
    where a model must answer (``chat``), one that only embeds (``embedded:minilm``).

    Raises:
        ConfigError: Naming the file and key, and the names that exist.
    """
    if not ref.startswith(("embedded:", "embedded/")):
        return
    name = ref.split(":", 1)[1] if ref.startswith("embedded:") else ref.split("/", 1)[1]
    if name not in BUNDLED_MODELS:
        raise ConfigError(
            f"'{ref}' is not a bundled model",
            file=file,
            key=key,
            hint=f"use one of {', '.join(sorted(BUNDLED_MODELS))} (or an ollama: model)",
        )
    if chat and BUNDLED_MODELS[name].embeds_only:
        chats = sorted(n for n, a in BUNDLED_MODELS.items() if not a.embeds_only)
        raise ConfigError(
            f"'{ref}' is an embedding-only model: it only embeds texts and cannot answer",
            file=file,
            key=key,
            hint=f"use a chat model ({', '.join(chats)}); '{ref}' belongs in [router] embed_model",
        )


def backend_endpoint(ref: str, backend: Backend, trusted_hosts: Sequence[str]) -> EndpointClass:
    """Where a worker or embedding backend sends its requests, classified."""
    pool = getattr(backend, "hosts", None)
    if pool:
        hosts = [str(getattr(h, "url", h)) for h in pool]
    else:
        host = getattr(backend, "host", None)
        hosts = [str(host)] if host else []
    return classify_endpoint(ref, hosts=hosts or None, trusted_hosts=trusted_hosts)


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
        self.endpoints: dict[str, EndpointClass] = {}
        """Every endpoint's classification, by role (``supervisor``, ``worker tenancy``,
        ``embeddings``): shown by ``tandem doctor`` and the REPL banner."""
        check_embedded_name(cfg.router.embed_model, key="router.embed_model", file=cfg.source)
        for i, spec in enumerate(specs):
            where = f"workers[{i}] ({spec.name}).model" if spec.origin == "config" else None
            check_embedded_name(
                spec.model,
                key=where or f"{spec.name}.model",
                file=cfg.source if spec.origin == "config" else f"plugin {spec.origin}",
                chat=True,
            )
        check_embedded_name(
            cfg.supervisor.model, key="supervisor.model", file=cfg.source, chat=True
        )
        self.embedder: Backend = make_backend(cfg.router.embed_model, self.backend_settings)
        self.check_backend("embeddings", cfg.router.embed_model, self.embedder)
        client = open_client(cfg.data_dir / "stores", cfg.stores)
        timeout = cfg.reliability.store_timeout
        self.stores = {
            n: WorkerStore(n, client, self.embedder, timeout=timeout) for n in self.specs
        }
        self.cascade: dict[str, WorkerCascade] = {
            n: self.cascade_for(s, s.model) for n, s in self.specs.items()
        }
        """Each worker's calibration and the threshold its direct answers must reach."""
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
                calibration=self.cascade[n].calibration,
            )
            for n, s in self.specs.items()
        }
        for n, w in self.workers.items():
            self.check_backend(f"worker {n}", self.specs[n].model, w.backend, self.specs[n])
        for n, fb in cfg.reliability.fallbacks.items():  # a fallback host is an endpoint too
            if n in self.specs:
                fb_model = fb.model or self.specs[n].model
                check_embedded_name(
                    fb_model, key=f"reliability.fallbacks.{n}.model", file=cfg.source, chat=True
                )
                self.check_backend(
                    f"fallback of worker {n}",
                    fb_model,
                    make_backend(fb_model, self.fallback_settings(fb.host), worker=n),
                    self.specs[n],
                )
        self.learning = Learning(self)
        """Learning records, answer memory and router feedback (``[learning]``)."""
        specs, routes = self.router_training()
        self.router = Router(
            specs,
            self.embedder,
            cfg.router,
            routes=routes,
            cache_dir=cfg.data_dir / "cache",
            second=self.second_stage(specs),
        )
        if supervisor is None:
            llm = make_supervisor_llm(
                cfg.supervisor.model, cfg.supervisor, self.backend_settings, cfg.trusted_hosts()
            )
        elif hasattr(supervisor, "complete"):
            llm = cast(SupervisorLLM, supervisor)
        else:
            llm = LangChainLLM(supervisor)
        self.supervisor = Supervisor(llm, max_subtasks=cfg.max_subtasks, retry=cfg.retry)
        self.endpoints["supervisor"] = _llm_endpoint(llm)
        self._local: Supervisor | None = None
        self._ingest_lock = threading.Lock()
        self._ingested: set[str] = set()
        self._has_chunks: set[str] = set()
        self.knowledge_problems: dict[str, str] = {
            n: f"knowledge path {', '.join(str(p) for p in missing)} does not exist"
            for n, s in self.specs.items()
            if (missing := [p for p in s.knowledge if not p.exists()])
        }
        """Workers whose declared knowledge is (partly) missing: reported once, never retried."""

    def fallback_settings(self, host: str | None) -> BackendSettings:
        """Backend settings for a fallback on another Ollama host (or the same settings)."""
        if not host:
            return self.backend_settings
        ollama = self.backend_settings.ollama.model_copy(update={"host": host})
        return self.backend_settings.model_copy(update={"ollama": ollama})

    def check_backend(
        self, role: str, ref: str, backend: Backend, spec: WorkerSpec | None = None
    ) -> EndpointClass:
        """Classify a worker or embedding backend and refuse what the policy forbids.

        A remote endpoint receives the query and retrieved passages (an embedding endpoint:
        every text embedded, documents included) as they are, so it is refused unless the
        policy is ``allow`` — and refused whatever the policy when a ``local_only`` worker's
        data would reach it.

        Raises:
            ConfigError: Naming the endpoint, why it is remote, and the two ways out.
        """
        cfg = self.config
        endpoint = backend_endpoint(ref, backend, cfg.trusted_hosts())
        backend.where = endpoint.where
        if endpoint.local:
            self.endpoints[role] = endpoint
            return endpoint
        policy = cfg.privacy.policy
        private = [n for n, s in self.specs.items() if s.sensitivity == "local_only"]
        fix = (
            "list the host in [privacy] trusted_hosts if the machine is yours, or serve the "
            "model on this machine"
        )
        if spec is not None and spec.sensitivity == "local_only":
            why = f"'{spec.name}' is a local_only worker: its passages may never leave"
        elif role == "embeddings" and private:
            why = (
                f"the local_only worker(s) {', '.join(private)} would have their documents "
                "embedded there"
            )
        elif policy != "allow":
            why = (
                f"under [privacy] policy = '{policy}' its requests (the query and retrieved "
                "passages) would leave this machine unredacted"
            )
            fix += " (or set policy = 'allow' to send as is)"
        else:
            self.endpoints[role] = endpoint
            worker = spec.name if spec is not None else None
            install_egress_hook(backend, egress_hook(cfg.data_dir, policy, worker))
            return endpoint
        raise ConfigError(f"{role} ({ref}) is remote: {endpoint.reason}; {why}", hint=fix)

    def second_stage(self, specs: Sequence[WorkerSpec]) -> SecondStage | None:
        """The router's second stage (``[router] second_stage``), or ``None`` when off.

        Raises:
            ConfigError: The model is not local (it would receive every grey-zone question,
                whatever the privacy policy: the second stage is never a remote model), or
                the router is not the learned one.
        """
        cfg = self.config
        ref = cfg.router.second_stage
        if ref == "off":
            return None
        key = "router.second_stage"
        if cfg.router.kind != "learned":
            raise ConfigError(
                f"{key} needs the learned router (kind = '{cfg.router.kind}')",
                file=cfg.source,
                hint='set [router] kind = "learned" or second_stage = "off"',
            )
        check_embedded_name(ref, key=key, file=cfg.source, chat=True)
        backend = make_backend(ref, self.backend_settings)
        endpoint = backend_endpoint(ref, backend, cfg.trusted_hosts())
        if not endpoint.local:
            raise ConfigError(
                f"{key} ({ref}) is remote: {endpoint.reason}; the router's second stage only "
                "ever asks a model on this machine",
                file=cfg.source,
                hint="name a bundled model (embedded:qwen2.5-coder-0.5b) or one served on this "
                'machine, list the host in [privacy] trusted_hosts if it is yours, or set "off"',
            )
        self.endpoints["router second stage"] = endpoint
        return SecondStage(backend, specs, cfg.router.second_stage_timeout)

    def router_training(
        self, *, feedback: bool = True
    ) -> tuple[list[WorkerSpec], list[LabelledRoute]]:
        """What the router trains on: the workers (their examples) and labelled routes —
        the built-in workers' set and the approved routing feedback of learning
        (``<data_dir>/learning/routing.jsonl``, part of the learned router's cache key; not
        with ``feedback=False``). The centroid router has no labelled routes: there a
        single-specialist example joins that worker's examples instead."""
        specs = list(self.specs.values())
        learned = self.learning.routes() if feedback else []
        if self.config.router.kind == "centroid":
            extra: dict[str, list[str]] = {}
            for r in learned:
                if len(r.workers) == 1:
                    extra.setdefault(r.workers[0], []).append(r.question)
            specs = [
                s.model_copy(update={"examples": (*s.examples, *extra[s.name])})
                if s.name in extra
                else s
                for s in specs
            ]
        return specs, [*learned, *builtin_routes(specs)]  # a correction wins over a default

    def refit_router(self) -> None:
        """Train the router again on the current examples and approved feedback (it fits on
        its next decision; only texts not embedded before are embedded)."""
        self.router.refit(*self.router_training())

    def cascade_for(self, spec: WorkerSpec, model: str) -> WorkerCascade:
        """The calibration and threshold for ``spec`` answering with ``model``."""
        cfg = self.config
        return resolve(spec, model, cfg.router.embed_model, cfg.cascade, cfg.data_dir)

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
            llm = make_supervisor_llm(
                local.model, local, self.backend_settings, self.config.trusted_hosts()
            )
            self._local = Supervisor(
                llm, max_subtasks=self.config.max_subtasks, retry=self.config.retry
            )
            self.endpoints["local supervisor"] = _llm_endpoint(llm)
        return self._local

    @property
    def nothing_leaves(self) -> bool:
        """Whether no model this runtime can call is remote (supervisor, workers, their
        fallbacks, embeddings): then no run can send anything off the machine. Unsure counts
        as remote — a model that does not say where it runs is classified remote."""
        return self.supervisor.llm.where == "local" and all(
            e.local for e in self.endpoints.values()
        )

    def scans(self) -> bool:
        """Whether runs scan queries and passages for sensitive spans (``[privacy]``)."""
        return not self.nothing_leaves or self.config.privacy.scan_local_runs

    def supervisor_for(self, policy: str) -> Supervisor:
        """The supervisor a run may use under ``policy``."""
        return self.local_supervisor() if policy == "local_only" else self.supervisor

    async def ensure_ingested(
        self,
        names: Sequence[str] | None = None,
        *,
        progress: IngestProgress | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> dict[str, IngestReport]:
        """Ingest each worker's declared knowledge into its store when the store is empty.

        A store filled by another embedding model is never mixed: a built-in or plugin
        worker's store is rebuilt (``notice`` gets one line saying why), a user store
        (declared in tandem.toml or in code) raises.

        Raises:
            StoreError: A user store was built with another embedding model (the message
                names both models and ``tandem ingest --rebuild WORKER``).
        """
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
                if name in self._ingested:
                    continue

                def cb(done: int, total: int, current: str, name: str = name) -> None:
                    if progress:
                        progress(name, done, total, current)

                # A path that does not exist is reported once (knowledge_problems), not
                # retried by every run: only what exists is ingested.
                paths = tuple(p for p in spec.knowledge if p.exists())
                rebuilt = await self._rebuild_if_stale(spec, store, paths, cb, notice)
                if paths:
                    # Only a complete ingestion is recorded: an interrupted one runs again on
                    # the next start and skips the chunks already stored (no duplicates).
                    fingerprint = knowledge_fingerprint(paths)
                    if await store.ingested() != fingerprint:
                        reports[name] = await store.ingest(paths, progress=cb)
                        if not reports[name].errors:
                            await store.mark_ingested(fingerprint)
                if rebuilt:
                    reports.setdefault(name, IngestReport()).rebuilt_from = rebuilt
                self._ingested.add(name)
        finally:
            self._ingest_lock.release()
        # Kept learning records are the source of truth of answer memory: a rebuilt or moved
        # store gets its learned passages back.
        await self.learning.ensure_synced(wanted)
        return reports

    async def _rebuild_if_stale(
        self,
        spec: WorkerSpec,
        store: WorkerStore,
        paths: Sequence[Path],
        progress: Callable[[int, int, str], None],
        notice: Callable[[str], None] | None,
    ) -> str | None:
        """Rebuild a built-in/plugin store filled by another embedding model; refuse a user's."""
        old = await store.stale_model()
        if old is None:
            return None
        if spec.origin == "config":
            raise store.mismatch_error(old)
        if notice:
            new = store.embedder.ref
            notice(f"store '{spec.name}' was built with {old}; rebuilding with {new}")
        await store.rebuild(skip=paths, progress=progress)
        return old


def _llm_endpoint(llm: SupervisorLLM) -> EndpointClass:
    """The classification of a supervisor model (its own when it has one)."""
    where = llm.where
    reason = str(getattr(llm, "where_reason", "") or "")
    if isinstance(llm, BackendLLM):
        backend = llm.backend
        kind: Literal["in-process", "self-hosted"] = (
            "in-process" if backend.ref.startswith("embedded:") else "self-hosted"
        )
        reason = reason or (
            "the embedded engine runs inside this process"
            if kind == "in-process"
            else f"served by {backend.ref} ({where})"
        )
        return EndpointClass(where, reason, llm.model, kind)
    if isinstance(llm, LangChainLLM):
        reason = reason or f"a LangChain model passed in code: treated as {where}"
    return EndpointClass(where, reason or f"{where} (as the model says)", llm.model, "unknown")


async def empty_workers(runtime: Runtime) -> dict[str, str]:
    """Workers with nothing in their store and nothing left to ingest, and why.

    Such a worker would answer from no knowledge at all: the router does not send it
    questions (and says so). A store that is empty only until its knowledge is ingested
    on first use is not empty here.
    """
    out: dict[str, str] = {}
    for name, store in runtime.stores.items():
        if name in runtime._has_chunks:
            continue
        spec = runtime.specs[name]
        if any(p.exists() for p in spec.knowledge) and name not in runtime._ingested:
            continue  # ingested on first use
        try:
            count = await store.count()
        except RunError:
            continue  # a failing store is reported where it is used
        if count > 0:
            runtime._has_chunks.add(name)
            continue
        out[name] = runtime.knowledge_problems.get(name) or (
            "no knowledge declared or ingested" if not spec.knowledge else "its store is empty"
        )
    return out


def builtin_routes(specs: Sequence[WorkerSpec]) -> list[LabelledRoute]:
    """The demo specialists' labelled routes (the routes written for training, then the
    labelled set), when those specialists are registered.

    Rows for the built-in workers only; its out-of-scope rows only when no other worker is
    registered (a question off-topic for the demo may be another worker's field).
    """
    builtin = {s.name for s in specs if s.origin == "builtin"}
    if not builtin:
        return []
    only = len(builtin) == len(specs)
    rows = [*load_routes(training_path(), written=True), *load_routes(routing_path())]
    return [r for r in rows if set(r.workers) <= builtin and (r.workers or only)]


def embedded_models(runtime: Runtime) -> list[str]:
    """Names of the bundled models this runtime will load (to prepare them up front)."""
    cfg = runtime.config
    refs = [s.model for s in runtime.specs.values()] + [cfg.router.embed_model]
    refs += [cfg.router.second_stage] if cfg.router.second_stage != "off" else []
    names = [r.removeprefix("embedded:") for r in refs if r.startswith("embedded:")]
    for llm in (runtime.supervisor.llm, *([runtime._local.llm] if runtime._local else [])):
        if llm.model.startswith("embedded:"):
            names.append(llm.model.removeprefix("embedded:"))
    if cfg.privacy.policy == "local_only" and cfg.privacy.local_supervisor.startswith("embedded/"):
        names.append(cfg.privacy.local_supervisor.removeprefix("embedded/"))
    return sorted(set(names))
