"""SQLite's schema for `SqliteStore`: the versioned migrations that bring a database file up to it."""

from __future__ import annotations

from bot.store.auto import SQLITE_MIGRATION

# Versioned schema: each entry runs once, in order; PRAGMA user_version records how far a database is.
# Version 1 is the schema of the first release (created with IF NOT EXISTS, so older files pass through it).
MIGRATIONS = [
    """
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
""",
    """
ALTER TABLE follows ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE follows ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
CREATE TABLE claims (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, user TEXT NOT NULL, at REAL NOT NULL,
    owner TEXT NOT NULL, lease_until REAL NOT NULL, PRIMARY KEY (endpoint, job)
);
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL, lease_until REAL NOT NULL
);
CREATE INDEX inbox_open ON inbox (done, lease_until);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, lane TEXT NOT NULL, payload TEXT NOT NULL,
    after TEXT, coalesce_key TEXT, state TEXT NOT NULL DEFAULT 'queued', result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, created REAL NOT NULL,
    owner TEXT NOT NULL, lease_until REAL NOT NULL
);
CREATE INDEX outbox_open ON outbox (state, lease_until);
CREATE INDEX outbox_coalesce ON outbox (coalesce_key, state);
""",
    """
CREATE TABLE retry_ends (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX retry_ends_at ON retry_ends (at);
CREATE INDEX audit_at ON audit (at);
""",
    """
CREATE TABLE bulk_jobs (
    run_id TEXT NOT NULL, job TEXT NOT NULL, result TEXT, final TEXT, updated REAL NOT NULL,
    PRIMARY KEY (run_id, job)
);
CREATE INDEX bulk_jobs_updated ON bulk_jobs (updated);
""",
    SQLITE_MIGRATION,
    # A call queued at most once under its key, by any replica (a run's summary): see `enqueue(once=…)`.
    """
ALTER TABLE outbox ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX outbox_once ON outbox (once_key) WHERE once_key IS NOT NULL;
""",
    # Whether a queued call is news (bot/slack/outbox.py): a replica resuming it keeps its place among the others.
    "ALTER TABLE outbox ADD COLUMN news INTEGER NOT NULL DEFAULT 0;",
]
