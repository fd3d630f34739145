"""The storage contract (bot/store/base.py), run against both implementations: SQLite on a temp file, and
PostgreSQL on a fresh database of the test server (testkit/pg.py), with claims and adoption from several instances
at once. Locks and events between instances are in test_store_between_replicas.py; what only PostgreSQL has
(replicas starting together, NOTIFY's limit, outages) in test_postgres_store.py.

Where the contract is about several replicas, the PostgreSQL run uses several store instances (each its own pool)
on one database; SQLite, an embedded single-instance store, uses one instance where things happen at once, and a
second instance on the same file where they happen one after the other.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.store import LEASE_SECONDS, AuditEntry, Claim, SqliteStore, Store, open_store
from bot.store import sqlite as sqlite_module
from bot.store.pg_schema import MIGRATIONS as PG_MIGRATIONS
from bot.store.postgres import PostgresStore

MakeStore = Callable[[str], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path) -> str:
    """RUNPOD_RETRY_DB for the backend under test."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "store.db")


@pytest.fixture
async def stores(target: str) -> AsyncIterator[MakeStore]:
    """Open another store (another replica, for PostgreSQL) on the same database: `b = await stores("B")`."""
    opened: list[Store] = []

    async def make(owner: str) -> Store:
        store = open_store(target, owner)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(stores: MakeStore) -> Store:
    return await stores("A")


async def replicas(store: Store, stores: MakeStore, count: int) -> list[Store]:
    """Instances to act at the same moment: several on PostgreSQL, the one on SQLite."""
    if not store.shared:
        return [store]
    return [store, *[await stores(f"R{i}") for i in range(1, count)]]


async def pair(store: Store, stores: MakeStore) -> tuple[Store, Store]:
    """Two replicas on PostgreSQL; on SQLite, whose locks are in-process, the one instance twice."""
    instances = await replicas(store, stores, 2)
    return instances[0], instances[-1]


async def count_rows(store: Store, table: str) -> int:
    if isinstance(store, SqliteStore):
        async with store.db.execute(f"SELECT COUNT(*) FROM {table}") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
    assert isinstance(store, PostgresStore)
    async with store.pool.acquire() as conn:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def schema_version(store: Store) -> list[int]:
    """The migrations a database records as applied."""
    if isinstance(store, SqliteStore):
        async with store.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return list(range(1, int(row[0]) + 1)) if row else []
    assert isinstance(store, PostgresStore)
    async with store.pool.acquire() as conn:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]


async def listening(*stores: Store) -> None:
    for store in stores:
        if isinstance(store, PostgresStore):
            assert await store.listening(10)


def entry(job: str, outcome: str = "requeued", *, at: float, endpoint: str = "ep1", user: str = "U1",
          called: bool | None = None, **extra: object) -> AuditEntry:
    return AuditEntry(user, "C1", endpoint, job, "button", outcome,
                      outcome == "requeued" if called is None else called, at=at, **extra)  # type: ignore[arg-type]


# ---------------------------------------------------------------- life


async def test_opening_again_keeps_the_data_and_applies_no_migration_twice(store, stores):
    await store.audit(entry("job-1", at=1000.0))
    applied = await schema_version(store)
    expected = len(PG_MIGRATIONS) if store.shared else len(sqlite_module.MIGRATIONS)
    assert applied == list(range(1, expected + 1))

    again = await stores("B")  # a restart, or a second replica: the schema is already there
    assert await schema_version(again) == applied
    assert [row["job"] for row in await again.history(5)] == ["job-1"]


async def test_ping_says_whether_the_database_answers(stores):
    store = await stores("A")
    assert await store.ping() is True
    await store.close()
    assert await store.ping() is False


# ---------------------------------------------------------------- audit


