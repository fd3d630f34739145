"""The exactly-once claim (bot/work/claims.py) never leaks: whatever ends the work holding it (a refusal, an error,
a cancellation at shutdown, even a cancellation while the database is taking the claim), the job can be claimed
again; a follow that takes the claim over keeps it until the follow ends. Run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.infra.tasks import Background
from bot.store import Claim, Store, open_store
from bot.work.claims import Claims
from bot.work.events import Ending


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    target = str(request.getfixturevalue("pg_url")) if request.param == "postgres" else str(tmp_path / "c.db")
    opened = open_store(target, "A")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def claims(store: Store) -> AsyncIterator[Claims]:
    background = Background()
    yield Claims(store, background)
    await background.drain(2.0)


async def test_a_claim_is_held_inside_the_block_and_released_after_it(claims: Claims, store: Store):
    async with claims.hold("ep1", "job-1", "U1") as hold:
        assert hold.ours
        assert (await store.claimed("ep1", "job-1")).user == "U1"  # type: ignore[union-attr]
        async with claims.hold("ep1", "job-1", "U2") as second:
            assert not second.ours and second.taken_by is not None and second.taken_by.user == "U1"
        assert (await store.claimed("ep1", "job-1")).user == "U1"  # type: ignore[union-attr]  # not the loser's
    assert await store.claimed("ep1", "job-1") is None


async def test_an_error_inside_the_block_releases_the_claim(claims: Claims, store: Store):
    with pytest.raises(RuntimeError):
        async with claims.hold("ep1", "job-1", "U1"):
            raise RuntimeError("Slack or the store broke mid-retry")
    assert await store.claimed("ep1", "job-1") is None


async def test_a_cancelled_block_releases_the_claim(claims: Claims, store: Store):
    inside = asyncio.Event()

    async def work() -> None:
        async with claims.hold("ep1", "job-1", "U1"):
            inside.set()
            await asyncio.sleep(60)  # RunPod is slow; shutdown cancels the work

    task = asyncio.create_task(work())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.claimed("ep1", "job-1") is None


async def test_cancelled_while_the_database_takes_the_claim_it_is_still_released(claims: Claims, store: Store):
    taking = asyncio.Event()
    real_claim = store.claim

    async def slow_claim(endpoint: str, job: str, user: str, now: float) -> Claim | None:
        result = await real_claim(endpoint, job, user, now)  # the database took it...
        taking.set()
        await asyncio.sleep(0.2)                              # ...and its answer is slow to come back
        return result

    store.claim = slow_claim  # type: ignore[method-assign]

    async def work() -> None:
        async with claims.hold("ep1", "job-1", "U1"):
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await taking.wait()
    task.cancel()  # before the claim's answer came back: nobody would know the claim is ours
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # the database's answer arrives
    await claims.background.idle(5.0)
    assert await store.claimed("ep1", "job-1") is None


async def test_a_claim_kept_for_a_follow_lasts_until_the_follow_ends(claims: Claims, store: Store):
    async with claims.hold("ep1", "job-1", "U1") as hold:
        hold.keep_for_follow()
    assert (await store.claimed("ep1", "job-1")).user == "U1"  # type: ignore[union-attr]
    async with claims.hold("ep1", "job-1", "U2") as later:
        assert not later.ours
    await claims.ended(Ending("ep1", "job-1", {"status": "COMPLETED"}))
    assert await store.claimed("ep1", "job-1") is None


async def test_a_followed_jobs_release_the_database_refused_fails_the_ending_to_be_told_again(
        claims: Claims, store: Store):
    """Not left to the background, where it could come after the follow was gone and end someone's new claim: the
    follower tells the ending again until the release is taken, and only then lets go of the follow."""
    async with claims.hold("ep1", "job-1", "U1") as hold:
        hold.keep_for_follow()
    refuse_one_release(store)
    with pytest.raises(RuntimeError):
        await claims.ended(Ending("ep1", "job-1", {"status": "COMPLETED"}))
    assert len(claims.background) == 0 and await store.claimed("ep1", "job-1") is not None
    await claims.ended(Ending("ep1", "job-1", {"status": "COMPLETED"}))  # told again
    assert await store.claimed("ep1", "job-1") is None


async def test_an_ending_told_again_after_its_claim_was_released_leaves_a_new_claim_alone(claims: Claims,
                                                                                           store: Store):
    """The follow's ending releases its own claim; told again later (its replica was killed before it let go of the
    follow, and another replica resumed it), it must not end the claim someone took on the job in between."""
    async with claims.hold("ep1", "job-1", "U1") as hold:
        hold.keep_for_follow()
    ending = Ending("ep1", "job-1", {"status": "COMPLETED"}, claim_at=hold.at)
    await claims.ended(ending)
    async with claims.hold("ep1", "job-1", "U2") as newer:  # someone retries the job again
        assert newer.ours
        await claims.ended(ending)  # the old follow's ending, told again
        assert (await store.claimed("ep1", "job-1")).user == "U2"  # type: ignore[union-attr]
    assert await store.claimed("ep1", "job-1") is None


def refuse_one_release(store: Store) -> None:
    """The database refuses the next release (it is away for a moment)."""
    real_release = store.release
    failures = [RuntimeError("database away")]

    async def flaky_release(endpoint: str, job: str, at: float | None = None) -> None:
        if failures:
            raise failures.pop()
        await real_release(endpoint, job, at)

    store.release = flaky_release  # type: ignore[method-assign]


async def test_a_release_the_database_refused_is_tried_again(claims: Claims, store: Store, monkeypatch):
    monkeypatch.setattr(claims, "release_pauses", (0.05, 0.05))
    refuse_one_release(store)
    async with claims.hold("ep1", "job-1", "U1"):
        pass
    await claims.background.idle(5.0)
    assert await store.claimed("ep1", "job-1") is None
    assert await store.claim("ep1", "job-1", "U2", time.time()) is None


async def test_a_claim_written_whose_answer_was_lost_is_released_once_the_database_is_back(
        claims: Claims, store: Store, monkeypatch):
    """A restart at the commit: the claim is in the table but the attempt was told the database failed. This replica
    renews its claims' leases, so left there it would refuse the job until the replica stops."""
    from bot.store import StoreUnavailable

    monkeypatch.setattr(claims, "release_pauses", (0.05, 0.05))
    real_claim = store.claim

    async def lost_answer(endpoint: str, job: str, user: str, now: float) -> Any:
        await real_claim(endpoint, job, user, now)
        raise StoreUnavailable("connection lost at the commit")

    store.claim = lost_answer  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        async with claims.hold("ep1", "job-1", "U1"):
            pass
    store.claim = real_claim  # type: ignore[method-assign]
    await claims.background.idle(5.0)
    assert await store.claimed("ep1", "job-1") is None


async def test_a_late_release_never_ends_a_newer_claim_on_the_job(claims: Claims, store: Store, monkeypatch):
    """A release waiting for the database is made before the job is claimed again, and the background one that was
    waiting then ends nothing: the new claim holds until its own block ends."""
    monkeypatch.setattr(claims, "release_pauses", (0.3,))
    refuse_one_release(store)
    async with claims.hold("ep1", "job-1", "U1"):
        pass
    async with claims.hold("ep1", "job-1", "U1") as again:
        assert again.ours, "its own earlier claim was released first, not met as 'already being retried'"
        await asyncio.sleep(0.5)  # the background release's turn came and went
        assert (await store.claimed("ep1", "job-1")) is not None
    assert await store.claimed("ep1", "job-1") is None
