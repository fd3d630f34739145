"""What the app remembers across restarts and shares between replicas: accepted work, messages queued for Slack,
claims, alerts, follows, bulk runs, the audit trail. Imports neither Slack nor RunPod code."""

from __future__ import annotations

from bot.infra.timing import REAL, Timing
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
from bot.store.sqlite import SqliteStore


def is_database_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_store(target: str, owner: str | None = None, timing: Timing = REAL) -> Store:
    """`RUNPOD_RETRY_DB`: a file path (SQLite, one instance) or a postgresql:// URL (any number of replicas)."""
    if is_database_url(target):
        from bot.store.postgres import PostgresStore  # only replicas need the driver loaded

        return PostgresStore(target, owner, lease=timing.lease, listen_check=timing.pg_listen_check)
    return SqliteStore(target, owner, lease=timing.lease)


__all__ = ["LEASE_SECONDS", "Adopted", "AuditEntry", "Claim", "Queued", "SqliteStore", "Store", "StoreUnavailable",
           "is_database_url", "mask_url", "new_owner_id", "open_store"]
