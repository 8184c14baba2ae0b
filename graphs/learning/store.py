"""The learning store: one SQLite file in the data dir (``learning/learning.sqlite``).

Records are the source of truth: a kept record's passage in the specialist's Chroma
store is derived from it (and rebuilt from it when the store is rebuilt). The schema is
versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades an older file in
place, in one transaction, and a file written by a newer tandem is refused, not guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tandem.graphs.learning.records import (
    Candidate,
    LearnedPassage,
    Record,
    RecordStatus,
    normalize_question,
)
from tandem.workers.errors import ConfigError
from tandem.workers.records import Citation

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "LearningStore", "learning_dir"]

MIGRATIONS: list[str] = [
    # v1: learning records, answer-memory status, router-feedback candidates.
    """
    CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        worker TEXT NOT NULL,
        kind TEXT NOT NULL,
        question TEXT NOT NULL,
        question_key TEXT NOT NULL,
        instruction TEXT NOT NULL,
        instruction_redacted TEXT NOT NULL DEFAULT '',
        attempt TEXT NOT NULL DEFAULT '',
        attempt_status TEXT NOT NULL DEFAULT 'ok',
        attempt_confidence REAL,
        p_correct REAL,
        attempt_reason TEXT NOT NULL DEFAULT '',
        answer TEXT NOT NULL,
        answer_redacted TEXT NOT NULL DEFAULT '',
        citations TEXT NOT NULL DEFAULT '[]',
        passages TEXT NOT NULL DEFAULT '[]',
        passages_redacted TEXT NOT NULL DEFAULT '[]',
        route_kind TEXT NOT NULL DEFAULT '',
        route_workers TEXT NOT NULL DEFAULT '[]',
        worker_model TEXT NOT NULL DEFAULT '',
        source_model TEXT NOT NULL DEFAULT '',
        thread_id TEXT,
        sensitivity TEXT NOT NULL DEFAULT 'normal',
        status TEXT NOT NULL DEFAULT 'pending',
        checks TEXT NOT NULL DEFAULT '{}',
        conflict TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX records_worker_status ON records(worker, status);
    CREATE INDEX records_worker_key ON records(worker, question_key);
    CREATE TABLE routing (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,
        question TEXT NOT NULL,
        question_key TEXT NOT NULL,
        expected_workers TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'candidate',
        origin TEXT NOT NULL DEFAULT '',
        record_id INTEGER,
        thread_id TEXT,
        sensitivity TEXT NOT NULL DEFAULT 'normal'
    );
    CREATE INDEX routing_status ON routing(status);
    """,
]
"""Schema migrations in order; migration ``n`` takes a file from version ``n`` to ``n + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)

_JSON_COLUMNS = (
    "citations",
    "passages",
    "passages_redacted",
    "route_workers",
    "checks",
)
_COLUMNS = (
    "created",
    "worker",
    "kind",
    "question",
    "question_key",
    "instruction",
    "instruction_redacted",
    "attempt",
    "attempt_status",
    "attempt_confidence",
    "p_correct",
    "attempt_reason",
    "answer",
    "answer_redacted",
    "citations",
    "passages",
    "passages_redacted",
    "route_kind",
    "route_workers",
    "worker_model",
    "source_model",
    "thread_id",
    "sensitivity",
    "status",
    "checks",
    "conflict",
)


def learning_dir(data_dir: Path) -> Path:
    """Where learning lives: ``<data_dir>/learning``."""
    return Path(data_dir) / "learning"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row_values(record: Record) -> list[Any]:
    data = record.model_dump(mode="json")
    data["question_key"] = normalize_question(record.instruction or record.question)
    data["created"] = record.created or _now()
    out: list[Any] = []
    for col in _COLUMNS:
        value = data.get(col)
        out.append(json.dumps(value, ensure_ascii=False) if col in _JSON_COLUMNS else value)
    return out