async def test_audit_history_is_newest_first_and_the_budget_counts_calls_made(store):
    t = 1_000_000.0
    await store.audit(AuditEntry("U1", "C1", "ep1", "job-1", "button", "requeued", True, 200, "FAILED", None, t))
    await store.audit(entry("job-1", "refused:budget", at=t + 1, user="U2"))
    await store.audit(entry("job-1", "error", at=t + 2, called=True, detail="timeout: may have been retried"))
    await store.audit(entry("job-1", at=t + 3, endpoint="ep2"))
    await store.audit(entry("job-2", at=t + 4))

    rows = await store.history(10)
    assert [(r["endpoint"], r["job"], r["at"]) for r in rows] == [
        ("ep1", "job-2", t + 4), ("ep2", "job-1", t + 3), ("ep1", "job-1", t + 2), ("ep1", "job-1", t + 1),
        ("ep1", "job-1", t)]
    assert {k: v for k, v in rows[-1].items() if k != "id"} == {
        "at": t, "user": "U1", "channel": "C1", "endpoint": "ep1", "job": "job-1", "source": "button",
        "outcome": "requeued", "called": 1, "http_status": 200, "job_status": "FAILED", "detail": None}
    assert rows[0]["id"] > rows[-1]["id"]
    assert [r["at"] for r in await store.history(2)] == [t + 4, t + 3]

    # Calls made (or maybe made) count, refusals don't; per endpoint and job; from `since` on, inclusive.
    assert await store.retries_since("ep1", "job-1", t) == 2
    assert await store.retries_since("ep1", "job-1", t + 0.5) == 1
    assert await store.retries_since("ep1", "job-1", t + 2.5) == 0
    assert await store.retries_since("ep2", "job-1", 0) == 1
    assert await store.retries_since("ep1", "job-9", 0) == 0
    # ... and when each was sent, oldest first, for the retry limit's "next allowed at".
    assert await store.retry_times("ep1", "job-1", t) == [t, t + 2]
    assert await store.retry_times("ep1", "job-1", t + 0.5) == [t + 2]
    assert await store.retry_times("ep1", "job-9", 0) == []


async def test_an_audit_entry_without_a_time_gets_the_current_one(store):
    before = time.time()
    await store.audit(AuditEntry("U1", "C1", "ep1", "job-1", "command", "requeued", True))
    [row] = await store.history(1)
    assert before <= row["at"] <= time.time()


# ---------------------------------------------------------------- alerts, storms, bulk runs, follows, failures


async def test_alerts_storms_and_bulk_runs_round_trip(store):
    assert await store.load_alert("ep1", "job-1") is None
    await store.save_alert("ep1", "job-1", '{"v": 1}')
    await store.save_alert("ep1", "job-1", '{"v": 2}')  # replaces
    await store.save_alert("ep2", "job-1", '{"w": 1}')
    assert await store.load_alert("ep1", "job-1") == '{"v": 2}'
    assert sorted(await store.recent_alerts(time.time() - 60)) == ['{"v": 2}', '{"w": 1}']
    assert await store.recent_alerts(time.time() + 60) == []

    assert await store.load_storm("ep1/1000") is None
    await store.save_storm("ep1/1000", "s1")
    await store.save_storm("ep1/2000", "s2")
    await store.save_storm("ep1/1000", "s1b")  # replaced, and now the most recently touched
    assert await store.load_storm("ep1/1000") == "s1b"
    assert await store.recent_storms(time.time() - 60) == ["s2", "s1b"]
    assert await store.recent_storms(time.time() + 60) == []

    await store.save_bulk("run-1", "b1")
    await store.save_bulk("run-2", "b2")
    await store.save_bulk("run-1", "b1 done")
    assert sorted(await store.recent_bulks(time.time() - 60)) == ["b1 done", "b2"]
    assert await store.load_bulk("run-1") == "b1 done"
    assert await store.load_bulk("run-3") is None
    assert await store.recent_bulks(time.time() + 60) == []


