"""The embedded store for one instance: SQLite, run off the event loop by aiosqlite."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, TypeVar

import aiosqlite

from bot.store.auto import SqliteAuto
from bot.store.base import (
    LEASE_SECONDS,
    Adopted,
    AuditEntry,
    Claim,
    Queued,
    Store,
    StoreUnavailable,
    new_owner_id,
)
from bot.store.blobs import SqliteBlobs
from bot.store.executors import NoExecutors
from bot.store.group import GroupCommit
from bot.store.reports import SqliteReports
from bot.store.sqlite_schema import MIGRATIONS

T = TypeVar("T")


def _queued(row: Any) -> Queued:
    return Queued(id=row["id"], kind=row["kind"], payload=Queued.decode(row["payload"]),
                  lane=row["lane"] if "lane" in row.keys() else "", attempts=row["attempts"],
                  not_before=row["not_before"] if "not_before" in row.keys() else 0.0, created=row["created"],
                  after=Queued.decode(row["after"]) if "after" in row.keys() and row["after"] else None,
                  news=bool(row["news"]) if "news" in row.keys() else False,
                  result=row["result"] if "result" in row.keys() else None)


def _writable_folder(path: str) -> str | None:
    """None when the file's folder exists and may be written to; else the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(folder) and os.access(folder, os.W_OK) else folder


# The database's own clock when a statement runs, in seconds since the epoch (this host's clock: the app's too).
SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


