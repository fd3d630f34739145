"""The shared store for several replicas: PostgreSQL through an asyncpg pool.

The same tables and the same semantics as SqliteStore. What SQLite gets from being one process, PostgreSQL gets
from row locks (claims, adoption with SKIP LOCKED), advisory locks (migrations, `lock()`, coalescing) and
LISTEN/NOTIFY (`publish`, `subscribe`). Times are the replicas' `time.time()` as DOUBLE PRECISION; JSON is TEXT.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from bot.store.auto import PostgresAuto
from bot.store.base import (
    LEASE_SECONDS,
    Adopted,
    AuditEntry,
    Claim,
    Queued,
    Store,
    StoreUnavailable,
    mask_url,
    new_owner_id,
)
from bot.store.blobs import PostgresBlobs
from bot.store.executors import PostgresExecutors
from bot.store.group import GroupCommit
from bot.store.pg_outbox import PostgresOutbox, _queued
from bot.store.pg_schema import migrate
from bot.store.pg_shared import AdvisoryLocks, Listener, channel_name
from bot.store.reports import PostgresReports

MAX_NOTIFY_BYTES = 8000  # PostgreSQL refuses a NOTIFY payload this long or longer

# "The database can't be reached right now" (down, restarting, a network blip), as opposed to a wrong query.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError, OSError, TimeoutError,
    # A connection whose protocol state a server restart left half-way ("cannot switch to state 12; another
    # operation is in progress"): the outage's doing, not a wrong query. The connection is thrown away (below).
    asyncpg.exceptions._base.InternalClientError)

# The server's clock when a statement runs (not the transaction's start: a statement held up in a freeze counts late).
PG_NOW = "extract(epoch FROM clock_timestamp())::double precision"


def unreachable(exc: BaseException) -> bool:
    # InterfaceError: a closed pool or connection; its DataError subclass (a bad argument) is a bug, not an outage.
    return isinstance(exc, _UNREACHABLE) or (isinstance(exc, asyncpg.InterfaceError)
                                             and not isinstance(exc, ValueError))


class PostgresStore(PostgresAuto, PostgresReports, PostgresBlobs, PostgresExecutors, PostgresOutbox, Store):
    shared = True

    def __init__(self, url: str, owner: str | None = None, *, pool_size: int = 10, timeout: float = 10.0,
                 lock_timeout: float = 120.0, lease: float = LEASE_SECONDS, listen_check: float = 5.0) -> None:
        self.url = url
        self.owner = owner or new_owner_id()
        self.lease = lease
        self.pool_size = max(pool_size, 2)
        self.timeout = timeout            # for a query, and for a free connection from the pool
        self.lock_timeout = lock_timeout  # for another replica to let go of a lock()
        password = urlsplit(url).password or ""
        self._secrets = sorted({s for s in (password, unquote(password)) if s}, key=len, reverse=True)
        self._pool: Any = None
        self._accepts: GroupCommit[tuple[Any, ...], int | None] = GroupCommit(self._accept_all)
        self._clock_offset: float | None = None  # the server's clock minus this replica's (`_measure_clock`)
        # At most half the pool holds lock()s, so whoever holds one always finds a connection for its own work.
        self._advisory = AdvisoryLocks(lambda: self.pool, self._translate, slots=self.pool_size // 2,
                                       acquire_timeout=timeout, wait_timeout=lock_timeout)
        self._listener = Listener(self._connect, check_every=listen_check)
        self._connect_options: dict[str, Any] = {
            "timeout": timeout,
            # The server notices a vanished replica within ~25 s and ends its session (and its advisory locks).
            "server_settings": {"application_name": f"runpod-retry {self.owner}", "tcp_keepalives_idle": "10",
                                "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"},
        }

    # ---------------------------------------------------------------- life

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL at {mask_url(self.url)} is unavailable: {self._describe(exc)}")

    def _translate(self, exc: BaseException) -> BaseException:
        return self._unavailable(exc) if unreachable(exc) else exc

    async def _connect(self) -> Any:
        return await asyncpg.connect(self.url, **self._connect_options)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size,
                                                   max_inactive_connection_lifetime=60, **self._connect_options)
            async with self._pool.acquire(timeout=self.timeout) as conn:
                await migrate(conn, lock_timeout=self.lock_timeout, query_timeout=self.timeout)
            await self._measure_clock()
        except BaseException as exc:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            if not isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError):
                raise
            # From None: the message says it all, and nothing chained can print the password.
            raise StoreUnavailable(f"cannot open the PostgreSQL database {mask_url(self.url)}: "
                                   f"{self._describe(exc)}") from None
        self._listener.start()  # if `subscribe` came before `open`
        if self._listener.has_any():
            await self._listener.ready(self.timeout)

    async def close(self) -> None:
        await self._listener.stop()
        if self._pool is not None:  # kept once closed: using the store then raises StoreUnavailable
            try:
                await asyncio.wait_for(self._pool.close(), self.timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._pool.terminate()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                return bool(await self._fetchval("SELECT 1"))
        except Exception:
            return False

    # ---------------------------------------------------------------- queries

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; outages become StoreUnavailable. A connection that died is not put back in use:
        the pool sees it closed and connects afresh on a later acquire."""
        try:
            async with self.pool.acquire(timeout=self.timeout) as conn:
                try:
                    yield conn
                except asyncpg.exceptions._base.InternalClientError:
                    conn.terminate()  # never handed out again in that state
                    raise
        except Exception as exc:
            if unreachable(exc):
                raise self._unavailable(exc) from exc
            raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._connection() as conn:
            await conn.execute(sql, *args, timeout=self.timeout)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection() as conn:
            return list(await conn.fetch(sql, *args, timeout=self.timeout))

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchval(sql, *args, timeout=self.timeout)

    async def prune(self, before: float) -> None:
        async with self._transaction() as conn:
            for sql in ("DELETE FROM alerts WHERE updated < $1", "DELETE FROM storms WHERE updated < $1",
                        "DELETE FROM bulk_runs WHERE updated < $1", "DELETE FROM bulk_jobs WHERE updated < $1",
                        "DELETE FROM failures WHERE seen_at < $1",
                        "DELETE FROM retry_ends WHERE at < $1",
                        "DELETE FROM outbox WHERE state NOT IN ('queued', 'sending') AND created < $1",
                        "DELETE FROM inbox WHERE done = 1 AND created < $1"):
                await conn.execute(sql, before, timeout=self.timeout)
        await self._prune_auto(before)

    # ---------------------------------------------------------------- between replicas

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._advisory.hold(name)

    async def publish(self, topic: str, message: str) -> None:
        if len(message.encode()) >= MAX_NOTIFY_BYTES:
            raise ValueError(f"a message for {topic!r} must be under {MAX_NOTIFY_BYTES} bytes (NOTIFY's limit): "
                             "publish an id and keep the rest in a table")
        channel = channel_name(topic)
        if self._listener.has(channel):  # our own subscription must be listening before our message goes out
            await self._listener.ready(self.timeout)
        await self._execute("SELECT pg_notify($1, $2)", channel, message)

    def subscribe(self, topic: str, callback: Callable[[str], None]) -> None:
        self._listener.add(channel_name(topic), callback)
        if self._pool is not None:
            self._listener.start()

    async def listening(self, within: float = 10.0) -> bool:
        """Wait until every `subscribe` so far is listening (PostgreSQL only: `subscribe` can't wait itself)."""
        return await self._listener.ready(within)

    # ---------------------------------------------------------------- leases

    async def renew(self, now: float) -> None:
        until = now + self.lease
        # One statement at a time, not one transaction: holding these rows while waiting for others' could deadlock
        # with an `adopt` elsewhere. Done and sent rows need no lease. Claims last: cut off in between (a kill -9),
        # a claim must not outlast the record it guards, or whoever adopts the record finds the job still claimed.
        for sql in ("UPDATE follows SET lease_until = $1 WHERE owner = $2",
                    "UPDATE inbox SET lease_until = $1 WHERE owner = $2 AND done = 0",
                    "UPDATE outbox SET lease_until = $1 WHERE owner = $2 AND state IN ('queued', 'sending')",
                    "UPDATE claims SET lease_until = $1 WHERE owner = $2"):
            await self._execute(sql, until, self.owner)
        await self._measure_clock()  # clocks drift: kept current at every renewal

    async def adopt(self, now: float, *, everything: bool = False) -> Adopted:
        until = now + self.lease
        cutoff = math.inf if everything else now
        args = (self.owner, until, cutoff)
        for attempt in range(3):
            try:
                async with self._transaction() as conn:
                    # SKIP LOCKED: a row another replica is adopting right now is theirs, never both's.
                    follows = await conn.fetch(
                        "UPDATE follows SET owner = $1, lease_until = $2 WHERE (endpoint, job) IN (SELECT endpoint,"
                        " job FROM follows WHERE owner != $1 AND lease_until < $3 FOR UPDATE SKIP LOCKED)"
                        " RETURNING data", *args, timeout=self.timeout)
                    inbox = await conn.fetch(
                        "UPDATE inbox SET owner = $1, lease_until = $2 WHERE id IN (SELECT id FROM inbox"
                        " WHERE done = 0 AND owner != $1 AND lease_until < $3 FOR UPDATE SKIP LOCKED) RETURNING *",
                        *args, timeout=self.timeout)
                    outbox = await conn.fetch(
                        "UPDATE outbox SET owner = $1, lease_until = $2, state = 'queued' WHERE id IN (SELECT id"
                        " FROM outbox WHERE state IN ('queued', 'sending') AND owner != $1 AND lease_until < $3"
                        " FOR UPDATE SKIP LOCKED) RETURNING *", *args, timeout=self.timeout)
                    # A claim moves with its followed job; other claims of a dead owner simply run out.
                    await conn.execute(
                        "UPDATE claims SET owner = $1, lease_until = $2 WHERE claims.owner != $1 AND EXISTS"
                        " (SELECT 1 FROM follows f WHERE f.endpoint = claims.endpoint AND f.job = claims.job"
                        " AND f.owner = $1)",
                        self.owner, until, timeout=self.timeout)
                    if everything:
                        await conn.execute("DELETE FROM claims WHERE owner != $1", self.owner, timeout=self.timeout)
                break
            except asyncpg.DeadlockDetectedError:  # rolled back whole: nothing was adopted, so try again
                if attempt == 2:
                    raise
        return Adopted(outbox=sorted((_queued(r) for r in outbox), key=lambda q: q.id),
                       inbox=sorted((_queued(r) for r in inbox), key=lambda q: q.id),
                       follows=[r["data"] for r in follows])

    async def hand_over(self) -> None:
        async with self._transaction() as conn:
            for table in ("claims", "follows", "inbox", "outbox"):
                await conn.execute(f"UPDATE {table} SET lease_until = 0 WHERE owner = $1", self.owner,
                                   timeout=self.timeout)

    # ---------------------------------------------------------------- claims

    async def claim(self, endpoint: str, job: str, user: str, now: float) -> Claim | None:
        # One statement: among simultaneous claims (any replica) exactly one inserts or takes over an expired row.
        for _ in range(3):
            taken = await self._fetchval(
                'INSERT INTO claims (endpoint, job, "user", at, owner, lease_until) VALUES ($1, $2, $3, $4, $5, $6)'
                ' ON CONFLICT (endpoint, job) DO UPDATE SET "user" = excluded."user", at = excluded.at,'
                " owner = excluded.owner, lease_until = excluded.lease_until WHERE claims.lease_until < $4"
                # A followed job stays claimed even between its owner's death and another replica's adoption.
                " AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.endpoint = claims.endpoint AND f.job = claims.job)"
                " RETURNING owner", endpoint, job, user, now, self.owner, now + self.lease)
            if taken is not None:
                return None
            existing = await self.claimed(endpoint, job)
            if existing is not None:
                return existing
            # Released between the two statements: try again rather than report a holder that is gone.
        return Claim(user, now, self.owner)

    async def release(self, endpoint: str, job: str, at: float | None = None) -> None:
        if at is None:
            await self._execute("DELETE FROM claims WHERE endpoint = $1 AND job = $2", endpoint, job)
        else:
            await self._execute("DELETE FROM claims WHERE endpoint = $1 AND job = $2 AND owner = $3 AND at = $4",
                                endpoint, job, self.owner, at)

    async def claimed(self, endpoint: str, job: str) -> Claim | None:
        rows = await self._fetch('SELECT "user", at, owner, lease_until FROM claims WHERE endpoint = $1 AND job = $2',
                                 endpoint, job)
        return Claim(rows[0]["user"], rows[0]["at"], rows[0]["owner"], rows[0]["lease_until"]) if rows else None

    # ---------------------------------------------------------------- inbox

    async def accept(self, kind: str, payload: dict[str, Any], now: float) -> int:
        work_id = await self._accepts((kind, json.dumps(payload), now, self.owner, now + self.lease, None))
        assert work_id is not None  # never late without a deadline
        return work_id

    async def accept_by(self, kind: str, payload: dict[str, Any], now: float, by: float) -> int | None:
        # `by` on the server's clock: this replica's clock and the server's may differ (`_measure_clock`). Not known
        # yet: no deadline, as before there was one.
        late_after = None if self._clock_offset is None else by + self._clock_offset
        return await self._accepts((kind, json.dumps(payload), now, self.owner, now + self.lease, late_after))

    async def _accept_all(self, rows: list[tuple[Any, ...]]) -> list[int | None]:
        # One statement: ids come from the sequence in the order the rows are inserted, which ORDER BY n fixes.
        async with self._connection() as conn:
            found = await conn.fetch(
                "INSERT INTO inbox (kind, payload, created, owner, lease_until, done) "
                "SELECT kind, payload, created, owner, lease_until, CASE WHEN late_after IS NOT NULL AND "
                f"{PG_NOW} > late_after THEN 1 ELSE 0 END FROM unnest($1::text[], $2::text[], "
                "$3::double precision[], $4::text[], $5::double precision[], $6::double precision[]) WITH ORDINALITY "
                "AS t(kind, payload, created, owner, lease_until, late_after, n) ORDER BY n RETURNING id, done",
                *([row[i] for row in rows] for i in range(6)), timeout=self.timeout)
        return [None if r["done"] else int(r["id"]) for r in sorted(found, key=lambda r: int(r["id"]))]

    async def _measure_clock(self) -> None:
        """How far the server's clock is from this replica's (`accept_by` compares on the server's)."""
        sent = time.time()
        server = float(await self._fetchval(f"SELECT {PG_NOW}"))
        received = time.time()
        self._clock_offset = server - (sent + received) / 2

    async def done(self, work_id: int) -> None:
        await self._execute("UPDATE inbox SET done = 1 WHERE id = $1", work_id)

    async def open_work(self, kind: str) -> list[Queued]:
        return [_queued(r) for r in await self._fetch("SELECT * FROM inbox WHERE done = 0 AND kind = $1 ORDER BY id",
                                                      kind)]

    # ---------------------------------------------------------------- audit

    async def audit(self, entry: AuditEntry) -> None:
        await self._execute(
            'INSERT INTO audit (at, "user", channel, endpoint, job, source, outcome, called, http_status,'
            " job_status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            entry.at or time.time(), entry.user, entry.channel, entry.endpoint, entry.job, entry.source,
            entry.outcome, int(entry.called), entry.http_status, entry.job_status, entry.detail)

    async def history(self, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._fetch("SELECT * FROM audit ORDER BY id DESC LIMIT $1", limit)]

    async def retries_since(self, endpoint: str, job: str, since: float) -> int:
        return int(await self._fetchval(
            "SELECT COUNT(*) FROM audit WHERE endpoint = $1 AND job = $2 AND called = 1 AND at >= $3",
            endpoint, job, since))

    async def asked_since(self, endpoint: str, job: str, user: str, since: float) -> bool:
        return bool(await self._fetch('SELECT 1 FROM audit WHERE endpoint = $1 AND job = $2 AND at >= $3'
                                      ' AND "user" = $4 LIMIT 1', endpoint, job, since, user))

    async def retry_times(self, endpoint: str, job: str, since: float) -> list[float]:
        return [float(r["at"]) for r in await self._fetch(
            "SELECT at FROM audit WHERE endpoint = $1 AND job = $2 AND called = 1 AND at >= $3 ORDER BY at",
            endpoint, job, since)]

    # ---------------------------------------------------------------- follows (alerts, storms, bulk runs: blobs.py)

    async def save_follow(self, endpoint: str, job: str, data: str) -> None:
        await self._execute("INSERT INTO follows (endpoint, job, data, owner, lease_until) VALUES ($1, $2, $3, $4, $5)"
                            " ON CONFLICT (endpoint, job) DO UPDATE SET data = excluded.data, owner = excluded.owner,"
                            " lease_until = excluded.lease_until",
                            endpoint, job, data, self.owner, time.time() + self.lease)

    async def drop_follow(self, endpoint: str, job: str) -> None:
        await self._execute("DELETE FROM follows WHERE endpoint = $1 AND job = $2", endpoint, job)

    async def follows(self) -> list[str]:
        return [r["data"] for r in await self._fetch("SELECT data FROM follows WHERE owner = $1", self.owner)]

    # ---------------------------------------------------------------- failures seen (for `failed`)

    async def record_failure(self, endpoint: str, job: str, status: str, error: str | None, at: float) -> None:
        await self._execute(
            "INSERT INTO failures (endpoint, job, status, error, seen_at, retried) VALUES ($1, $2, $3, $4, $5, 0)"
            " ON CONFLICT (endpoint, job) DO UPDATE SET status = excluded.status, error = excluded.error,"
            " seen_at = excluded.seen_at, retried = 0", endpoint, job, status, error, at)

    async def mark_retried(self, endpoint: str, jobs: list[str]) -> None:
        await self._execute("UPDATE failures SET retried = 1 WHERE endpoint = $1 AND job = ANY($2::text[])",
                            endpoint, jobs)

    async def recent_failures(self, endpoint: str, since: float) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT job, status, error, seen_at FROM failures WHERE endpoint = $1 AND seen_at >= $2 AND retried = 0"
            # A retry RunPod took since the failure was seen (by any route: button, command, bulk) counts too.
            " AND NOT EXISTS (SELECT 1 FROM audit WHERE audit.endpoint = failures.endpoint AND audit.job = failures.job"
            " AND audit.outcome = 'requeued' AND audit.at >= failures.seen_at)"
            " ORDER BY seen_at", endpoint, since)
        return [dict(r) for r in rows]
