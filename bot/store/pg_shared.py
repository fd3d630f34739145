"""PostgreSQL between replicas, for `PostgresStore`: advisory locks (`lock()`), NOTIFY channel names, and the
connection that LISTENs for other replicas' events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bot.store.base import StoreUnavailable

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "runpod_retry_"
MAX_CHANNEL = 63  # PostgreSQL truncates identifiers (channel names) longer than NAMEDATALEN - 1 bytes


class PostgresQueries:
    """What the store's PostgreSQL parts (auto, blobs, outbox) call on `PostgresStore`, which defines them."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError


def lock_key(name: str) -> int:
    """A name as a pg_advisory_lock key: the first 8 bytes of its SHA-256, as a signed 64-bit integer."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def channel_name(topic: str) -> str:
    """The NOTIFY channel for a topic: the prefix and the topic in lower-case letters, digits and `_`.

    A topic that had to be changed (or shortened) to fit gets a hash of the original, so two topics never share a
    channel: `alert:ep1` and `alert_ep1` stay apart.
    """
    clean = re.sub(r"[^a-z0-9_]", "_", topic.lower())
    name = CHANNEL_PREFIX + clean
    if clean != topic or len(name) > MAX_CHANNEL:
        digest = hashlib.sha256(topic.encode()).hexdigest()[:10]
        name = f"{name[:MAX_CHANNEL - len(digest) - 1]}_{digest}"
    return name


class AdvisoryLocks:
    """`lock(name)` across replicas: pg_advisory_lock on a pooled connection held for as long as the lock is.

    Waiters for one name queue in this process first, so a replica uses at most one connection per name; and at
    most `slots` connections hold or wait for locks at once, so a holder always finds one for the work it does.
    """

    def __init__(self, pool: Callable[[], Any], translate: Callable[[BaseException], BaseException], *,
                 slots: int, acquire_timeout: float, wait_timeout: float) -> None:
        self._pool = pool
        self._translate = translate  # outages become StoreUnavailable
        self._slots = asyncio.Semaphore(slots)
        self.acquire_timeout = acquire_timeout
        self.wait_timeout = wait_timeout
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        key = lock_key(name)
        local = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with local, self._slots:
                pool = self._pool()
                try:
                    conn = await pool.acquire(timeout=self.acquire_timeout)
                except Exception as exc:
                    raise self._translate(exc) from exc
                try:
                    try:
                        await conn.execute("SELECT pg_advisory_lock($1)", key, timeout=self.wait_timeout)
                    except TimeoutError as exc:
                        raise StoreUnavailable(f"no lock on {name!r} within {self.wait_timeout:g} s: another "
                                               "replica holds it, or the database does not answer") from exc
                    except Exception as exc:
                        raise self._translate(exc) from exc
                    try:
                        yield
                    finally:
                        # If the session is gone, so is its lock. If this is cancelled, the pool's reset of the
                        # connection (pg_advisory_unlock_all) or its termination lets go instead.
                        with contextlib.suppress(Exception):
                            await conn.execute("SELECT pg_advisory_unlock($1)", key, timeout=self.acquire_timeout)
                finally:
                    # Shielded by asyncpg: runs to the end even when cancelled. When the reset it makes fails (the
                    # database went away mid-query: "another operation is in progress"), asyncpg has closed the
                    # connection, and the lock with it; the work done under the lock stands.
                    with contextlib.suppress(Exception):
                        await pool.release(conn)
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # keep memory flat: no local lock outlives its users
                del self._users[key], self._locks[key]


class Listener:
    """One dedicated connection that LISTENs on every subscribed channel and is connected again when it drops.

    Not a pool connection: the pool resets connections with UNLISTEN when they are released. NOTIFY is not stored,
    so a message sent while this connection is being re-established is lost: delivery is at most once.
    """

    def __init__(self, connect: Callable[[], Awaitable[Any]], *, check_every: float = 5.0,
                 check_timeout: float = 3.0) -> None:
        self._connect = connect
        self.check_every = check_every
        self.check_timeout = check_timeout
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()    # connected, and listening on every channel subscribed so far
        self._changed = asyncio.Event()  # a channel was added
        self._stopped = False
        self.connection: Any = None

    def add(self, channel: str, callback: Callable[[str], None]) -> None:
        self._callbacks.setdefault(channel, []).append(callback)
        self._ready.clear()
        self._changed.set()

    def has(self, channel: str) -> bool:
        return channel in self._callbacks

    def has_any(self) -> bool:
        return bool(self._callbacks)

    def start(self) -> None:
        if self._task is None and self._callbacks and not self._stopped:
            self._task = asyncio.create_task(self._run(), name="postgres listener")

    async def ready(self, within: float) -> bool:
        """Wait until every channel subscribed so far is listened on; False if that took longer than `within`."""
        try:
            await asyncio.wait_for(self._ready.wait(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _dispatch(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in list(self._callbacks.get(channel, ())):
            try:
                callback(payload)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("a subscriber to %s failed", channel)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                connection = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if delay >= 1.0:
                    log.warning("cannot listen for other replicas' events: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            try:
                await self._serve(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lost the connection listening for other replicas' events: %s: %s",
                            type(exc).__name__, exc)
            finally:
                self._ready.clear()
                self.connection = None
                connection.terminate()

    async def _serve(self, connection: Any) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        self.connection = connection
        listened: set[str] = set()
        while not lost.is_set() and not connection.is_closed():
            for channel in [c for c in self._callbacks if c not in listened]:
                await connection.add_listener(channel, self._dispatch)
                listened.add(channel)
            if listened >= set(self._callbacks):  # no await since the check: nothing was added meanwhile
                self._changed.clear()
                self._ready.set()
            waiters = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self._changed.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.check_every, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if not lost.is_set() and not self._changed.is_set():
                # A half-open connection (the server gone without a word) shows up here, not in LISTEN.
                await connection.fetchval("SELECT 1", timeout=self.check_timeout)
