"""What the PostgreSQL store counts as an outage (StoreUnavailable, one log line) and what as a bug of ours."""

from __future__ import annotations

import asyncpg

from bot.store.postgres import unreachable


def test_a_connection_left_half_way_by_a_server_restart_is_an_outage_not_a_bug():
    # Seen in the chaos run during a PostgreSQL restart: it used to surface as a traceback through the app.
    assert unreachable(asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"))
    assert unreachable(ConnectionResetError()) and unreachable(asyncpg.CannotConnectNowError())


def test_a_wrong_query_or_argument_is_not_an_outage():
    assert not unreachable(asyncpg.UndefinedColumnError("no such column"))
    assert not unreachable(asyncpg.DataError("invalid input for query argument"))
