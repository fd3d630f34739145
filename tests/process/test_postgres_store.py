"""What only the PostgreSQL store has: NOTIFY's size limit said plainly, replicas migrating once when they start
together, lock holders never starved of connections, and outages (unreachable, wrong password, connections killed,
the server gone and back), always with the password masked."""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from bot.store import Claim, StoreUnavailable, mask_url
from bot.store.pg_schema import MIGRATIONS as PG_MIGRATIONS
from bot.store.postgres import PostgresStore
from testkit.pg import PostgresServer
from testkit.polling import wait_until
from tests.process.test_store import schema_version
from tests.process.test_store_between_replicas import enter


async def test_postgres_refuses_a_message_too_long_for_notify_plainly(pg_url):
    store = PostgresStore(pg_url, "A")
    got: list[str] = []
    store.subscribe("events", got.append)
    await store.open()
    try:
        with pytest.raises(ValueError, match="8000 bytes"):
            await store.publish("events", "é" * 4000)
        await store.publish("events", "x" * 7999)
        await wait_until(lambda: got == ["x" * 7999], 5.0, "the notification", step=0.01)
    finally:
        await store.close()


async def test_postgres_replicas_starting_together_migrate_once(pg_url):
    replicas = [PostgresStore(pg_url, f"R{i}") for i in range(6)]
    try:
        await asyncio.gather(*(r.open() for r in replicas))
        assert await schema_version(replicas[0]) == list(range(1, len(PG_MIGRATIONS) + 1))
        assert all(await asyncio.gather(*(r.ping() for r in replicas)))
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


async def test_postgres_lock_holders_always_find_a_connection_for_their_work(pg_url):
    # More holders than the pool has connections, each needing one more for its work inside the lock.
    store = PostgresStore(pg_url, "A", pool_size=4, timeout=3)
    await store.open()
    try:
        async def work(i: int) -> int:
            async with store.lock(f"alert ep1/job-{i}"):
                await asyncio.sleep(0.05)
                return await store.accept("click", {"n": i}, time.time())

        done = await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(12))), 20)
        assert len(set(done)) == 12
    finally:
        await store.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_masked(exc: BaseException, url: str, password: str) -> None:
    printed = "".join(traceback.format_exception(exc))
    assert mask_url(url) in str(exc)
    assert ":***@" in str(exc)
    assert password not in printed


async def test_postgres_unreachable_at_open_is_store_unavailable_with_the_password_masked():
    password = "hunter2-very-secret"
    url = f"postgresql://runpod_retry:{password}@127.0.0.1:{_closed_port()}/retry"
    store = PostgresStore(url, "A", timeout=3)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    _assert_masked(info.value, url, password)
    assert await store.ping() is False


async def test_postgres_wrong_password_at_open_is_store_unavailable_with_the_password_masked(pg_url, pg_server):
    url = pg_url.replace(pg_server.password, "not-the-password-xyz")
    with pytest.raises(StoreUnavailable) as info:
        await PostgresStore(url, "A", timeout=3).open()
    _assert_masked(info.value, url, "not-the-password-xyz")


async def test_postgres_connections_the_server_killed_are_replaced(pg_url, pg_server):
    store = PostgresStore(pg_url, "A")
    got: list[str] = []
    store.subscribe("events", got.append)
    await store.open()
    try:
        await asyncio.gather(*(store.accept("click", {"n": i}, time.time()) for i in range(10)))
        database = urlsplit(pg_url).path.lstrip("/")
        killed = pg_server.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                f" WHERE datname = '{database}' AND pid <> pg_backend_pid()")
        assert int(killed) >= 2  # the pool's and the listener's

        # Calls racing the news of the kill may fail, as an outage, and nothing else; then every call works.
        first = await asyncio.gather(*(store.accept("click", {}, time.time()) for _ in range(10)),
                                     return_exceptions=True)
        assert all(isinstance(r, int | StoreUnavailable) for r in first), first
        for _ in range(3):
            assert all(isinstance(r, int) for r in await asyncio.gather(
                *(store.accept("click", {}, time.time()) for _ in range(10))))
        assert await store.listening(10)
        await store.publish("events", "after the kill")
        await wait_until(lambda: got == ["after the kill"], 5.0, "the notification", step=0.01)
    finally:
        await store.close()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start again without disturbing the others."""
    server = PostgresServer().start()
    yield server
    server.stop()


async def test_postgres_store_recovers_by_itself_when_the_server_comes_back(own_server):
    url = own_server.create_database()
    store = PostgresStore(url, "A", timeout=3)
    got: list[str] = []
    store.subscribe("events", got.append)
    await store.open()
    try:
        t = time.time()
        assert await store.claim("ep1", "job-1", "U1", t) is None
        # Fill the pool: each of these connections dies with the server and must not be handed out again.
        await asyncio.gather(*(store.accept("click", {"n": i}, t) for i in range(10)))

        # The test server runs with fsync and synchronous_commit off: a checkpoint makes what was committed survive
        # the crash, as it would on a normally configured server.
        own_server.psql("CHECKPOINT")
        await asyncio.to_thread(own_server.halt)  # immediate: a crash, clients get no goodbye
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable) as info:
            await store.accept("click", {}, t)
        _assert_masked(info.value, url, own_server.password)
        with pytest.raises(StoreUnavailable):
            await store.claimed("ep1", "job-1")
        with pytest.raises(StoreUnavailable):
            async with store.lock("x"):
                pass

        await asyncio.to_thread(own_server.resume)
        deadline = time.monotonic() + 15
        while not await store.ping():
            assert time.monotonic() < deadline, "the store did not reconnect"
            await asyncio.sleep(0.1)
        for _ in range(3):  # every pooled connection works again
            await asyncio.gather(*(store.accept("click", {}, t) for _ in range(10)))
        assert await store.claimed("ep1", "job-1") == Claim("U1", t, "A")  # what was accepted is still there
        await asyncio.wait_for(enter(store, "x"), 5)
        assert await store.listening(15)
        await store.publish("events", "back")
        await wait_until(lambda: got == ["back"], 5.0, "the notification", step=0.01)
    finally:
        await store.close()
