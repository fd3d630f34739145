"""The throwaway PostgreSQL server of tests/pg.py works as the app will use it: over a password URL, with asyncpg."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest

from testkit.pg import APP_USER, PostgresServer

# Harmless once tests/conftest.py loads the plugin too: pytest registers a plugin module only once.


async def test_url_is_a_password_login_to_a_fresh_database(pg_url: str, pg_server: PostgresServer) -> None:
    url = urlsplit(pg_url)
    assert url.scheme == "postgresql"
    assert (url.hostname, url.port, url.username, url.password) == ("127.0.0.1", pg_server.port, APP_USER,
                                                                     pg_server.password)
    database = url.path.lstrip("/")
    assert database.startswith("test_")

    # The password is checked: the same URL with a wrong one is refused.
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_url.replace(pg_server.password, "wrong-password"))

    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == database
        assert await conn.fetchval("SELECT current_user") == APP_USER
        assert await conn.fetchval("SHOW fsync") == "off"
        # The database is this test's alone: empty, and the app role may create tables in it.
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        await conn.execute("CREATE TABLE jobs (id text PRIMARY KEY, attempts int NOT NULL DEFAULT 0)")
        await conn.execute("INSERT INTO jobs (id) VALUES ($1), ($2)", "job-1", "job-2")
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 2
    finally:
        await conn.close()


async def test_two_connections_see_each_others_commits_and_share_advisory_locks(pg_url: str) -> None:
    a = await asyncpg.connect(pg_url)
    b = await asyncpg.connect(pg_url)
    try:
        await a.execute("CREATE TABLE jobs (id text PRIMARY KEY, attempts int NOT NULL DEFAULT 0)")
        async with a.transaction():
            await a.execute("INSERT INTO jobs (id) VALUES ('job-1')")
            assert await b.fetchval("SELECT count(*) FROM jobs") == 0  # not committed yet
        assert await b.fetchval("SELECT count(*) FROM jobs") == 1
        await b.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = 'job-1'")
        assert await a.fetchval("SELECT attempts FROM jobs WHERE id = 'job-1'") == 1

        # pg_advisory_lock: a holds it, b can't take it until a lets go.
        key = 4242
        await a.execute("SELECT pg_advisory_lock($1)", key)
        assert await b.fetchval("SELECT pg_try_advisory_lock($1)", key) is False
        waiting = asyncio.create_task(b.execute("SELECT pg_advisory_lock($1)", key))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await a.fetchval("SELECT pg_advisory_unlock($1)", key) is True
        await asyncio.wait_for(waiting, timeout=5)
        assert await a.fetchval("SELECT pg_try_advisory_lock($1)", key) is False
        assert await b.fetchval("SELECT pg_advisory_unlock($1)", key) is True
    finally:
        await a.close()
        await b.close()


async def test_listen_notify_between_connections(pg_url: str) -> None:
    listener = await asyncpg.connect(pg_url)
    sender = await asyncpg.connect(pg_url)
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    try:
        await listener.add_listener("job_events", lambda _conn, _pid, channel, payload: received.put_nowait(
            (channel, payload)))
        await sender.execute("SELECT pg_notify('job_events', 'retried:job-1')")
        assert await asyncio.wait_for(received.get(), timeout=5) == ("job_events", "retried:job-1")
        async with sender.transaction():
            await sender.execute("NOTIFY job_events, 'retried:job-2'")
            await asyncio.sleep(0.05)
            assert received.empty()  # delivered on commit, not before
        assert await asyncio.wait_for(received.get(), timeout=5) == ("job_events", "retried:job-2")
    finally:
        await listener.close()
        await sender.close()
