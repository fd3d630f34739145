"""PostgreSQL's schema for `PostgresStore`, and the versioned migrations that bring a database up to it."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from bot.store.auto import POSTGRES_MIGRATION
from bot.store.pg_shared import lock_key

# Versioned schema: each entry runs once, in order, in a transaction; `schema_version` records how far a database
# is. Version 1 is SQLite's final schema (its versions 1 and 2) in PostgreSQL's types. `user` is a reserved word.
MIGRATIONS = [
    """
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL, "user" TEXT NOT NULL, channel TEXT NOT NULL,
    endpoint TEXT NOT NULL, job TEXT NOT NULL, source TEXT NOT NULL,
    outcome TEXT NOT NULL, called INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER, job_status TEXT, detail TEXT
);
CREATE INDEX audit_job ON audit (endpoint, job, at);
CREATE TABLE alerts (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, data TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (endpoint, job)
);
CREATE INDEX alerts_updated ON alerts (updated);
CREATE TABLE follows (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, data TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '', lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, job)
);
CREATE INDEX follows_owner ON follows (owner);
CREATE TABLE failures (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    seen_at DOUBLE PRECISION NOT NULL, retried INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, job)
);
CREATE INDEX failures_recent ON failures (endpoint, seen_at);
CREATE TABLE storms (id TEXT PRIMARY KEY, data TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL);
CREATE INDEX storms_recent ON storms (updated);
CREATE TABLE bulk_runs (id TEXT PRIMARY KEY, data TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL);
CREATE TABLE claims (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, "user" TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    owner TEXT NOT NULL, lease_until DOUBLE PRECISION NOT NULL, PRIMARY KEY (endpoint, job)
);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE inbox (
    id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL, lease_until DOUBLE PRECISION NOT NULL
);
CREATE INDEX inbox_open ON inbox (done, lease_until);
CREATE INDEX inbox_owner ON inbox (owner) WHERE done = 0;
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, lane TEXT NOT NULL, payload TEXT NOT NULL,
    after TEXT, coalesce_key TEXT, state TEXT NOT NULL DEFAULT 'queued', result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL, owner TEXT NOT NULL, lease_until DOUBLE PRECISION NOT NULL
);
CREATE INDEX outbox_open ON outbox (state, lease_until);
CREATE INDEX outbox_coalesce ON outbox (coalesce_key, state);
CREATE INDEX outbox_owner ON outbox (owner, state);
""",
    """
CREATE TABLE retry_ends (
    id BIGSERIAL PRIMARY KEY, endpoint TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX retry_ends_at ON retry_ends (at);
CREATE INDEX audit_at ON audit (at);
""",
    """
CREATE TABLE bulk_jobs (
    run_id TEXT NOT NULL, job TEXT NOT NULL, result TEXT, final TEXT, updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, job)
);
CREATE INDEX bulk_jobs_updated ON bulk_jobs (updated);
CREATE INDEX inbox_kind_open ON inbox (kind) WHERE done = 0;
""",
    POSTGRES_MIGRATION,
    """
CREATE TABLE app_executors (
    executor_id TEXT PRIMARY KEY, generation TEXT NOT NULL, beat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
""",
    # A call queued at most once under its key, by any replica (a run's summary): see `enqueue(once=…)`.
    """
ALTER TABLE outbox ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX outbox_once ON outbox (once_key) WHERE once_key IS NOT NULL;
""",
    # Whether a queued call is news (bot/slack/outbox.py): a replica resuming it keeps its place among the others.
    "ALTER TABLE outbox ADD COLUMN news BOOLEAN NOT NULL DEFAULT false;",
]

MIGRATION_LOCK = lock_key("runpod-retry: schema migrations")


async def migrate(conn: Any, *, lock_timeout: float, query_timeout: float) -> None:
    """Bring the database's schema up to date, under an advisory lock so replicas starting together take turns."""
    # Replicas starting together queue here: the first applies what is missing, the others then find nothing.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=lock_timeout)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version"
                           " (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
        version = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with conn.transaction():
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version, applied) VALUES ($1, $2)",
                                   number, time.time())
    finally:
        with contextlib.suppress(Exception):  # a lost session has let go already; the pool's reset would too
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK, timeout=query_timeout)