async def test_a_bulk_runs_jobs_are_recorded_one_row_each_by_any_replica(store, stores):
    other = await stores("B")  # another replica (SQLite: a second connection to the same file)
    assert await store.bulk_jobs("bulk:C1/1.0") == {}
    await store.save_bulk_job("bulk:C1/1.0", "job-1", result='{"outcome": "requeued"}')
    await other.save_bulk_job("bulk:C1/1.0", "job-2", result='{"outcome": "refused:budget"}')
    await other.save_bulk_job("bulk:C1/1.0", "job-1", final="COMPLETED")  # the answer is kept
    await store.save_bulk_job("bulk:C1/2.0", "job-1", result='{"outcome": "error"}')
    assert await store.bulk_jobs("bulk:C1/1.0") == {"job-1": ('{"outcome": "requeued"}', "COMPLETED"),
                                                    "job-2": ('{"outcome": "refused:budget"}', None)}


async def test_open_work_lists_unfinished_work_of_one_kind_whoever_holds_it(store, stores):
    other = await stores("B")
    first = await store.accept("retry", {"job": "job-1"}, time.time())
    await other.accept("retry", {"job": "job-2"}, time.time())
    await store.accept("bulk", {"run": "C1/1.0"}, time.time())
    await store.done(first)
    assert [row.payload for row in await store.open_work("retry")] == [{"job": "job-2"}]
    assert [row.payload for row in await other.open_work("bulk")] == [{"run": "C1/1.0"}]


async def test_requests_accepted_together_are_written_at_once_each_with_its_own_row_in_order(store):
    """A burst of acknowledgements is one write (group commit); each request still gets its own row and id."""
    ids = await asyncio.gather(*(store.accept("retry_request", {"job": f"job-{n}"}, time.time()) for n in range(40)))
    assert len(set(ids)) == 40 and ids == sorted(ids)
    rows = await store.open_work("retry_request")
    assert [(row.id, row.payload) for row in rows] == [(i, {"job": f"job-{n}"}) for n, i in enumerate(ids)]


async def test_a_request_the_database_writes_after_its_deadline_is_written_done_and_nobody_carries_it_out(
        store, stores):
    """Chaos seed 60: the person was told to try again (the write had not landed in time) and their replica was
    killed; the write landed once the database woke, and the replica adopting it carried out a request the person
    had been told was not taken, beside the one they sent again. Written late, the row is done already."""
    now = time.time()
    late = await store.accept_by("bulk_request", {"n": "late"}, now, by=now - 1.0)
    in_time = await store.accept_by("bulk_request", {"n": "in time"}, now, by=now + 30.0)
    together = await asyncio.gather(*(store.accept_by("retry_request", {"n": n}, now, by=now + (30 if n % 2 else -1))
                                      for n in range(6)))
    assert late is None and in_time is not None
    assert [work_id is not None for work_id in together] == [False, True, False, True, False, True]
    assert [row.payload for row in await store.open_work("bulk_request")] == [{"n": "in time"}]
    assert [row.payload for row in await store.open_work("retry_request")] == [{"n": 1}, {"n": 3}, {"n": 5}]
    await store.hand_over()
    adopted = await (await stores("B")).adopt(time.time())
    assert sorted(str(row.payload["n"]) for row in adopted.inbox) == ["1", "3", "5", "in time"]


async def test_a_request_held_up_by_a_frozen_postgresql_past_its_deadline_is_written_done(pg_server, pg_url):
    """The real thing: PostgreSQL stopped (SIGSTOP) while the request is on its way; it is written when PostgreSQL
    wakes, after its deadline, so as done. The server's clock decides, with this replica's offset from it."""
    from tests.process.chaos import freeze

    store = PostgresStore(pg_url, owner="A")
    await store.open()
    try:
        frozen = asyncio.ensure_future(freeze(pg_server, 1.5))
        await asyncio.sleep(0.2)  # stopped now
        now = time.time()
        assert await store.accept_by("bulk_request", {"n": 1}, now, by=now + 0.5) is None
        await frozen
        now = time.time()
        assert await store.accept_by("bulk_request", {"n": 2}, now, by=now + 0.5) is not None
        assert [row.payload for row in await store.open_work("bulk_request")] == [{"n": 2}]
    finally:
        await store.close()


