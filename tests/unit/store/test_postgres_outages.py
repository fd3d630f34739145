"""What the PostgreSQL store counts as an outage (StoreUnavailable, one log line) and what as a bug of ours."""

from __future__ import annotations

import asyncpg

from bot.store.pg_shared import AdvisoryLocks
from bot.store.postgres import unreachable


def test_a_connection_left_half_way_by_a_server_restart_is_an_outage_not_a_bug():
    # Seen in the chaos run during a PostgreSQL restart: it used to surface as a traceback through the app.
    assert unreachable(asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"))
    assert unreachable(ConnectionResetError()) and unreachable(asyncpg.CannotConnectNowError())


def test_a_wrong_query_or_argument_is_not_an_outage():
    assert not unreachable(asyncpg.UndefinedColumnError("no such column"))
    assert not unreachable(asyncpg.DataError("invalid input for query argument"))


async def test_a_lock_whose_connection_the_restart_broke_lets_the_work_done_under_it_stand():
    # Chaos seed 87: the pool's reset of the lock's connection failed on release ("cannot switch to state 15"), and
    # the error came out of the lock's exit as a traceback, failing an alert redraw already made under the lock.
    class Connection:
        async def execute(self, *_args: object, **_kwargs: object) -> None:
            return None

    class Pool:
        async def acquire(self, **_options: float) -> Connection:
            return Connection()

        async def release(self, conn: Connection) -> None:
            raise asyncpg.exceptions._base.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress")

    locks = AdvisoryLocks(lambda: Pool(), lambda exc: exc, slots=2, acquire_timeout=1.0, wait_timeout=1.0)
    done = []
    async with locks.hold("alert:ep1/job-1"):
        done.append("redrawn")
    assert done == ["redrawn"]
    async with locks.hold("alert:ep1/job-1"):  # and the name can be locked again
        done.append("again")
    assert done == ["redrawn", "again"]