class SqliteStore(SqliteAuto, SqliteReports, SqliteBlobs, NoExecutors, Store):
    shared = False

    def __init__(self, path: str, owner: str | None = None, *, lease: float = LEASE_SECONDS):
        self.path = path
        self.owner = owner or new_owner_id()
        self.lease = lease
        self._db: aiosqlite.Connection | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self._together: GroupCommit[Callable[[sqlite3.Connection], Any], tuple[bool, Any]] = \
            GroupCommit(self._run_together)

    async def open(self) -> None:
        folder = await asyncio.to_thread(_writable_folder, self.path)
        if folder is not None:
            # Said before aiosqlite starts its thread: a connect that fails there can outlive the event loop.
            raise StoreUnavailable(f"cannot open the SQLite file {self.path!r}: its folder {folder!r} does not exist "
                                   "or this user may not write there. Check that its folder exists and that this "
                                   "user may write there.")
        try:
            await self._open()
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open the SQLite file {self.path!r} ({exc}). Check that its folder "
                                   "exists and that this user may write there.") from None

    async def _open(self) -> None:
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the connection in aiosqlite's thread, committed, atomic (a failure takes back what it wrote).

        Operations asked for together run in one trip and one transaction, each inside a savepoint of its own, so
        one failing takes back only its own writes: a commit and a hand-over between threads per operation were
        most of the SQLite thread's time in a burst of 200 commands (about 26 operations each), and every ack and
        retry waited behind them. Coroutines' operations keep their order."""
        ok, value = await self._together(work)
        if not ok:
            raise value
        return value

    async def _run_together(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        return await self.db._execute(self._in_one_transaction, works)

    def _in_one_transaction(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        conn = self.db._conn
        results: list[tuple[bool, Any]] = []
        try:
            if conn.in_transaction:  # left open by an interrupted batch: it was never committed, nor answered as such
                conn.rollback()
            conn.execute("BEGIN")
            for work in works:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, work(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    results.append((False, exc))
                conn.execute("RELEASE op")
            conn.commit()
        except Exception as exc:  # the transaction itself failed (disk, lock): nothing of it was written
            if conn.in_transaction:
                conn.rollback()
            return [(False, exc)] * len(works)
        return results

    async def _write(self, sql: str, params: Any, many: bool = False) -> None:
        await self._call(lambda conn: conn.executemany(sql, params) if many else conn.execute(sql, params))

    async def _rows(self, sql: str, params: Any = (), *, commit: bool = False) -> list[Any]:
        """The statement's rows; what it wrote is committed (`commit` is there for the PostgreSQL twin's callers)."""
        return (await self._script([(sql, params)]))[0]

    async def _script(self, statements: list[tuple[str, Any]]) -> list[list[Any]]:
        """Several statements as one transaction; returns each one's rows."""
        return await self._call(lambda conn: [conn.execute(sql, params).fetchall() for sql, params in statements])

    async def prune(self, before: float) -> None:
        for sql in ("DELETE FROM alerts WHERE updated < ?", "DELETE FROM storms WHERE updated < ?",
                    "DELETE FROM bulk_runs WHERE updated < ?", "DELETE FROM bulk_jobs WHERE updated < ?",
                    "DELETE FROM failures WHERE seen_at < ?",
                    "DELETE FROM retry_ends WHERE at < ?",
                    "DELETE FROM outbox WHERE state NOT IN ('queued', 'sending') AND created < ?",
                    "DELETE FROM inbox WHERE done = 1 AND created < ?"):
            await self._write(sql, (before,))
        await self._prune_auto(before)

    # ---------------------------------------------------------------- between replicas (here: one process)

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[name] -= 1
            if not self._users[name]:  # keep memory flat: no lock outlives its users
                del self._users[name], self._locks[name]

    async def publish(self, topic: str, message: str) -> None:
        for callback in self._subscribers.get(topic, []):
            callback(message)

    def subscribe(self, topic: str, callback: Callable[[str], None]) -> None:
        self._subscribers.setdefault(topic, []).append(callback)

    # ---------------------------------------------------------------- leases

    async def renew(self, now: float) -> None:
        until = now + self.lease
        # Done and sent rows need no lease: nobody adopts them (and there are a week's worth of them).
        await self._script([(f"UPDATE {table} SET lease_until = ? WHERE owner = ?{only}", (until, self.owner))
                            for table, only in (("claims", ""), ("follows", ""), ("inbox", " AND done = 0"),
                                                ("outbox", " AND state IN ('queued', 'sending')"))])

    async def adopt(self, now: float, *, everything: bool = False) -> Adopted:
        until = now + self.lease
        cutoff = float("inf") if everything else now
        others = "owner != ? AND lease_until < ?"
        statements: list[tuple[str, Any]] = [
            (f"UPDATE follows SET owner = ?, lease_until = ? WHERE {others} RETURNING data",
             (self.owner, until, self.owner, cutoff)),
            (f"UPDATE inbox SET owner = ?, lease_until = ? WHERE done = 0 AND {others} RETURNING *",
             (self.owner, until, self.owner, cutoff)),
            (f"UPDATE outbox SET owner = ?, lease_until = ?, state = 'queued' WHERE state IN ('queued', 'sending')"
             f" AND {others} RETURNING *", (self.owner, until, self.owner, cutoff)),
            # A claim moves with its followed job; other claims of a dead owner simply run out.
            ("UPDATE claims SET owner = ?, lease_until = ? WHERE owner != ? AND EXISTS (SELECT 1 FROM follows f"
             " WHERE f.endpoint = claims.endpoint AND f.job = claims.job AND f.owner = ?)",
             (self.owner, until, self.owner, self.owner)),
        ]
        if everything:
            statements.append(("DELETE FROM claims WHERE owner != ?", (self.owner,)))
        follows, inbox, outbox, *_ = await self._script(statements)
        return Adopted(outbox=sorted((_queued(r) for r in outbox), key=lambda q: q.id),
                       inbox=sorted((_queued(r) for r in inbox), key=lambda q: q.id),
                       follows=[r["data"] for r in follows])

    async def hand_over(self) -> None:
        await self._script([(f"UPDATE {table} SET lease_until = 0 WHERE owner = ?", (self.owner,))
                            for table in ("claims", "follows", "inbox", "outbox")])

    # ---------------------------------------------------------------- claims

    async def claim(self, endpoint: str, job: str, user: str, now: float) -> Claim | None:
        taken = await self._rows(
            "INSERT INTO claims (endpoint, job, user, at, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (endpoint, job) DO UPDATE SET user = excluded.user, at = excluded.at,"
            " owner = excluded.owner, lease_until = excluded.lease_until WHERE claims.lease_until < ?"
            # A followed job stays claimed even between its owner's death and another replica's adoption.
            " AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.endpoint = claims.endpoint AND f.job = claims.job)"
            " RETURNING owner",
            (endpoint, job, user, now, self.owner, now + self.lease, now), commit=True)
        if taken:
            return None
        existing = await self.claimed(endpoint, job)
        return existing or Claim(user, now, self.owner)

    async def release(self, endpoint: str, job: str, at: float | None = None) -> None:
        if at is None:
            await self._write("DELETE FROM claims WHERE endpoint = ? AND job = ?", (endpoint, job))
        else:
            await self._write("DELETE FROM claims WHERE endpoint = ? AND job = ? AND owner = ? AND at = ?",
                              (endpoint, job, self.owner, at))

    async def claimed(self, endpoint: str, job: str) -> Claim | None:
        rows = await self._rows("SELECT user, at, owner, lease_until FROM claims WHERE endpoint = ? AND job = ?",
                                (endpoint, job))
        return Claim(rows[0]["user"], rows[0]["at"], rows[0]["owner"], rows[0]["lease_until"]) if rows else None

    # ---------------------------------------------------------------- inbox

    async def accept(self, kind: str, payload: dict[str, Any], now: float) -> int:
        work_id = await self._accept(kind, payload, now, None)
        assert work_id is not None  # never late without a deadline
        return work_id

    async def accept_by(self, kind: str, payload: dict[str, Any], now: float, by: float) -> int | None:
        return await self._accept(kind, payload, now, by)

    async def _accept(self, kind: str, payload: dict[str, Any], now: float, by: float | None) -> int | None:
        rows = await self._rows(
            "INSERT INTO inbox (kind, payload, created, owner, lease_until, done) VALUES (?, ?, ?, ?, ?,"
            f" CASE WHEN ? IS NOT NULL AND {SQLITE_NOW} > ? THEN 1 ELSE 0 END) RETURNING id, done",
            (kind, json.dumps(payload), now, self.owner, now + self.lease, by, by))
        return None if rows[0]["done"] else int(rows[0]["id"])

    async def done(self, work_id: int) -> None:
        await self._write("UPDATE inbox SET done = 1 WHERE id = ?", (work_id,))

    async def open_work(self, kind: str) -> list[Queued]:
        return [_queued(r) for r in await self._rows("SELECT * FROM inbox WHERE done = 0 AND kind = ? ORDER BY id",
                                                     (kind,))]

    # ---------------------------------------------------------------- outbox

    async def enqueue(self, kind: str, lane: str, payload: dict[str, Any], now: float, *,
                      coalesce: str | None = None, after: dict[str, Any] | None = None,
                      once: str | None = None, news: bool = False, turn: float | None = None) -> tuple[int, bool]:
        text = json.dumps(payload)
        created = now if turn is None else min(turn, now)

        def put(conn: sqlite3.Connection) -> tuple[int, bool]:  # one operation: two enqueues must not both insert
            if coalesce is not None:
                merged = conn.execute("UPDATE outbox SET payload = ? WHERE coalesce_key = ? AND state = 'queued'"
                                      " RETURNING id", (text, coalesce)).fetchall()
                if merged:
                    return int(merged[0]["id"]), True
            rows = conn.execute(
                "INSERT INTO outbox (kind, lane, payload, after, coalesce_key, once_key, created, owner, lease_until,"
                " news) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                (kind, lane, text, json.dumps(after) if after else None, coalesce, once, created, self.owner,
                 now + self.lease, int(news))).fetchall()
            if not rows:  # queued under `once` before
                rows = conn.execute("SELECT id FROM outbox WHERE once_key = ?", (once,)).fetchall()
                return int(rows[0]["id"]), True
            return int(rows[0]["id"]), False

        return await self._call(put)

    async def said(self, once: str) -> tuple[str, str | None] | None:
        rows = await self._rows("SELECT state, result FROM outbox WHERE once_key = ?", (once,))
        return (str(rows[0]["state"]), rows[0]["result"]) if rows else None

    async def take(self, message_id: int) -> Queued | None:
        rows = await self._rows("UPDATE outbox SET state = 'sending' WHERE id = ? AND state = 'queued' AND owner = ?"
                                " RETURNING *", (message_id, self.owner), commit=True)
        return _queued(rows[0]) if rows else None

    async def delivered(self, message_id: int, result: str | None) -> None:
        await self._write("UPDATE outbox SET result = ? WHERE id = ? AND state = 'sending'", (result, message_id))

    async def sent(self, message_id: int, result: str | None) -> None:
        await self._write("UPDATE outbox SET state = 'sent', result = ? WHERE id = ?", (result, message_id))

    async def later(self, message_id: int, not_before: float, attempts: int) -> None:
        await self._write("UPDATE outbox SET state = 'queued', not_before = ?, attempts = ? WHERE id = ?"
                          " AND owner = ? AND state = 'sending'", (not_before, attempts, message_id, self.owner))

    async def withdraw(self, message_id: int) -> bool:
        rows = await self._rows("UPDATE outbox SET state = 'withdrawn' WHERE id = ? AND state = 'queued'"
                                " RETURNING id", (message_id,), commit=True)
        return bool(rows)

    async def queued(self) -> list[Queued]:
        rows = await self._rows("SELECT * FROM outbox WHERE owner = ? AND state IN ('queued', 'sending')"
                                " ORDER BY id", (self.owner,))
        return [_queued(r) for r in rows]

    # ---------------------------------------------------------------- audit

    async def audit(self, entry: AuditEntry) -> None:
        row = asdict(entry)
        row["at"] = entry.at or time.time()
        row["called"] = int(entry.called)
        await self._write(
            "INSERT INTO audit (at, user, channel, endpoint, job, source, outcome, called, http_status, job_status,"
            " detail) VALUES (:at, :user, :channel, :endpoint, :job, :source, :outcome, :called, :http_status,"
            " :job_status, :detail)", row)

    async def history(self, limit: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._rows("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))]

    async def retries_since(self, endpoint: str, job: str, since: float) -> int:
        rows = await self._rows("SELECT COUNT(*) FROM audit WHERE endpoint = ? AND job = ? AND called = 1 AND at >= ?",
                                (endpoint, job, since))
        return int(rows[0][0]) if rows else 0

    async def asked_since(self, endpoint: str, job: str, user: str, since: float) -> bool:
        return bool(await self._rows("SELECT 1 FROM audit WHERE endpoint = ? AND job = ? AND at >= ? AND user = ?"
                                     " LIMIT 1", (endpoint, job, since, user)))

    async def retry_times(self, endpoint: str, job: str, since: float) -> list[float]:
        rows = await self._rows("SELECT at FROM audit WHERE endpoint = ? AND job = ? AND called = 1 AND at >= ?"
                                " ORDER BY at", (endpoint, job, since))
        return [float(row[0]) for row in rows]

    # ---------------------------------------------------------------- follows (alerts, storms, bulk runs: blobs.py)

    async def save_follow(self, endpoint: str, job: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO follows (endpoint, job, data, owner, lease_until)"
                          " VALUES (?, ?, ?, ?, ?)", (endpoint, job, data, self.owner, time.time() + self.lease))

    async def drop_follow(self, endpoint: str, job: str) -> None:
        await self._write("DELETE FROM follows WHERE endpoint = ? AND job = ?", (endpoint, job))

    async def follows(self) -> list[str]:
        return [row[0] for row in await self._rows("SELECT data FROM follows WHERE owner = ?", (self.owner,))]

    # A storm's id is `endpoint/<start in ms>`: one endpoint can have several grouped alerts over a day.
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
        rows = await self._rows(
            "SELECT job, status, error, seen_at FROM failures WHERE endpoint = ? AND seen_at >= ? AND retried = 0"
            # A retry RunPod took since the failure was seen (by any route: button, command, bulk) counts too.
            " AND NOT EXISTS (SELECT 1 FROM audit WHERE audit.endpoint = failures.endpoint AND audit.job = failures.job"
            " AND audit.outcome = 'requeued' AND audit.at >= failures.seen_at)"
            " ORDER BY seen_at", (endpoint, since))
        return [dict(row) for row in rows]