async def test_sqlite_operations_run_together_and_one_that_fails_takes_back_only_its_own_writes(tmp_path):
    """SQLite runs what is asked for together in one transaction; an operation that fails in the middle (here a
    statement naming a table that does not exist, after its own insert) is undone alone: the others are kept."""
    store = SqliteStore(str(tmp_path / "together.db"))
    await store.open()
    try:
        async def broken() -> None:
            await store._script([("INSERT INTO inbox (kind, payload, created, owner, lease_until)"
                                  " VALUES ('retry_request', '{\"job\": \"broken\"}', 0, 'A', 0)", ()),
                                 ("UPDATE no_such_table SET x = 1", ())])

        results = await asyncio.gather(store.accept("retry_request", {"job": "before"}, time.time()), broken(),
                                       store.accept("retry_request", {"job": "after"}, time.time()),
                                       return_exceptions=True)
        assert isinstance(results[1], Exception) and "no_such_table" in str(results[1])
        rows = await store.open_work("retry_request")
        assert [row.payload for row in rows] == [{"job": "before"}, {"job": "after"}]
        assert [row.id for row in rows] == [results[0], results[2]]
    finally:
        await store.close()


async def test_follows_belong_to_the_replica_that_saved_them(store, stores):
    other = await stores("B")
    await store.save_follow("ep1", "job-1", "f1")
    await other.save_follow("ep1", "job-2", "f2")
    assert await store.follows() == ["f1"]
    assert await other.follows() == ["f2"]

    await other.save_follow("ep1", "job-1", "f1 again")  # saving again moves it to the saver
    assert await store.follows() == []
    assert sorted(await other.follows()) == ["f1 again", "f2"]
    await other.drop_follow("ep1", "job-1")
    assert await other.follows() == ["f2"]


async def test_recent_failures_leave_out_jobs_retried_since_they_failed(store):
    t = time.time()
    await store.record_failure("ep1", "job-1", "FAILED", "boom", t)
    await store.record_failure("ep1", "job-2", "TIMED_OUT", None, t + 1)
    await store.record_failure("ep1", "job-3", "FAILED", "oom", t + 2)
    await store.record_failure("ep2", "job-4", "FAILED", "x", t + 3)
    await store.record_failure("ep1", "job-0", "FAILED", "old", t - 100)
    assert await store.recent_failures("ep1", t - 10) == [
        {"job": "job-1", "status": "FAILED", "error": "boom", "seen_at": t},
        {"job": "job-2", "status": "TIMED_OUT", "error": None, "seen_at": t + 1},
        {"job": "job-3", "status": "FAILED", "error": "oom", "seen_at": t + 2}]

    await store.mark_retried("ep1", ["job-1"])
    # Requeued (by any route) at or after the failure was seen: left out.
    await store.audit(entry("job-2", at=t + 1))
    # Not left out: requeued before this failure, a refusal, another endpoint's job of the same id.
    await store.audit(entry("job-3", at=t + 1.5))
    await store.audit(entry("job-3", "refused:budget", at=t + 5))
    await store.audit(entry("job-3", at=t + 5, endpoint="ep2"))
    assert [r["job"] for r in await store.recent_failures("ep1", t - 10)] == ["job-3"]

    # Failing again after the retry: listed again (retried reset, seen after the requeue).
    await store.record_failure("ep1", "job-1", "FAILED", "again", t + 10)
    await store.record_failure("ep1", "job-2", "FAILED", "again", t + 11)
    assert [r["job"] for r in await store.recent_failures("ep1", t - 10)] == ["job-3", "job-1", "job-2"]
    assert [r["job"] for r in await store.recent_failures("ep2", t - 10)] == ["job-4"]


