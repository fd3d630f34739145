"""What the app must remember across restarts, in SQLite (aiosqlite runs it off the event loop)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, user TEXT NOT NULL, channel TEXT NOT NULL,
    endpoint TEXT NOT NULL, job TEXT NOT NULL, source TEXT NOT NULL,
    outcome TEXT NOT NULL, called INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER, job_status TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_job ON audit (endpoint, job, at);
CREATE TABLE IF NOT EXISTS alerts (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, data TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (endpoint, job)
);
CREATE TABLE IF NOT EXISTS follows (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (endpoint, job)
);
CREATE TABLE IF NOT EXISTS failures (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    seen_at REAL NOT NULL, retried INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, job)
);
CREATE INDEX IF NOT EXISTS failures_recent ON failures (endpoint, seen_at);
CREATE TABLE IF NOT EXISTS storms (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS storms_recent ON storms (updated);
CREATE TABLE IF NOT EXISTS bulk_runs (
    id TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class AuditEntry:
    user: str
    channel: str
    endpoint: str
    job: str
    source: str       # command | button | bulk | retry_all
    outcome: str      # requeued, not_found, …, or refused:<reason>
    called: bool = False  # a RunPod retry call was made (counts toward the budget)
    http_status: int | None = None
    job_status: str | None = None
    detail: str | None = None
    at: float = 0.0


class Store:
    def __init__(self, path: str):
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _write(self, sql: str, params: tuple[Any, ...] | list[tuple[Any, ...]], many: bool = False) -> None:
        if many:
            await self.db.executemany(sql, params)
        else:
            await self.db.execute(sql, params)
        await self.db.commit()

    async def prune(self, before: float) -> None:
        """Forget alerts, storms and seen failures last touched before `before`: RunPod forgot those jobs long
        ago. The audit trail is kept: it is the team's record."""
        for sql in ("DELETE FROM alerts WHERE updated < ?", "DELETE FROM storms WHERE updated < ?",
                    "DELETE FROM bulk_runs WHERE updated < ?", "DELETE FROM failures WHERE seen_at < ?"):
            await self.db.execute(sql, (before,))
        await self.db.commit()

    # ---------------------------------------------------------------- audit

    async def audit(self, entry: AuditEntry) -> None:
        row = asdict(entry)
        row["at"] = entry.at or time.time()
        row["called"] = int(entry.called)
        await self._write(
            "INSERT INTO audit (at, user, channel, endpoint, job, source, outcome, called, http_status, job_status,"
            " detail) VALUES (:at, :user, :channel, :endpoint, :job, :source, :outcome, :called, :http_status,"
            " :job_status, :detail)", row)  # type: ignore[arg-type]

    async def history(self, limit: int) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)) as cursor:
            return [dict(row) for row in await cursor.fetchall()]

    async def retries_since(self, endpoint: str, job: str, since: float) -> int:
        async with self.db.execute(
            "SELECT COUNT(*) FROM audit WHERE endpoint = ? AND job = ? AND called = 1 AND at >= ?",
            (endpoint, job, since),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- alerts, follows, storms (JSON blobs)

    async def save_alert(self, endpoint: str, job: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO alerts (endpoint, job, data, updated) VALUES (?, ?, ?, ?)",
                          (endpoint, job, data, time.time()))

    async def load_alert(self, endpoint: str, job: str) -> str | None:
        async with self.db.execute("SELECT data FROM alerts WHERE endpoint = ? AND job = ?",
                                   (endpoint, job)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def recent_alerts(self, since: float) -> list[str]:
        async with self.db.execute("SELECT data FROM alerts WHERE updated >= ?", (since,)) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def save_follow(self, endpoint: str, job: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO follows (endpoint, job, data) VALUES (?, ?, ?)",
                          (endpoint, job, data))

    async def drop_follow(self, endpoint: str, job: str) -> None:
        await self._write("DELETE FROM follows WHERE endpoint = ? AND job = ?", (endpoint, job))

    async def follows(self) -> list[str]:
        async with self.db.execute("SELECT data FROM follows") as cursor:
            return [row[0] for row in await cursor.fetchall()]

    # A storm's id is `endpoint/<start in ms>`: one endpoint can have several grouped alerts over a day.
    async def save_storm(self, storm_id: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO storms (id, data, updated) VALUES (?, ?, ?)",
                          (storm_id, data, time.time()))

    async def load_storm(self, storm_id: str) -> str | None:
        async with self.db.execute("SELECT data FROM storms WHERE id = ?", (storm_id,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def recent_storms(self, since: float) -> list[str]:
        async with self.db.execute("SELECT data FROM storms WHERE updated >= ? ORDER BY updated",
                                   (since,)) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def save_bulk(self, run_id: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO bulk_runs (id, data, updated) VALUES (?, ?, ?)",
                          (run_id, data, time.time()))

    async def recent_bulks(self, since: float) -> list[str]:
        async with self.db.execute("SELECT data FROM bulk_runs WHERE updated >= ?", (since,)) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    # ---------------------------------------------------------------- failures seen (for `failed`)

    async def record_failure(self, endpoint: str, job: str, status: str, error: str | None, at: float) -> None:
        await self._write(
            "INSERT INTO failures (endpoint, job, status, error, seen_at, retried) VALUES (?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (endpoint, job) DO UPDATE SET status = excluded.status, error = excluded.error,"
            " seen_at = excluded.seen_at, retried = 0",
            (endpoint, job, status, error, at))

    async def mark_retried(self, endpoint: str, jobs: list[str]) -> None:
        await self._write("UPDATE failures SET retried = 1 WHERE endpoint = ? AND job = ?",
                          [(endpoint, job) for job in jobs], many=True)

    async def recent_failures(self, endpoint: str, since: float) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT job, status, error, seen_at FROM failures WHERE endpoint = ? AND seen_at >= ? AND retried = 0"
            # A retry RunPod took since the failure was seen (by any route: button, command, bulk) counts too.
            " AND NOT EXISTS (SELECT 1 FROM audit WHERE audit.endpoint = failures.endpoint AND audit.job = failures.job"
            " AND audit.outcome = 'requeued' AND audit.at >= failures.seen_at)"
            " ORDER BY seen_at", (endpoint, since),
        ) as cursor:
            return [dict(row) for row in await cursor.fetchall()]
