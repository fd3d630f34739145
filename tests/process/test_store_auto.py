"""Issue 20, the store's part: what automatic retries remember (each attempt's result, stopped jobs, pauses), on
SQLite and on PostgreSQL (the `store` and `stores` fixtures of test_store.py run every test on both). A pause is taken
by exactly one of any number of callers at once, on any replica: the breaker's notice is posted once. An existing
database gains the tables when the app starts."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.core.policies import COMPLETED, DRY_RUN, FAILED_AGAIN, SENT, SKIPPED, Pause
from bot.store import open_store
from bot.store import pg_schema as pg_schema_module
from bot.store import sqlite as sqlite_module
from tests.process.test_store import replicas, schema_version, store, stores, target  # noqa: F401 - the two-backend fixtures


async def test_results_are_kept_per_endpoint_newest_first(store):  # noqa: F811
    now = 10_000.0
    assert await store.record_auto("ep1", "job-1", 1, "oom-once", SENT, now - 30)
    assert await store.record_auto("ep1", "job-1", 1, "oom-once", FAILED_AGAIN, now - 20)
    assert await store.record_auto("ep1", "job-1", 2, "oom-once", SENT, now - 10)
    assert await store.record_auto("ep1", "job-2", 1, "oom-once", DRY_RUN, now - 5)
    assert await store.record_auto("ep2", "job-3", 1, "oom-once", COMPLETED, now - 1)

    assert await store.auto_results("ep1", 0) == [(now - 5, DRY_RUN), (now - 10, SENT), (now - 20, FAILED_AGAIN),
                                                  (now - 30, SENT)]
    assert await store.auto_results("ep1", now - 15) == [(now - 5, DRY_RUN), (now - 10, SENT)]
    assert await store.auto_results("ep2", 0) == [(now - 1, COMPLETED)]
    assert await store.auto_results("ep9", 0) == []


async def test_an_attempt_is_sent_and_ends_once_whoever_records_it_again(store, stores):  # noqa: F811
    instances = await replicas(store, stores, 3)
    now = 10_000.0
    sent = await asyncio.gather(*(instances[i % len(instances)].record_auto("ep1", "job-1", 1, "p", SENT, now + i)
                                  for i in range(8)))
    assert sent.count(True) == 1
    assert not await store.record_auto("ep1", "job-1", 1, "p", SENT, now + 100)
    assert await store.record_auto("ep1", "job-1", 1, "p", FAILED_AGAIN, now + 101)
    assert not await store.record_auto("ep1", "job-1", 1, "p", FAILED_AGAIN, now + 102)
    # Skips may repeat (a job failing again later, skipped again while paused); a second attempt is its own.
    assert await store.record_auto("ep1", "job-1", 2, "p", SKIPPED, now + 103)
    assert await store.record_auto("ep1", "job-1", 2, "p", SKIPPED, now + 104)
    assert await store.record_auto("ep1", "job-1", 2, "p", SENT, now + 105)

    results = [r for _, r in await store.auto_results("ep1", 0)]
    assert results.count(SENT) == 2 and results.count(FAILED_AGAIN) == 1


async def test_a_job_is_stopped_by_its_first_click_only(store, stores):  # noqa: F811
    instances = await replicas(store, stores, 3)
    assert await store.auto_stopped("ep1", "job-1") is None

    first = await asyncio.gather(*(instances[i % len(instances)].stop_auto("ep1", "job-1", f"U{i}", 1000.0 + i)
                                   for i in range(6)))
    assert first.count(True) == 1
    winner = first.index(True)
    assert await store.auto_stopped("ep1", "job-1") == f"U{winner}"
    assert not await store.stop_auto("ep1", "job-1", "U9", 2000.0)
    assert await store.auto_stopped("ep1", "job-1") == f"U{winner}"
    assert await store.auto_stopped("ep1", "job-2") is None
    assert await store.auto_stopped("ep2", "job-1") is None


async def test_a_pause_is_active_until_its_end_or_until_resumed(store):  # noqa: F811
    now = 10_000.0
    forever = Pause("*", None, "U1", "", now)
    timed = Pause("ep-a", now + 60, "breaker", "6 of the last 10 automatic retries failed again", now)
    assert await store.pause_auto(forever)
    assert await store.pause_auto(timed)

    assert await store.auto_pauses(now) == [forever, timed]
    assert await store.auto_pauses(now + 61) == [forever]

    assert await store.resume_auto("ep-a") == timed
    assert await store.resume_auto("ep-a") is None
    assert await store.auto_pauses(now) == [forever]
    assert await store.resume_auto("*") == forever
    assert await store.auto_pauses(now) == []


async def test_a_scope_already_paused_is_not_paused_again_until_its_pause_ran_out(store):  # noqa: F811
    now = 10_000.0
    first = Pause("ep-a", now + 60, "U1", "", now)
    assert await store.pause_auto(first)
    assert not await store.pause_auto(Pause("ep-a", None, "breaker", "again", now + 30))
    assert await store.auto_pauses(now + 30) == [first]  # unchanged

    later = Pause("ep-a", now + 200, "breaker", "failing again", now + 61)
    assert await store.pause_auto(later)  # the first ran out at now + 60
    assert await store.auto_pauses(now + 61) == [later]

    assert await store.pause_auto(Pause("ep-b", None, "U2", "", now))
    assert not await store.pause_auto(Pause("ep-b", now + 10, "U3", "", now + 1_000_000))  # never runs out


@pytest.mark.parametrize("scope", ["ep-a", "*"])
async def test_one_pause_wins_among_many_at_once_on_every_replica(store, stores, scope):  # noqa: F811
    instances = await replicas(store, stores, 4)
    now = time.time()
    results = await asyncio.gather(*(instances[i % len(instances)].pause_auto(
        Pause(scope, now + 1800, "breaker" if i % 2 else f"U{i}", f"caller {i}", now)) for i in range(12)))

    assert results.count(True) == 1, results
    winner = results.index(True)
    [active] = await store.auto_pauses(now)
    assert active.reason == f"caller {winner}" and active.scope == scope


async def test_one_pause_wins_over_an_expired_one_among_many_at_once(store, stores):  # noqa: F811
    instances = await replicas(store, stores, 4)
    now = time.time()
    assert await store.pause_auto(Pause("ep-a", now - 1, "U1", "", now - 100))  # ran out a second ago
    results = await asyncio.gather(*(instances[i % len(instances)].pause_auto(
        Pause("ep-a", now + 1800, "breaker", f"caller {i}", now)) for i in range(12)))

    assert results.count(True) == 1, results
    [active] = await store.auto_pauses(now)
    assert active.reason == f"caller {results.index(True)}"


async def test_prune_forgets_old_results_stops_and_pauses_that_ran_out(store):  # noqa: F811
    now = time.time()
    await store.record_auto("ep1", "job-old", 1, "p", SENT, now - 1000)
    await store.record_auto("ep1", "job-new", 1, "p", SENT, now)
    await store.stop_auto("ep1", "job-old", "U1", now - 1000)
    await store.pause_auto(Pause("ep-old", now - 900, "U1", "", now - 1000))
    forever = Pause("ep-forever", None, "U1", "", now - 1000)
    await store.pause_auto(forever)

    await store.prune(now - 50)

    assert await store.auto_results("ep1", 0) == [(now, SENT)]
    assert await store.auto_stopped("ep1", "job-old") is None
    assert await store.resume_auto("ep-old") is None
    assert await store.auto_pauses(now) == [forever]  # a pause until resumed is never forgotten


async def test_a_database_from_before_retry_policies_gains_their_tables_at_start(target, monkeypatch):  # noqa: F811
    module = pg_schema_module if target.startswith("postgres") else sqlite_module
    full = list(module.MIGRATIONS)
    monkeypatch.setattr(module, "MIGRATIONS", full[:-1])  # the release before this one
    old = open_store(target, "OLD")
    await old.open()
    await old.save_alert("ep1", "job-1", "kept")
    await old.close()

    monkeypatch.setattr(module, "MIGRATIONS", full)
    new = open_store(target, "NEW")
    await new.open()
    try:
        assert await schema_version(new) == list(range(1, len(full) + 1))
        assert await new.load_alert("ep1", "job-1") == "kept"
        assert await new.pause_auto(Pause("ep-a", None, "U1", "", 1.0))
        assert await new.record_auto("ep1", "job-1", 1, "p", SENT, 1.0)
        assert await new.auto_results("ep1", 0) == [(1.0, SENT)]
    finally:
        await new.close()