async def test_prune_forgets_old_state_but_keeps_the_audit_trail_and_open_work(store, stores):
    now = time.time()
    await store.save_alert("ep1", "job-1", "a")
    await store.save_storm("ep1/1", "s")
    await store.save_bulk("run-1", "b")
    await store.record_failure("ep1", "job-old", "FAILED", None, now - 100)
    await store.record_failure("ep1", "job-new", "FAILED", None, now)
    await store.audit(entry("job-old", at=now - 1000))
    open_work = await store.accept("click", {"n": 1}, now - 1000)
    await store.done(await store.accept("click", {"n": 2}, now - 1000))
    unsent, _ = await store.enqueue("post", "C1", {"n": 1}, now - 1000)
    sent, _ = await store.enqueue("post", "C1", {"n": 2}, now - 1000)
    assert await store.take(sent) is not None
    await store.sent(sent, "1.0")

    await store.prune(now - 50)
    assert [r["job"] for r in await store.recent_failures("ep1", 0)] == ["job-new"]
    assert await store.load_alert("ep1", "job-1") == "a"
    assert (await count_rows(store, "inbox"), await count_rows(store, "outbox")) == (1, 1)

    await store.prune(time.time() + 1)
    assert await store.load_alert("ep1", "job-1") is None
    assert await store.load_storm("ep1/1") is None
    assert await store.recent_bulks(0) == []
    assert await store.recent_failures("ep1", 0) == []
    assert [r["job"] for r in await store.history(10)] == ["job-old"]
    await store.hand_over()
    adopted = await (await stores("B")).adopt(time.time())
    assert [q.id for q in adopted.inbox] == [open_work]
    assert [q.id for q in adopted.outbox] == [unsent]


# ---------------------------------------------------------------- claims


async def test_one_claim_wins_among_ten_at_once(store, stores):
    instances = await replicas(store, stores, 3)
    now = time.time()
    results = await asyncio.gather(*(instances[i % len(instances)].claim("ep1", "job-1", f"U{i}", now)
                                     for i in range(10)))
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    [winner] = winners
    holder = await store.claimed("ep1", "job-1")
    assert holder == Claim(f"U{winner}", now, instances[winner % len(instances)].owner)
    assert all(result == holder for result in results if result is not None)


async def test_a_claim_holds_for_its_lease_then_can_be_taken_over(store, stores):
    other = await stores("B")
    t = time.time()
    assert await store.claimed("ep1", "job-1") is None
    assert await store.claim("ep1", "job-1", "U1", t) is None
    assert await other.claim("ep1", "job-1", "U2", t + 1) == Claim("U1", t, "A")
    assert await store.claim("ep1", "job-1", "U3", t + LEASE_SECONDS - 0.5) == Claim("U1", t, "A")
    assert await other.claim("ep1", "job-2", "U2", t) is None  # another job: its own claim

    assert await other.claim("ep1", "job-1", "U2", t + LEASE_SECONDS + 0.5) is None  # the lease ran out
    assert await store.claimed("ep1", "job-1") == Claim("U2", t + LEASE_SECONDS + 0.5, "B")


async def test_a_released_claim_can_be_taken_at_once(store, stores):
    other = await stores("B")
    t = time.time()
    assert await store.claim("ep1", "job-1", "U1", t) is None
    await store.release("ep1", "job-1")
    assert await store.claimed("ep1", "job-1") is None
    assert await other.claim("ep1", "job-1", "U2", t + 1) is None
    assert await store.claimed("ep1", "job-1") == Claim("U2", t + 1, "B")


# ---------------------------------------------------------------- inbox and adoption


