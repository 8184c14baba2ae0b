"""Per-worker retrieval store: one Chroma collection per worker.

Ingest ``.txt``/``.md`` files with chunking (:mod:`tandem.workers.chunking`),
metadata (source, chunk index) and deterministic ids, so re-ingesting unchanged
files adds nothing; query top-k. Chroma's client is synchronous: every call runs
in a thread so the event loop never blocks.

Each collection records the embedding model and vector dimension that filled it
(collection metadata; stores made before that recorded the model only in their
embedding function's config, which counts too). A store opened with another
embedding model is refused with a :class:`StoreError` naming both models and the
fix, never mixed: :meth:`WorkerStore.rebuild` re-embeds it (``tandem ingest
--rebuild WORKER``; the runtime does it by itself for built-in and plugin corpora).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from chromadb.api import ClientAPI
from langchain_core.documents import Document
from pydantic import BaseModel, Field

from tandem.workers._chroma_http import LazyHttpClient, StoreSettings, translate_chroma_error
from tandem.workers._local_store import (
    DEFAULT_STORE_TIMEOUT,
    LazyPersistentClient,
    bounded_call,
    store_error,
)
from tandem.workers._rerank import keyword_rerank, pool_size
from tandem.workers._store_memory import AnswerMemory
from tandem.workers.backends import Backend, TokenMeasure
from tandem.workers.chunking import CHUNKER_VERSION, DEFAULT_WINDOW, chunk_text
from tandem.workers.embedding import TandemEmbeddingFunction
from tandem.workers.errors import RunError, StoreError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "IngestReport",
    "StoreSettings",
    "WorkerStore",
    "chunk_text",
    "knowledge_fingerprint",
    "open_client",
]

SUPPORTED_SUFFIXES = (".md", ".txt")
_CLIENTS: dict[str, ClientAPI] = {}


def open_client(path: Path, settings: StoreSettings | None = None) -> ClientAPI:
    """The Chroma client for the worker stores (no telemetry).

    Args:
        path: The local store directory (one persistent client per directory per process).
        settings: With ``url`` set, a Chroma server instead; it connects on first use.
    """
    if settings is not None and settings.url:
        return LazyHttpClient(settings)  # type: ignore[return-value]
    key = str(path.resolve())
    if key not in _CLIENTS:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store directory {key}: {exc}",
                hint="check the directory is writable, or set data_dir",
            ) from exc
        # Opened on first use, inside a bounded store call: a store locked by another
        # process degrades the run instead of blocking it (see _local_store).
        _CLIENTS[key] = LazyPersistentClient(key)  # type: ignore[assignment]
    return _CLIENTS[key]


_MARKER = "tandem_ingested"
_MODEL_KEY = "tandem_embed_model"
_DIM_KEY = "tandem_embed_dim"
_UNRECORDED = "an unrecorded embedding model"


def knowledge_fingerprint(paths: Iterable[Path | str]) -> str:
    """A digest of the knowledge files (path, size, mtime): it changes when they do."""
    digest = hashlib.sha256()
    for path, source in _files([Path(p) for p in paths], []):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{source}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


class IngestReport(BaseModel):
    """What an ingestion did."""

    files: int = 0
    """Files read."""
    added: int = 0
    """Chunks added or updated."""
    skipped: int = 0
    """Chunks already present and unchanged."""
    removed: int = 0
    """Stale chunks removed (a file got shorter)."""
    errors: list[str] = Field(default_factory=list)
    """Files that could not be ingested, with the reason."""
    rebuilt_from: str | None = None
    """The embedding model the store was rebuilt from, when this ingestion rebuilt it."""


def _files(paths: Sequence[Path], errors: list[str]) -> list[tuple[Path, str]]:
    """Expand files/folders into (file, source key) pairs, recording unusable paths."""
    found: list[tuple[Path, str]] = []
    for root in paths:
        if not root.exists():
            errors.append(f"{root}: no such file or directory")
        elif root.is_dir():
            base = root.resolve()
            for f in sorted(root.rglob("*")):
                if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES:
                    if not f.resolve().is_relative_to(base):  # a symlink out of the folder
                        errors.append(f"{f}: links outside {root}; not ingested")
                        continue
                    found.append((f, f.relative_to(root).as_posix()))
        elif root.suffix.lower() not in SUPPORTED_SUFFIXES:
            errors.append(
                f"{root}: unsupported file type '{root.suffix}' "
                f"(supported: {', '.join(SUPPORTED_SUFFIXES)})"
            )
        else:
            found.append((root, root.name))
    return found


def _recorded_model(coll: Any) -> str | None:
    """The embedding model that filled a collection: its metadata, or for stores made before
    models were recorded, the config of the tandem embedding function it was created with."""
    model = (coll.metadata or {}).get(_MODEL_KEY)
    if model is None:
        ef = (getattr(coll, "configuration_json", None) or {}).get("embedding_function") or {}
        if ef.get("name") == TandemEmbeddingFunction.name():
            model = (ef.get("config") or {}).get("model")
    return str(model) if model is not None else None


def _set_meta(coll: Any, **updates: Any) -> None:
    """Merge ``updates`` into a collection's metadata (Chroma's ``modify`` replaces it)."""
    keep = {k: v for k, v in (coll.metadata or {}).items() if not k.startswith("hnsw:")}
    coll.modify(metadata={**keep, **updates})


class WorkerStore(AnswerMemory):
    """The retrieval store of one worker.

    Args:
        worker: The worker's name (the collection is ``tandem-<worker>``).
        client: A Chroma client (persistent, HTTP or ephemeral).
        embedder: The backend that embeds passages and queries.
        chunk_size: Maximum *characters* per chunk; ``None`` (default) sizes chunks for the
            embedding model's window, in its own tokens when it can count them
            (:class:`~tandem.workers.backends.TokenMeasure`), else estimated.
        timeout: Seconds one store operation may take.
    """

    def __init__(
        self,
        worker: str,
        client: ClientAPI,
        embedder: Backend,
        *,
        chunk_size: int | None = None,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        self.worker = worker
        self.embedder = embedder
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.collection_name = f"tandem-{worker}"
        self._client = client
        self._collection: Any = None
        self._dim: int | None = None

    # -- opening, and the embedding-model guard ----------------------------------------
    def _ef(self) -> TandemEmbeddingFunction:
        ollama = self.embedder.ref.startswith("ollama:")
        host = getattr(self.embedder, "host", None) if ollama else None
        return TandemEmbeddingFunction(self.embedder.ref, host, backend=self.embedder)

    def _open(self, name: str | None = None, *, create: bool = False) -> Any:
        """The collection as it is (no model check); a new one records the embedding model."""
        method = self._client.create_collection if create else self._client.get_or_create_collection
        try:
            return method(
                name or self.collection_name,
                embedding_function=self._ef(),  # type: ignore[arg-type]
                metadata={_MODEL_KEY: self.embedder.ref},
            )
        except Exception as exc:
            raise self._error("cannot open the collection", exc) from exc

    def _coll(self) -> Any:
        if self._collection is None:
            coll = self._open()
            model = _recorded_model(coll)
            if model != self.embedder.ref:
                if coll.count():
                    raise self.mismatch_error(model or _UNRECORDED)
                # Empty: nothing to mix. Re-create it so its embedding function config agrees.
                self._client.delete_collection(self.collection_name)
                coll = self._open(create=True)
            elif _MODEL_KEY not in (coll.metadata or {}):  # made before models were recorded
                _set_meta(coll, **{_MODEL_KEY: model})
            self._collection = coll
        return self._collection

    def mismatch_error(self, recorded: str) -> StoreError:
        """The error for a store filled by ``recorded`` but opened with another model."""
        new = self.embedder.ref
        return StoreError(
            f"store '{self.worker}' was built with {recorded} but the embedding model is now "
            f"{new}; vectors of different models cannot be mixed",
            hint=f"run `tandem ingest --rebuild {self.worker}` to re-embed it with {new}"
            + (f' (or set [router] embed_model = "{recorded}")' if recorded != _UNRECORDED else ""),
            problem="model",
            worker=self.worker,
            model=new,
        )

    async def stale_model(self) -> str | None:
        """The model that filled this store when it is not the current embedder, else ``None``.

        An empty store is never stale (it is re-created for the current model when opened).
        """

        def check() -> str | None:
            coll = self._open()
            model = _recorded_model(coll)
            if model == self.embedder.ref or not coll.count():
                return None
            return model or _UNRECORDED

        result: str | None = await self._call(check, "cannot open")
        return result

    async def embedding_model(self) -> tuple[str | None, int | None]:
        """The embedding model and vector dimension recorded for this store (``None`` if
        not recorded yet)."""

        def read() -> tuple[str | None, int | None]:
            coll = self._open()
            dim = (coll.metadata or {}).get(_DIM_KEY)
            return _recorded_model(coll), int(dim) if dim is not None else None

        result: tuple[str | None, int | None] = await self._call(read, "cannot read")
        return result

    def _check_dim(self, coll: Any, dim: int) -> None:
        if self._dim == dim:
            return
        recorded = (coll.metadata or {}).get(_DIM_KEY)
        if recorded is None:
            _set_meta(coll, **{_DIM_KEY: dim})
        elif int(recorded) != dim:
            raise StoreError(
                f"store '{self.worker}' holds {recorded}-dimensional vectors but "
                f"{self.embedder.ref} returned {dim}-dimensional ones (the model changed)",
                hint=f"run `tandem ingest --rebuild {self.worker}`",
                problem="model",
                worker=self.worker,
                model=self.embedder.ref,
            )
        self._dim = dim

    async def rebuild(
        self,
        *,
        skip: Iterable[Path | str] = (),
        progress: Callable[[int, int, str], None] | None = None,
        batch: int = 32,
    ) -> int:
        """Re-embed every stored chunk with the current embedding model.

        The chunks are copied into a fresh collection (recording the current model), which
        then replaces the old one, so an interrupted rebuild leaves the old store intact.
        The ingestion marker is not carried over: declared knowledge is ingested again.

        Args:
            skip: Files or folders about to be ingested again: their chunks are dropped
                instead of re-embedded.
            progress: Called as ``progress(chunks_done, chunks_total, "")``.
            batch: Chunks per embedding call.

        Returns:
            The number of chunks re-embedded.
        """
        dropped = {source for _, source in _files([Path(p) for p in skip], [])}
        temp = f"{self.collection_name}.rebuild"

        def start() -> tuple[Any, Any, int]:
            with contextlib.suppress(Exception):  # left over by an interrupted rebuild
                self._client.delete_collection(temp)
            old = self._open()
            return old, self._open(temp, create=True), int(old.count())

        old, new, total = await self._call(start, "cannot rebuild")
        self._collection, self._dim = None, None
        done = 0
        page = max(batch, 256)
        for offset in range(0, total, page):
            rows = await self._call(
                functools.partial(
                    old.get, include=["documents", "metadatas"], limit=page, offset=offset
                ),
                "cannot read",
            )
            keep = [
                (i, d or "", m or {})
                for i, d, m in zip(rows["ids"], rows["documents"], rows["metadatas"], strict=True)
                if (m or {}).get("source") not in dropped
            ]
            for first in range(0, len(keep), batch):
                part = keep[first : first + batch]
                vectors = (await self.embedder.embed([d for _, d, _ in part])).vectors
                if vectors:
                    await self._call(
                        functools.partial(self._check_dim, new, len(vectors[0])),
                        "cannot write to",
                    )
                await self._call(
                    functools.partial(
                        new.upsert,
                        ids=[i for i, _, _ in part],
                        documents=[d for _, d, _ in part],
                        embeddings=vectors,
                        metadatas=[m for _, _, m in part],
                    ),
                    "cannot write to",
                )
                done += len(part)
            if progress:
                progress(min(offset + page, total), total, "")

        def swap() -> None:
            self._client.delete_collection(self.collection_name)
            new.modify(name=self.collection_name)

        await self._call(swap, "cannot rebuild")
        self._collection, self._dim = None, None
        return done

    # -- errors and bounded calls -------------------------------------------------------
    def _error(self, what: str, exc: BaseException) -> RunError:
        if isinstance(self._client, LazyHttpClient):  # a Chroma server: say which, and why
            error = translate_chroma_error(
                exc, url=self._client.url, what=f"{what} '{self.collection_name}'"
            )
            error.worker, error.model = self.worker, self.embedder.ref
            return error
        path = getattr(self._client, "path", None) or "the store directory"
        return store_error(
            f"{what} '{self.collection_name}'",
            exc,
            path=str(path),
            worker=self.worker,
            model=self.embedder.ref,
        )

    async def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return await bounded_call(fn, self.timeout)
        except RunError:
            raise
        except TimeoutError as exc:
            late = TimeoutError(f"no answer within {self.timeout:g} s")
            raise self._error(what, late) from exc
        except Exception as exc:
            raise self._error(what, exc) from exc

    async def count(self) -> int:
        """Number of chunks stored."""
        return int(await self._call(lambda: self._coll().count(), "cannot count"))

    async def ingested(self) -> str | None:
        """The fingerprint recorded by the last *complete* ingestion, if any.

        An ingestion that was interrupted (killed, failed half-way) records nothing, so
        the next one runs again; unchanged chunks are skipped, so it adds no duplicates.
        A fingerprint recorded under other chunking rules or sizes does not count.
        """
        meta = await self._call(lambda: self._coll().metadata, "cannot read")
        value = (meta or {}).get(_MARKER)
        if value is None:
            return None
        fingerprint, _, chunking = str(value).partition("/")
        return fingerprint if chunking == self.chunking() else None

    async def mark_ingested(self, fingerprint: str) -> None:
        """Record that ingesting ``fingerprint`` (see :func:`knowledge_fingerprint`) finished."""
        value = f"{fingerprint}/{self.chunking()}"
        await self._call(lambda: _set_meta(self._coll(), **{_MARKER: value}), "cannot write to")

    # -- chunking ---------------------------------------------------------------------------
    def chunking(self) -> str:
        """The chunking rules and size this store ingests with (``v2-254t`` …)."""
        if self.chunk_size is not None:
            return f"v{CHUNKER_VERSION}-{self.chunk_size}c"
        if isinstance(self.embedder, TokenMeasure):
            return f"v{CHUNKER_VERSION}-{self.embedder.input_window()}t"
        return f"v{CHUNKER_VERSION}-{DEFAULT_WINDOW}e"

    def chunk(self, text: str) -> list[str]:
        """Split one document the way this store ingests it."""
        if self.chunk_size is not None:
            return chunk_text(text, size=self.chunk_size)
        if isinstance(self.embedder, TokenMeasure):
            return chunk_text(
                text,
                max_tokens=self.embedder.input_window(),
                count_tokens=self.embedder.count_tokens,
            )
        return chunk_text(text, max_tokens=DEFAULT_WINDOW)

    async def ingest(
        self,
        paths: Iterable[Path | str],
        *,
        progress: Callable[[int, int, str], None] | None = None,
        batch: int = 16,
    ) -> IngestReport:
        """Add ``.md``/``.txt`` files (or folders of them) to the store, idempotently.

        Args:
            paths: Files or folders.
            progress: Called as ``progress(files_done, files_total, current_file)``.
            batch: Chunks embedded per embedding call.

        Returns:
            Counts of files and chunks added/skipped/removed and per-file errors.
        """
        report = IngestReport()
        files = _files([Path(p) for p in paths], report.errors)
        for n, (path, source) in enumerate(files):
            if progress:
                progress(n, len(files), source)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                report.errors.append(f"{path}: cannot read ({exc})")
                continue
            await self._ingest_one(source, self.chunk(text), report, batch)
            report.files += 1
        if progress:
            progress(len(files), len(files), "")
        return report

    async def _ingest_one(
        self, source: str, chunks: list[str], report: IngestReport, batch: int
    ) -> None:
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        ids = [f"{key}:{i}" for i in range(len(chunks))]
        hashes = [hashlib.sha256(c.encode()).hexdigest()[:16] for c in chunks]
        coll = await self._call(self._coll, "cannot open")
        existing = await self._call(
            lambda: coll.get(where={"source": source}, include=["metadatas"]), "cannot read"
        )
        known = {
            i: (m or {}).get("hash")
            for i, m in zip(existing["ids"], existing["metadatas"], strict=True)
        }
        stale = [i for i in known if i not in set(ids)]
        if stale:
            await self._call(lambda: coll.delete(ids=stale), "cannot delete from")
            report.removed += len(stale)
        todo = [k for k, (i, h) in enumerate(zip(ids, hashes, strict=True)) if known.get(i) != h]
        report.skipped += len(chunks) - len(todo)
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            vectors = (await self.embedder.embed([chunks[k] for k in part])).vectors
            if vectors:
                await self._call(
                    functools.partial(self._check_dim, coll, len(vectors[0])), "cannot write to"
                )
            metadatas: list[Any] = [
                {"source": source, "chunk": k, "hash": hashes[k], "worker": self.worker}
                for k in part
            ]
            await self._call(
                functools.partial(
                    coll.upsert,
                    ids=[ids[k] for k in part],
                    documents=[chunks[k] for k in part],
                    embeddings=vectors,
                    metadatas=metadatas,
                ),
                "cannot write to",
            )
            report.added += len(part)

    async def search(
        self, vector: Sequence[float], k: int, *, query: str = "", keyword_weight: float = 0.0
    ) -> list[Document]:
        """The ``k`` passages closest to an already-embedded query, best first.

        With the query's text and a ``keyword_weight`` above 0, the embedding's nearest
        :func:`~tandem.workers._rerank.pool_size` passages are re-ranked by embedding score
        plus keyword overlap (:func:`~tandem.workers._rerank.keyword_rerank`)."""
        if not query or keyword_weight <= 0:
            return await self._nearest(self._coll, vector, k)
        pool = await self._nearest(self._coll, vector, pool_size(k))
        return keyword_rerank(query, pool, k, keyword_weight)

    async def _nearest(
        self, open_collection: Callable[[], Any], vector: Sequence[float], k: int
    ) -> list[Document]:
        """The ``k`` records of a collection closest to ``vector``, best first, each with its
        ``score`` (1 − distance) in the metadata (the corpus and answer memory alike)."""
        coll = await self._call(open_collection, "cannot open")
        res = await self._call(
            lambda: coll.query(
                query_embeddings=[list(vector)],
                n_results=k,
                include=["documents", "metadatas", "distances"],
            ),
            "cannot query",
        )
        docs = []
        for text, meta, dist in zip(
            res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True
        ):
            meta = dict(meta or {})
            meta["score"] = 1.0 - float(dist)
            docs.append(Document(page_content=text or "", metadata=meta))
        return docs
