"""The durable half of the queue: jobs, stream chunks and counters in one SQLite file (WAL).

Every method is a short synchronous transaction guarded by one lock; the queue calls them
from the event loop. WAL with ``synchronous=NORMAL`` survives a killed process: only a power
loss can drop the last transactions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdworker.core.jobs import JobView, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    webhook TEXT,
    policy TEXT NOT NULL DEFAULT '{}',
    sync INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL NOT NULL,
    timeout_at REAL,
    output TEXT,
    error TEXT,
    progress TEXT,
    worker_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS stream (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    chunk TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS stream_job ON stream (job_id, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_JSON_COLUMNS = {"input", "policy", "output", "progress"}


@dataclass
class JobRecord:
    """One row of ``jobs``: everything the queue knows about a job."""

    id: str
    status: Status
    input: dict[str, Any]
    created_at: float
    queued_at: float
    expires_at: float
    webhook: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    sync: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    timeout_at: float | None = None
    output: Any = None
    error: str | None = None
    progress: Any = None
    worker_id: str | None = None
    attempts: int = 0

    def view(self) -> JobView:
        """The job as a client sees it; while running, ``output`` is the latest progress."""
        delay = execution = None
        if self.started_at is not None:
            delay = _ms(self.started_at - self.queued_at)
            if self.finished_at is not None:
                execution = _ms(self.finished_at - self.started_at)
        output = self.progress if self.status is Status.IN_PROGRESS else self.output
        return JobView(
            id=self.id,
            status=self.status,
            input=self.input,
            output=output,
            error=self.error,
            delay_time_ms=delay,
            execution_time_ms=execution,
            created_at=self.created_at,
            extra={"workerId": self.worker_id} if self.worker_id else {},
        )

    def as_task(self) -> dict[str, Any]:
        """The job as the worker loop receives it from job-take."""
        task: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.webhook:
            task["webhook"] = self.webhook
        return task


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class JobStore:
    """SQLite persistence for :class:`JobRecord` rows."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- jobs -----------------------------------------------------------------------------

    def insert(self, job: JobRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, seq, status, input, webhook, policy, sync, created_at,"
                " queued_at, expires_at, attempts)"
                " VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.status.value,
                    json.dumps(job.input),
                    job.webhook,
                    json.dumps(job.policy),
                    int(job.sync),
                    job.created_at,
                    job.queued_at,
                    job.expires_at,
                    job.attempts,
                ),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def select(self, where: str, params: Iterable[Any] = ()) -> list[JobRecord]:
        """Rows matching a trusted ``where`` clause (callers pass constants only)."""
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM jobs WHERE {where}", tuple(params)).fetchall()
        return [_record(r) for r in rows]

    def update(self, job_id: str, *, only_if: Status | None = None, **values: Any) -> bool:
        """Set columns; with ``only_if``, only when the job still has that status."""
        cols = ", ".join(f"{name} = ?" for name in values)
        params = [_encode(name, v) for name, v in values.items()]
        sql = f"UPDATE jobs SET {cols} WHERE id = ?"
        params.append(job_id)
        if only_if is not None:
            sql += " AND status = ?"
            params.append(only_if.value)
        with self._lock:
            return self._db.execute(sql, params).rowcount == 1

    def claim(self, worker_id: str, limit: int, now: float, timeout_s: float) -> list[JobRecord]:
        """Move up to ``limit`` queued jobs, oldest first, to IN_PROGRESS on ``worker_id``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT * FROM jobs WHERE status = ? AND expires_at > ? ORDER BY seq LIMIT ?",
                    (Status.IN_QUEUE.value, now, limit),
                ).fetchall()
                claimed = []
                for row in rows:
                    job = _record(row)
                    timeout = _policy_seconds(job.policy, "executionTimeout", timeout_s)
                    job.status = Status.IN_PROGRESS
                    job.started_at = now
                    job.timeout_at = now + timeout
                    job.worker_id = worker_id
                    job.attempts += 1
                    self._db.execute(
                        "UPDATE jobs SET status = ?, started_at = ?, timeout_at = ?,"
                        " worker_id = ?, attempts = ?, progress = NULL WHERE id = ?",
                        (job.status.value, now, job.timeout_at, worker_id, job.attempts, job.id),
                    )
                    claimed.append(job)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return claimed

    def requeue(self, job_id: str, now: float) -> None:
        """Back to the end of the queue, as a new submission would be (same id)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, seq = (SELECT MAX(seq) + 1 FROM jobs), queued_at = ?,"
                " started_at = NULL, finished_at = NULL, timeout_at = NULL, output = NULL,"
                " error = NULL, progress = NULL, worker_id = NULL WHERE id = ?",
                (Status.IN_QUEUE.value, now, job_id),
            )
            self._db.execute("DELETE FROM stream WHERE job_id = ?", (job_id,))

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._db.execute("DELETE FROM stream WHERE job_id = ?", (job_id,))

    def purge_queued(self) -> list[str]:
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM jobs WHERE status = ?", (Status.IN_QUEUE.value,)
                )
            ]
            self._db.execute("DELETE FROM jobs WHERE status = ?", (Status.IN_QUEUE.value,))
        return ids

    def queue_position(self, job_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM jobs q WHERE q.status = j.status AND q.seq < j.seq)"
                " FROM jobs j WHERE j.id = ? AND j.status = ?",
                (job_id, Status.IN_QUEUE.value),
            ).fetchone()
        return None if row is None else int(row[0])

    def counts(self) -> dict[Status, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {Status(r[0]): int(r[1]) for r in rows}

    def running_workers(self) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT worker_id FROM jobs WHERE status = ?", (Status.IN_PROGRESS.value,)
            ).fetchall()
        return {r[0] for r in rows if r[0]}

    # -- stream chunks ----------------------------------------------------------------------

    def add_chunk(self, job_id: str, chunk: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO stream (job_id, chunk) VALUES (?, ?)", (job_id, json.dumps(chunk))
            )

    def take_chunks(self, job_id: str) -> list[Any]:
        """Chunks not yet handed to a ``/stream`` caller, marking them handed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, chunk FROM stream WHERE job_id = ? AND delivered = 0 ORDER BY seq",
                (job_id,),
            ).fetchall()
            if rows:
                self._db.execute(
                    "UPDATE stream SET delivered = 1 WHERE job_id = ? AND seq <= ?",
                    (job_id, rows[-1][0]),
                )
        return [json.loads(r[1]) for r in rows]

    def all_chunks(self, job_id: str) -> list[Any]:
        with self._lock:
            rows = self._db.execute(
                "SELECT chunk FROM stream WHERE job_id = ? ORDER BY seq", (job_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- counters ---------------------------------------------------------------------------

    def incr(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0


def _policy_seconds(policy: dict[str, Any], key: str, default_s: float) -> float:
    value = policy.get(key)
    return default_s if value is None else float(value) / 1000.0


def _encode(name: str, value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if name in _JSON_COLUMNS:
        return None if value is None else json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _record(row: sqlite3.Row) -> JobRecord:
    data = dict(row)
    data.pop("seq")
    for name in _JSON_COLUMNS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    data["status"] = Status(data["status"])
    data["sync"] = bool(data["sync"])
    data["policy"] = data["policy"] or {}
    return JobRecord(**data)