async def test_inbox_work_moves_to_another_replica_when_its_lease_runs_out(store, stores):
    other = await stores("B")
    t = time.time()
    first = await store.accept("click", {"action": "retry", "job": "job-1"}, t)
    second = await store.accept("webhook", {"id": "job-2"}, t + 1)
    finished = await store.accept("command", {"text": "retry ep1 job-3"}, t)
    await store.done(finished)
    assert len({first, second, finished}) == 3

    assert (await other.adopt(t + 1)).inbox == []  # leases still running
    adopted = await other.adopt(t + LEASE_SECONDS + 0.5)  # the first one's ran out, the second's not yet
    assert [(q.id, q.kind, q.payload, q.created, q.attempts) for q in adopted.inbox] == [
        (first, "click", {"action": "retry", "job": "job-1"}, t, 0)]
    assert [q.id for q in (await other.adopt(t + LEASE_SECONDS + 1.5)).inbox] == [second]
    assert (await other.adopt(t + 1000)).inbox == []  # adopted already; done work is never adopted

    # Now the other replica's, on a fresh lease: the first can't take them back until that runs out too.
    assert (await store.adopt(t + LEASE_SECONDS + 2)).inbox == []
    assert [q.id for q in (await store.adopt(t + 2 * LEASE_SECONDS + 2)).inbox] == [first, second]


async def test_adopting_everything_takes_all_work_of_earlier_owners(store, stores):
    t = time.time()
    work = await store.accept("click", {"n": 1}, t)
    message, _ = await store.enqueue("post", "C1", {"text": "hi"}, t)
    await store.save_follow("ep1", "job-1", "f1")
    assert await store.claim("ep1", "job-1", "U1", t) is None  # with a follow: moves along
    assert await store.claim("ep1", "job-2", "U1", t) is None  # without: dropped

    lone = await stores("B")  # a lone instance starting: nothing of its predecessor is still running
    adopted = await lone.adopt(t, everything=True)
    assert [q.id for q in adopted.inbox] == [work]
    assert [(q.id, q.payload) for q in adopted.outbox] == [(message, {"text": "hi"})]
    assert adopted.follows == ["f1"]
    assert await lone.follows() == ["f1"]
    assert await lone.claimed("ep1", "job-1") == Claim("U1", t, "B")
    assert await lone.claimed("ep1", "job-2") is None
    assert [q.id for q in await lone.queued()] == [message]
    assert await store.queued() == []


async def test_a_claim_moves_with_its_followed_job(store, stores):
    other, third = await stores("B"), await stores("C")
    t = time.time()
    await store.save_follow("ep1", "job-1", "f1")
    assert await store.claim("ep1", "job-1", "U1", t) is None
    assert await store.claim("ep1", "job-2", "U1", t) is None

    later = t + LEASE_SECONDS + 5
    adopted = await other.adopt(later)
    assert adopted.follows == ["f1"]
    assert await other.claimed("ep1", "job-1") == Claim("U1", t, "B")
    assert await other.claimed("ep1", "job-2") == Claim("U1", t, "A")  # not followed: left to run out
    # The moved claim has a fresh lease: nobody else retries the followed job; the other one is free.
    assert await third.claim("ep1", "job-1", "U3", later + 1) == Claim("U1", t, "B")
    assert await third.claim("ep1", "job-2", "U3", later + 1) is None


async def test_renew_keeps_every_lease_of_this_replica(store, stores):
    other = await stores("B")
    t = time.time()
    assert await store.claim("ep1", "job-1", "U1", t) is None
    await store.save_follow("ep1", "job-2", "f2")
    work = await store.accept("click", {"n": 1}, t)
    message, _ = await store.enqueue("post", "C1", {"n": 1}, t)

    await store.renew(t + 10)
    expired_unless_renewed = t + LEASE_SECONDS + 3
    adopted = await other.adopt(expired_unless_renewed)
    assert (adopted.inbox, adopted.outbox, adopted.follows) == ([], [], [])
    assert await other.claim("ep1", "job-1", "U2", expired_unless_renewed) == Claim("U1", t, "A")

    adopted = await other.adopt(t + 10 + LEASE_SECONDS + 1)
    assert ([q.id for q in adopted.inbox], [q.id for q in adopted.outbox], adopted.follows) == (
        [work], [message], ["f2"])


