"""Per-worker retrieval store: one Chroma collection per worker.

Ingest ``.txt``/``.md`` files with chunking, metadata (source, chunk index) and
deterministic ids, so re-ingesting unchanged files adds nothing; query top-k.
Chroma's client is synchronous: every call runs in a thread so the event loop
never blocks.
"""

from __future__ import annotations

import functools
import hashlib
import re
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
from tandem.workers.backends import Backend
from tandem.workers.embedding import TandemEmbeddingFunction
from tandem.workers.errors import RunError, StoreError
from tandem.workers.memory import MEMORY_EMBED_KEY

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


def chunk_text(text: str, *, size: int = 900) -> list[str]:
    """Split text into chunks of at most ``size`` characters along paragraphs/sentences.

    A leading ``# Title`` is repeated at the top of every chunk so each chunk says
    what it is about.
    """
    text = text.replace("\r\n", "\n").strip()
    title = ""
    first, _, rest = text.partition("\n")
    if first.startswith("#"):
        title, text = first.lstrip("#").strip(), rest.strip()
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        if len(para) <= size:
            pieces.append(para)
            continue
        pieces.extend(s for s in re.split(r"(?<=[.!?])\s+", para) if s)
    chunks: list[str] = []
    current = ""
    budget = size - len(title) - 2 if title else size
    for piece in pieces:
        while len(piece) > budget:
            chunks.extend([current] if current else [])
            current = ""
            chunks.append(piece[:budget])
            piece = piece[budget:]
        if current and len(current) + 1 + len(piece) > budget:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}\n{piece}" if current else piece
    if current:
        chunks.append(current)
    if not chunks and title:
        chunks = [""]
    return [f"{title}\n{c}".strip() if title else c for c in chunks]


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


class WorkerStore:
    """The retrieval store of one worker.

    Args:
        worker: The worker's name (the collection is ``tandem-<worker>``).
        client: A Chroma client (persistent, HTTP or ephemeral).
        embedder: The backend that embeds passages and queries.
        chunk_size: Maximum characters per chunk.
    """

    def __init__(
        self,
        worker: str,
        client: ClientAPI,
        embedder: Backend,
        *,
        chunk_size: int = 900,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        self.worker = worker
        self.embedder = embedder
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.collection_name = f"tandem-{worker}"
        self._client = client
        self._collection: Any = None

    def _coll(self) -> Any:
        if self._collection is None:
            host = (
                getattr(self.embedder, "host", None)
                if self.embedder.ref.startswith("ollama:")
                else None
            )
            ef = TandemEmbeddingFunction(self.embedder.ref, host, backend=self.embedder)
            try:
                self._collection = self._client.get_or_create_collection(
                    self.collection_name,
                    embedding_function=ef,  # type: ignore[arg-type]
                )
            except Exception as exc:
                raise self._error("cannot open the collection", exc) from exc
        return self._collection

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
        """
        meta = await self._call(lambda: self._coll().metadata, "cannot read")
        value = (meta or {}).get(_MARKER)
        return str(value) if value is not None else None

    async def mark_ingested(self, fingerprint: str) -> None:
        """Record that ingesting ``fingerprint`` (see :func:`knowledge_fingerprint`) finished."""

        def write() -> None:
            coll = self._coll()
            keep = {k: v for k, v in (coll.metadata or {}).items() if not k.startswith("hnsw:")}
            coll.modify(metadata={**keep, _MARKER: fingerprint})

        await self._call(write, "cannot write to")

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
            await self._ingest_one(source, chunk_text(text, size=self.chunk_size), report, batch)
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

    async def search(self, vector: Sequence[float], k: int) -> list[Document]:
        """The ``k`` passages closest to an already-embedded query, best first."""
        coll = await self._call(self._coll, "cannot open")
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

    # -- answer memory ---------------------------------------------------------------------
    # Learned passages (tandem.workers.memory) live in a collection of their own beside the
    # curated one, so re-ingestion never touches them and forgetting never touches it.
    @property
    def memory_collection_name(self) -> str:
        """The answer-memory collection: ``tandem-<worker>-memory``."""
        return f"{self.collection_name}-memory"

    def _open_memory(self) -> Any:
        host = (
            getattr(self.embedder, "host", None)
            if self.embedder.ref.startswith("ollama:")
            else None
        )
        ef = TandemEmbeddingFunction(self.embedder.ref, host, backend=self.embedder)
        try:
            return self._client.get_or_create_collection(
                self.memory_collection_name,
                embedding_function=ef,  # type: ignore[arg-type]
                metadata={MEMORY_EMBED_KEY: self.embedder.ref},
            )
        except Exception as exc:
            raise self._error("cannot open the collection", exc) from exc

    def _mem(self) -> Any:
        """The answer-memory collection; emptied when another embedding model filled it."""
        coll = getattr(self, "_memory", None)
        if coll is None:
            coll = self._open_memory()
            filled_by = (coll.metadata or {}).get(MEMORY_EMBED_KEY)
            if filled_by not in (None, self.embedder.ref):
                # Vectors of two models never mix: start it again; the learning store re-adds
                # the kept records (it is their source of truth).
                self._client.delete_collection(self.memory_collection_name)
                coll = self._open_memory()
            self._memory = coll
        return coll

    async def add_memory(self, passages: Sequence[tuple[str, str, dict[str, Any]]]) -> int:
        """Add learned passages ``(id, text, metadata)`` (embedded with the store's embedder)."""
        if not passages:
            return 0
        coll = await self._call(self._mem, "cannot open")
        vectors = (await self.embedder.embed([p[1] for p in passages])).vectors
        await self._call(
            functools.partial(
                coll.upsert,
                ids=[p[0] for p in passages],
                documents=[p[1] for p in passages],
                embeddings=vectors,
                metadatas=[p[2] for p in passages],
            ),
            "cannot write to",
        )
        return len(passages)

    async def remove_memory(self, ids: Sequence[str]) -> None:
        """Remove learned passages by id."""
        if ids:
            coll = await self._call(self._mem, "cannot open")
            await self._call(lambda: coll.delete(ids=list(ids)), "cannot delete from")

    async def memory_ids(self) -> list[str]:
        """Ids of every learned passage in the store."""
        coll = await self._call(self._mem, "cannot open")
        res = await self._call(lambda: coll.get(include=[]), "cannot read")
        return [str(i) for i in res["ids"]]

    async def search_memory(self, vector: Sequence[float], k: int) -> list[Document]:
        """The ``k`` learned passages closest to the query, best first (none when empty)."""
        if k <= 0:
            return []
        coll = await self._call(self._mem, "cannot open")
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
