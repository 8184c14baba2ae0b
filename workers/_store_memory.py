"""Answer memory: a worker store's learned passages, in a collection of their own.

Learned passages (:mod:`tandem.workers.memory`) live beside the curated collection
(``tandem-<worker>-memory``), so re-ingestion never touches them and forgetting never touches
the corpus. The collection records the embedding model that filled it; vectors of two models
never mix (the learning store, their source of truth, adds the kept records again).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

from tandem.workers.memory import MEMORY_EMBED_KEY

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from tandem.workers.backends import Backend
    from tandem.workers.embedding import TandemEmbeddingFunction
    from tandem.workers.errors import RunError

__all__ = ["AnswerMemory"]


class AnswerMemory:
    """The answer-memory half of :class:`~tandem.workers.store.WorkerStore` (a mixin)."""

    if TYPE_CHECKING:  # provided by WorkerStore
        _client: ClientAPI
        embedder: Backend
        collection_name: str

        def _ef(self) -> TandemEmbeddingFunction: ...
        def _error(self, what: str, exc: BaseException) -> RunError: ...
        async def _call(self, fn: Callable[[], Any], what: str) -> Any: ...
        async def _nearest(
            self, open_collection: Callable[[], Any], vector: Sequence[float], k: int
        ) -> list[Document]: ...

    @property
    def memory_collection_name(self) -> str:
        """The answer-memory collection: ``tandem-<worker>-memory``."""
        return f"{self.collection_name}-memory"

    def _open_memory(self) -> Any:
        ef = self._ef()
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
        return await self._nearest(self._mem, vector, k)