async def test_hand_over_lets_another_replica_adopt_at_once(store, stores):
    other = await stores("B")
    t = time.time()
    work = await store.accept("click", {"n": 1}, t)
    message, _ = await store.enqueue("post", "C1", {"n": 1}, t)
    assert await store.take(message) is not None  # being sent when the replica stops
    await store.save_follow("ep1", "job-1", "f1")
    assert await store.claim("ep1", "job-1", "U1", t) is None
    assert await store.claim("ep1", "job-2", "U1", t) is None
    assert (await other.adopt(t)).inbox == []

    await store.hand_over()
    adopted = await other.adopt(t)  # no waiting for leases
    assert [q.id for q in adopted.inbox] == [work]
    assert [q.id for q in adopted.outbox] == [message]
    assert adopted.follows == ["f1"]
    assert await other.take(message) is not None  # back in the queue, the adopter's to send
    assert await other.claimed("ep1", "job-1") == Claim("U1", t, "B")
    assert await other.claim("ep1", "job-2", "U2", t) is None
    assert await store.queued() == []
    assert await store.follows() == []


async def test_slacks_answer_kept_before_a_stop_goes_with_the_row_to_its_adopter(store, stores):
    t = time.time()
    message, _ = await store.enqueue("post", "C1", {"n": 1}, t, after={"hook": "alert_posted"})
    taken = await store.take(message)
    assert taken is not None and taken.result is None
    await store.delivered(message, "1712345678.000200")  # posted; the replica stops before its hook has run
    await store.hand_over()
    other = await stores("B")
    [adopted] = (await other.adopt(t)).outbox
    assert (adopted.id, adopted.result) == (message, "1712345678.000200")
    again = await other.take(message)
    assert again is not None and again.result == "1712345678.000200"  # the adopter runs the hook, sends nothing
    await other.sent(message, "1712345678.000200")
    assert await other.queued() == []


async def test_adopt_never_gives_a_row_to_two_replicas(store, stores):
    t = time.time()
    inbox = {await store.accept("webhook", {"n": i}, t) for i in range(40)}
    outbox = {(await store.enqueue("post", "C1", {"n": i}, t))[0] for i in range(40)}
    for i in range(20):
        await store.save_follow("ep1", f"job-{i}", f"f{i}")
    await store.hand_over()

    # PostgreSQL: three replicas, each adopting twice at the same moment. SQLite: two instances on one file.
    adopters = [await stores("B"), await stores("C")] + ([await stores("D")] if store.shared else [])
    results = await asyncio.gather(*(a.adopt(t + 1) for a in adopters for _ in range(2)))
    for taken, expected in (([q.id for r in results for q in r.inbox], inbox),
                            ([q.id for r in results for q in r.outbox], outbox),
                            ([f for r in results for f in r.follows], {f"f{i}" for i in range(20)})):
        assert Counter(taken).most_common(1)[0][1] == 1, "a row adopted twice"
        assert set(taken) == expected


# ---------------------------------------------------------------- outbox


async def test_outbox_take_sent_later_and_queued(store, stores):
    t = time.time()
    first, merged = await store.enqueue("post", "C1", {"text": "one"}, t)
    assert not merged
    second, _ = await store.enqueue("update", "C2", {"ts": "1.0", "text": "two"}, t + 1, after={"thread": "1.0"})
    third, _ = await store.enqueue("post", "C1", {"text": "three"}, t + 2, news=True)
    assert first < second < third

    queued = await store.queued()
    assert [(q.id, q.kind, q.lane, q.payload, q.after, q.created, q.attempts, q.news) for q in queued] == [
        (first, "post", "C1", {"text": "one"}, None, t, 0, False),
        (second, "update", "C2", {"ts": "1.0", "text": "two"}, {"thread": "1.0"}, t + 1, 0, False),
        (third, "post", "C1", {"text": "three"}, None, t + 2, 0, True)]

    taken = await store.take(second)
    assert taken is not None and (taken.id, taken.payload, taken.after) == (
        second, {"ts": "1.0", "text": "two"}, {"thread": "1.0"})
    assert await store.take(second) is None  # being sent already
    other = await stores("B")
    assert await other.take(first) is None  # not the other replica's
    assert await other.queued() == []
    assert [q.id for q in await store.queued()] == [first, second, third]  # being sent still counts as unsent

    await store.later(second, t + 30, 1)
    retry = [q for q in await store.queued() if q.id == second]
    assert [(q.attempts, q.not_before) for q in retry] == [(1, t + 30)]
    assert (await store.take(second)) is not None
    await store.sent(second, "1712345678.000100")
    assert [q.id for q in await store.queued()] == [first, third]
    assert await store.take(second) is None
    assert await store.take(10_000) is None