def _record(row: sqlite3.Row) -> Record:
    data: dict[str, Any] = dict(row)
    data.pop("question_key", None)
    for col in _JSON_COLUMNS:
        data[col] = json.loads(data[col])
    # Rows were validated on the way in: construct without validating again (an export of
    # ten thousand records reads eighty thousand passages).
    data["citations"] = [Citation.model_construct(**c) for c in data["citations"]]
    data["passages"] = [LearnedPassage.model_construct(**p) for p in data["passages"]]
    data["passages_redacted"] = [
        LearnedPassage.model_construct(**p) for p in data["passages_redacted"]
    ]
    return Record.model_construct(**data)


class LearningStore:
    """Learning records in one SQLite file (WAL; safe for several processes).

    Args:
        path: The database file (created with its folder on first write).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._migrate()
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def _migrate(self) -> None:
        with self._lock:
            if self._ready:
                return
            try:
                # Owner only: records hold the user's questions and answers (a local_only
                # worker's too), and routing.jsonl lives beside them.
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"cannot open the learning store {self.path}: {exc}",
                    hint="check that the data dir is writable, or set [learning] record = false",
                ) from exc
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    conn.execute("ROLLBACK")
                    raise ConfigError(
                        f"the learning store {self.path} has schema version {version}; this "
                        f"tandem knows versions up to {SCHEMA_VERSION}",
                        hint="upgrade tandem, or move the file aside",
                    )
                for n in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[n].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {n + 1}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise ConfigError(
                    f"cannot prepare the learning store {self.path}: {exc}",
                    hint="move the file aside to start a new one",
                ) from exc
            finally:
                conn.close()
            self._ready = True

    @property
    def version(self) -> int:
        """The file's schema version."""
        with self._db() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # -- writing -------------------------------------------------------------------
    def add(self, record: Record) -> Record:
        """Insert ``record``; returns it with its id and time."""
        values = _row_values(record)
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._db() as db:
            cur = db.execute(
                f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({marks})", values
            )
            rid = int(cur.lastrowid or 0)
        return record.model_copy(update={"id": rid, "created": values[0]})

    def add_many(self, records: Iterable[Record]) -> int:
        """Insert many records in one transaction (imports, benchmarks); returns the count."""
        marks = ", ".join("?" for _ in _COLUMNS)
        rows = [_row_values(r) for r in records]
        with self._db() as db:
            db.executemany(f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({marks})", rows)
        return len(rows)

    def set_status(self, ids: Sequence[int], status: RecordStatus) -> int:
        """Set the memory status of ``ids``; returns how many rows changed."""
        return self._update(ids, "status", status)

    def _update(self, ids: Sequence[int], column: str, value: Any) -> int:
        if not ids:
            return 0
        with self._db() as db:
            marks = ", ".join("?" for _ in ids)
            cur = db.execute(
                f"UPDATE records SET {column} = ? WHERE id IN ({marks})", [value, *ids]
            )
            return int(cur.rowcount)

    def delete(self, ids: Sequence[int]) -> int:
        """Remove records for good, with the routing examples they produced (``forget``)."""
        if not ids:
            return 0
        with self._db() as db:
            marks = ", ".join("?" for _ in ids)
            db.execute(f"DELETE FROM routing WHERE record_id IN ({marks})", list(ids))
            return int(db.execute(f"DELETE FROM records WHERE id IN ({marks})", list(ids)).rowcount)

    def delete_worker(self, worker: str) -> list[int]:
        """Remove every record of ``worker`` (and its routing examples); returns their ids."""
        with self._db() as db:
            ids = [
                int(r[0]) for r in db.execute("SELECT id FROM records WHERE worker = ?", [worker])
            ]
        self.delete(ids)
        with self._db() as db:
            db.execute("DELETE FROM routing WHERE expected_workers = ?", [json.dumps([worker])])
        return ids

    # -- reading ---------------------------------------------------------------------
    def get(self, rid: int) -> Record | None:
        """One record, or ``None``."""
        with self._db() as db:
            row = db.execute("SELECT * FROM records WHERE id = ?", [rid]).fetchone()
        return _record(row) if row else None

    def records(
        self,
        *,
        worker: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Record]:
        """Records, filtered by worker and/or status."""
        return list(
            self.iter_records(worker=worker, status=status, limit=limit, newest_first=newest_first)
        )

    def iter_records(
        self,
        *,
        worker: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        batch: int = 1000,
    ) -> Iterator[Record]:
        """Stream records (exports of many thousands stay in bounded memory)."""
        where, args = [], []
        if worker is not None:
            where.append("worker = ?")
            args.append(worker)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM records" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._db() as db:
            cur = db.execute(sql, args)
            while rows := cur.fetchmany(batch):
                yield from (_record(r) for r in rows)

    def same_question(self, worker: str, text: str, *, status: str = "kept") -> list[Record]:
        """Records of ``worker`` for the same (normalised) question."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM records WHERE worker = ? AND question_key = ? AND status = ?",
                [worker, normalize_question(text), status],
            ).fetchall()
        return [_record(r) for r in rows]

    def kept_ids(self, worker: str) -> list[int]:
        """Ids of ``worker``'s kept records (its answer memory)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id FROM records WHERE worker = ? AND status = 'kept' ORDER BY id", [worker]
            ).fetchall()
        return [int(r[0]) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per worker: records by memory status, plus routing candidates and approved ones."""
        out: dict[str, dict[str, int]] = {}
        with self._db() as db:
            for worker, status, n in db.execute(
                "SELECT worker, status, COUNT(*) FROM records GROUP BY worker, status"
            ):
                out.setdefault(worker, {})[status] = int(n)
        return out

    # -- router feedback ---------------------------------------------------------------
    def add_candidate(
        self,
        example: Candidate,
        *,
        origin: str,
        thread_id: str | None = None,
        record_id: int | None = None,
        sensitivity: str = "normal",
    ) -> int:
        """Store a candidate routing example; returns its id."""
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO routing (created, question, question_key, expected_workers, origin, "
                "record_id, thread_id, sensitivity) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    _now(),
                    example.question,
                    normalize_question(example.question),
                    json.dumps(example.expected_workers),
                    origin,
                    record_id,
                    thread_id,
                    sensitivity,
                ],
            )
            return int(cur.lastrowid or 0)

    def set_candidates(self, ids: Sequence[int], status: str) -> int:
        """Approve (``approved``) or reject (``rejected``) candidate routing examples."""
        if not ids:
            return 0
        with self._db() as db:
            marks = ", ".join("?" for _ in ids)
            cur = db.execute(f"UPDATE routing SET status = ? WHERE id IN ({marks})", [status, *ids])
            return int(cur.rowcount)

    def routing_examples(self, *, status: str = "approved") -> list[Candidate]:
        """Routing examples in ``tandem eval`` format, one per distinct question (newest wins)."""
        seen: dict[str, Candidate] = {}
        with self._db() as db:
            for key, question, workers in db.execute(
                "SELECT question_key, question, expected_workers FROM routing WHERE status = ? "
                "ORDER BY id",
                [status],
            ):
                seen.pop(key, None)
                seen[key] = Candidate(question=question, expected_workers=json.loads(workers))
        return list(seen.values())

    def candidates(self, limit: int = 50) -> list[tuple[int, str, list[str], str]]:
        """The newest routing examples: ``(id, status, expected_workers, question)``."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, status, expected_workers, question FROM routing ORDER BY id DESC "
                "LIMIT ?",
                [limit],
            ).fetchall()
        return [(int(i), str(st), list(json.loads(w)), str(q)) for i, st, w, q in rows]

    def routing_counts(self) -> dict[str, int]:
        """Routing examples by status."""
        with self._db() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM routing GROUP BY status").fetchall()
        return {str(s): int(n) for s, n in rows}

    def delete_candidates(self, ids: Sequence[int]) -> int:
        """Remove routing examples for good."""
        if not ids:
            return 0
        with self._db() as db:
            marks = ", ".join("?" for _ in ids)
            return int(db.execute(f"DELETE FROM routing WHERE id IN ({marks})", list(ids)).rowcount)
