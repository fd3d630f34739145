"""The PostgreSQL store's names (bot/store): a database URL shown with its password masked, advisory-lock keys and
LISTEN channel names within PostgreSQL's limits."""

from __future__ import annotations

from bot.store import mask_url
from bot.store.pg_shared import channel_name, lock_key


def test_mask_url_hides_the_password_only():
    assert mask_url("postgresql://app:s3cret@db.internal:5432/retry") == "postgresql://app:***@db.internal:5432/retry"
    assert mask_url("postgres://app@db/retry") == "postgres://app@db/retry"
    assert mask_url("postgresql://db/retry?user=app&password=s3cret&sslmode=require") == (
        "postgresql://db/retry?user=app&password=***&sslmode=require")
    assert mask_url("/var/lib/runpod-retry/state.db") == "/var/lib/runpod-retry/state.db"


def test_lock_keys_and_channel_names():
    assert lock_key("alert ep1/job-1") == lock_key("alert ep1/job-1") != lock_key("alert ep1/job-2")
    assert -(2 ** 63) <= lock_key("x") < 2 ** 63
    assert channel_name("events") == "runpod_retry_events"
    names = {channel_name(t) for t in ("job-events", "job_events", "Job_Events", "x" * 200, "x" * 201)}
    assert len(names) == 5
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() and n == n.lower() for n in names)