async def test_enqueue_coalesces_into_a_queued_row_but_not_one_being_sent(store):
    t = time.time()
    row, merged = await store.enqueue("update", "C1", {"text": "v1"}, t, coalesce="C1/1.0")
    assert not merged
    assert await store.enqueue("update", "C1", {"text": "v2"}, t + 1, coalesce="C1/1.0") == (row, True)
    other_key, merged = await store.enqueue("update", "C1", {"text": "x"}, t, coalesce="C1/2.0")
    assert other_key != row and not merged
    plain = [await store.enqueue("post", "C1", {"text": "p"}, t) for _ in range(2)]
    assert plain[0][0] != plain[1][0] and not plain[0][1] and not plain[1][1]

    taken = await store.take(row)
    assert taken is not None and taken.payload == {"text": "v2"}  # only the newest state goes out
    newer, merged = await store.enqueue("update", "C1", {"text": "v3"}, t + 2, coalesce="C1/1.0")
    assert newer != row and not merged  # the one being sent is not changed under the sender
    assert await store.enqueue("update", "C1", {"text": "v4"}, t + 3, coalesce="C1/1.0") == (newer, True)
    payloads = {q.id: q.payload for q in await store.queued()}
    assert payloads[row] == {"text": "v2"}
    assert payloads[newer] == {"text": "v4"}


async def test_simultaneous_enqueues_with_one_key_make_one_row(store, stores):
    instances = await replicas(store, stores, 3)
    t = time.time()
    results = await asyncio.gather(*(instances[i % len(instances)].enqueue(
        "update", "C1", {"text": f"v{i}"}, t, coalesce="C1/1.0") for i in range(10)))
    assert len({row for row, _ in results}) == 1, results
    assert sorted(merged for _, merged in results) == [False] + [True] * 9
    assert await count_rows(store, "outbox") == 1


async def test_a_call_queued_once_under_a_key_is_queued_by_one_replica_only_and_never_again(store, stores):
    """A run's summary: of replicas queueing it at once (one took the run over from another that was only slow), one
    row; and once sent, queueing it again (a later takeover) finds it, with where it went."""
    instances = await replicas(store, stores, 3)
    t = time.time()
    results = await asyncio.gather(*(instances[i % len(instances)].enqueue(
        "post", "channel:C1", {"text": f"summary {i}"}, t, once="summary:bulk:C1/1.0#7") for i in range(10)))
    assert len({row for row, _ in results}) == 1, results
    assert sorted(merged for _, merged in results) == [False] + [True] * 9
    assert await count_rows(store, "outbox") == 1
    row = results[0][0]
    [owner] = [s for s in instances if row in {q.id for q in await s.queued()}]
    assert await store.said("summary:bulk:C1/1.0#7") == ("queued", None)
    assert await owner.take(row) is not None
    await owner.sent(row, "1700000000.000100")
    assert await store.said("summary:bulk:C1/1.0#7") == ("sent", "1700000000.000100")
    assert await store.enqueue("post", "channel:C1", {"text": "again"}, t + 60, once="summary:bulk:C1/1.0#7") == (
        row, True)
    assert await store.said("summary:bulk:C1/1.0#8") is None  # another run's summary is its own
    other, merged = await store.enqueue("post", "channel:C1", {"text": "other"}, t, once="summary:bulk:C1/1.0#8")
    assert other != row and not merged
    plain = [await store.enqueue("post", "channel:C1", {"text": "p"}, t) for _ in range(2)]  # no key: every time
    assert len({row, other, *(r for r, _ in plain)}) == 4
