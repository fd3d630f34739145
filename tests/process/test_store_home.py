"""What the Home tab reads from storage (bot/store/reports.py), against SQLite and PostgreSQL alike (the fixtures of
tests/test_store.py)."""

from __future__ import annotations

import json
import time

from tests.process.test_store import entry, store, stores, target  # noqa: F401 - the two-backend fixtures


async def test_unretried_failures_span_every_endpoint_newest_first_and_leave_out_retried_ones(store):  # noqa: F811
    t = time.time()
    await store.record_failure("ep1", "job-1", "FAILED", "boom", t)
    await store.record_failure("ep2", "job-2", "TIMED_OUT", None, t + 1)
    await store.record_failure("ep1", "job-3", "FAILED", "oom", t + 2)
    await store.record_failure("ep1", "job-old", "FAILED", "old", t - 100)
    await store.record_failure("ep1", "job-4", "FAILED", "x", t + 3)
    await store.mark_retried("ep1", ["job-4"])
    await store.audit(entry("job-3", at=t + 5))                     # requeued after it failed: left out
    await store.audit(entry("job-2", "refused:budget", at=t + 5, endpoint="ep2"))  # a refusal: still listed

    rows = await store.unretried_failures(t - 10, 10)

    assert [(r["endpoint"], r["job"]) for r in rows] == [("ep2", "job-2"), ("ep1", "job-1")]
    assert rows[1] == {"endpoint": "ep1", "job": "job-1", "status": "FAILED", "error": "boom", "seen_at": t}
    assert [r["job"] for r in await store.unretried_failures(t - 10, 1)] == ["job-2"]
    assert [r["job"] for r in await store.unretried_failures(t - 1000, 10)][-1] == "job-old"


async def test_followed_jobs_are_every_replicas(store, stores):  # noqa: F811
    other = await stores("B") if store.shared else store
    await store.save_follow("ep1", "job-1", json.dumps({"job": "job-1"}))
    await other.save_follow("ep1", "job-2", json.dumps({"job": "job-2"}))

    found = sorted(json.loads(data)["job"] for data in await store.followed_jobs(10))

    assert found == ["job-1", "job-2"]
    assert len(await store.followed_jobs(1)) == 1
    await store.drop_follow("ep1", "job-1")
    assert [json.loads(d)["job"] for d in await store.followed_jobs(10)] == ["job-2"]


async def test_retry_stats_count_retries_sent_taken_and_how_the_retried_jobs_ended(store):  # noqa: F811
    t = time.time()
    await store.audit(entry("job-1", at=t))                                          # sent, taken
    await store.audit(entry("job-2", at=t + 1))                                      # sent, taken
    await store.audit(entry("job-3", "not_retryable", at=t + 2, called=True))        # sent, refused by RunPod
    await store.audit(entry("job-4", "refused:budget", at=t + 3))                    # never sent
    await store.audit(entry("job-5", at=t - 1000))                                   # too old
    await store.audit(entry("job-6", at=t + 4, endpoint="ep2"))
    await store.record_retry_end("ep1", "job-1", "COMPLETED", t + 10)
    await store.record_retry_end("ep1", "job-2", "TIMED_OUT", t + 11)
    await store.record_retry_end("ep2", "job-6", "UNKNOWN", t + 12)                  # following stopped: neither
    await store.record_retry_end("ep1", "job-5", "COMPLETED", t - 900)               # too old

    stats = await store.retry_stats(t - 10)

    assert stats == [
        {"endpoint": "ep1", "sent": 3, "requeued": 2, "completed": 1, "failed_again": 1},
        {"endpoint": "ep2", "sent": 1, "requeued": 1, "completed": 0, "failed_again": 0},
    ]
    assert await store.retry_stats(t + 100) == []


async def test_prune_forgets_old_retry_ends(store):  # noqa: F811
    t = time.time()
    await store.audit(entry("job-1", at=t - 50))
    await store.record_retry_end("ep1", "job-1", "COMPLETED", t - 50)
    await store.record_retry_end("ep1", "job-1", "COMPLETED", t)

    await store.prune(t - 10)

    assert (await store.retry_stats(t - 100))[0]["completed"] == 1
