"""Between replicas, through the store (both backends): a lock lets one holder in at a time for its name only and is
let go on error and cancellation; a published event reaches every subscriber, the publisher included."""
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.store import Store
from testkit.polling import wait_until

# The two-backend fixtures (store, stores, target) and helpers of test_store.py, so these run on SQLite and PostgreSQL:
# its fixtures are imported under their own names, which the tests then take as parameters.
from tests.process.test_store import listening, pair, replicas, store, stores, target  # noqa: F401


async def enter(store: Store, name: str, log: list[str] | None = None) -> None:
    async with store.lock(name):
        if log is not None:
            log.append(name)


async def test_lock_excludes_others_for_its_name_only(store, stores):
    mine, theirs = await pair(store, stores)
    async with mine.lock("alert ep1/job-1"):
        async with asyncio.timeout(5), theirs.lock("alert ep1/job-2"):  # another name: no waiting
            pass
        waiting = asyncio.create_task(enter(theirs, "alert ep1/job-1"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 5)


async def test_lock_lets_one_holder_in_at_a_time(store, stores):
    instances = await replicas(store, stores, 3)
    inside: list[str] = []
    most = 0

    async def work(i: int) -> None:
        nonlocal most
        async with instances[i % len(instances)].lock("storm ep1"):
            inside.append(f"w{i}")
            most = max(most, len(inside))
            await asyncio.sleep(0.01)
            inside.remove(f"w{i}")

    await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(12))), 30)
    assert most == 1


async def test_lock_is_let_go_on_error_and_on_cancellation(store, stores):
    mine, theirs = await pair(store, stores)
    with pytest.raises(RuntimeError):
        async with mine.lock("x"):
            raise RuntimeError("the work failed")
    await asyncio.wait_for(enter(theirs, "x"), 5)

    held = asyncio.Event()

    async def hold() -> None:
        async with mine.lock("x"):
            held.set()
            await asyncio.sleep(60)

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(held.wait(), 5)
    holder.cancel()  # cancelled while holding
    with contextlib.suppress(asyncio.CancelledError):
        await holder
    await asyncio.wait_for(enter(theirs, "x"), 5)

    async with theirs.lock("x"):
        waiter = asyncio.create_task(enter(mine, "x"))
        await asyncio.sleep(0.3)
        waiter.cancel()  # cancelled while waiting: must not end up holding it
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    await asyncio.wait_for(enter(mine, "x"), 5)
    await asyncio.wait_for(enter(theirs, "x"), 5)


async def test_publish_reaches_every_subscriber_the_publisher_included(store, stores):
    instances = await replicas(store, stores, 2)
    got: dict[str, list[str]] = {s.owner: [] for s in instances}
    elsewhere: list[str] = []
    for s in instances:
        s.subscribe("job-events", got[s.owner].append)
        s.subscribe("job_events", elsewhere.append)  # a topic that differs only in what a channel name allows
    await listening(*instances)

    await instances[0].publish("job-events", "ended ep1/job-1")
    await instances[-1].publish("job-events", "ended ep1/job-2")
    await wait_until(lambda: all(len(messages) == 2 for messages in got.values()), 5.0, "the notification", step=0.01)
    assert all(messages == ["ended ep1/job-1", "ended ep1/job-2"] for messages in got.values())
    await instances[0].publish("job_events", "other")
    await wait_until(lambda: len(elsewhere) == len(instances), 5.0, "the notification", step=0.01)
    await asyncio.sleep(0.05)
    assert all(len(messages) == 2 for messages in got.values())


async def test_a_message_published_right_after_subscribing_reaches_the_new_subscriber(store):
    got: list[str] = []
    store.subscribe("fresh", got.append)  # no waiting in between: the publisher's own subscription must count
    await store.publish("fresh", "first")
    await wait_until(lambda: got == ["first"], 5.0, "the notification", step=0.01)
