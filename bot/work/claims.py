"""Exactly once: the claim on a job, held in the store so every replica sees it, taken and released only here.

A claim is taken when someone asks to retry a job and lives until the retry is answered, or, when RunPod requeued
the job, until the follow of the retried job ends (`Hold.keep_for_follow`, then `Claims.ended`, which the follower
tells until the database takes it). Whatever
happens in between (a refusal, an error, a Slack or RunPod outage, a shutdown that cancels the work), leaving the
`hold()` block releases the claim unless a follow took it over: a claim cannot leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bot.infra.logs import ctx
from bot.infra.tasks import Background
from bot.infra.timing import REAL, Timing
from bot.store import Claim, Store
from bot.work.events import Ending, JobListener

log = logging.getLogger(__name__)



@dataclass
class Hold:
    """One attempt's claim on a job. `taken_by` is set when someone else holds the job: nothing is ours then."""

    endpoint: str
    job: str
    user: str
    at: float = 0.0      # when the claim was asked for: a late release ends this claim only
    taken_by: Claim | None = None
    kept: bool = False   # a follow of the retried job holds the claim now, and ends it
    sent: bool = False   # the retry went to RunPod (its answer may still be missing)

    @property
    def ours(self) -> bool:
        return self.taken_by is None

    def keep_for_follow(self) -> None:
        self.kept = True


class Claims(JobListener):
    """Who holds each job right now; a job-events listener: the follow that held a job's claim ended."""

    def __init__(self, store: Store, background: Background, clock: Callable[[], float] = time.time,
                 timing: Timing = REAL):
        self.store = store
        # A release the database did not take (it was away) is tried again after these pauses; meanwhile the lease
        # is still renewed by this replica, so the job stays refused until it goes through.
        self.release_pauses = timing.release_retry_pauses
        self.background = background
        self.clock = clock
        self.timing = timing
        # Releases waiting for the database, by job: the moment the claim was taken (the release ends that one only).
        self._unreleased: dict[tuple[str, str], float] = {}

    async def outlive_the_dead(self, endpoint: str, job: str) -> None:
        """Wait, at most a lease and a half, for another replica's claim on the job to run out. For work taken over
        from a replica that died: the job it had claimed but not yet written down as sent was never sent, and its
        claim only runs out with its lease. Returns at once when nobody else holds the job, and as soon as the claim
        shows its holder alive (renewed, every third of a lease, or taken anew): waiting out a live claim held a
        settled retry's reply back 22 s in the chaos run, and the claim stayed theirs anyway."""
        deadline = time.monotonic() + 1.5 * self.timing.lease
        first: Claim | None = None
        while time.monotonic() < deadline:
            claim = await self.store.claimed(endpoint, job)
            if claim is None or claim.owner == self.store.owner or claim.until < self.clock():
                return
            if first is None:
                first = claim
            elif claim.owner != first.owner or claim.until > first.until or claim.at != first.at:
                return
            await asyncio.sleep(self.timing.bulk_settle_poll)

    @contextlib.asynccontextmanager
    async def hold(self, endpoint: str, job: str, user: str) -> AsyncIterator[Hold]:
        """Claim the job for `user` for the length of the block. Check `Hold.ours` first."""
        await self._release_leftover(endpoint, job)
        hold = Hold(endpoint, job, user, at=self.clock())
        hold.taken_by = await self._take(hold)
        try:
            yield hold
        finally:
            if hold.ours and not hold.kept:
                await self._release(endpoint, job, hold.at)

    async def ended(self, ending: Ending) -> None:
        """The follow that held the job's claim ended: the job can be retried again. The database failing the release
        fails this event, and the follower tells it again before it lets go of the follow. Only the follow's own
        claim ends: told again (its answer lost, or its replica killed before the follow was let go), it must not
        end a claim someone took on the job in between."""
        await self.store.release(ending.endpoint, ending.job, ending.claim_at or None)

    async def _take(self, hold: Hold) -> Claim | None:
        endpoint, job = hold.endpoint, hold.job
        # Shielded: a cancellation while the database answers must not leave a claim nobody knows is ours.
        taking = asyncio.ensure_future(self.store.claim(endpoint, job, hold.user, hold.at))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(lambda done: self._taken_too_late(done, endpoint, job, hold.at))
            raise
        except Exception:
            # The database may have written the claim and lost its answer (a restart at the commit). This replica
            # renews its claims' leases, so that claim would refuse the job until the replica stops: end it, if it
            # is there, once the database is back.
            self._release_in_background(endpoint, job, hold.at)
            raise

    def _taken_too_late(self, taking: asyncio.Future[Claim | None], endpoint: str, job: str, at: float) -> None:
        if not taking.cancelled() and taking.exception() is None and taking.result() is None:
            self._release_in_background(endpoint, job, at)

    async def _release(self, endpoint: str, job: str, at: float) -> None:
        """The one place a held claim ends (a followed job's: `ended`). Runs to the end even when the work around it
        is being cancelled; when the database is away, it is tried again in the background (this replica keeps the
        lease until then), and ends only the claim taken at `at`."""
        releasing = asyncio.ensure_future(self.store.release(endpoint, job, at))
        try:
            await asyncio.shield(releasing)
            return
        except asyncio.CancelledError:
            releasing.add_done_callback(lambda done: self._released_late(done, endpoint, job, at))
            raise
        except Exception as exc:
            log.warning("could not release the claim on a job (%s); trying again", type(exc).__name__,
                        extra=ctx(endpoint=endpoint, job=job))
        self._release_in_background(endpoint, job, at)

    def _released_late(self, releasing: asyncio.Future[None], endpoint: str, job: str, at: float) -> None:
        if releasing.cancelled() or releasing.exception() is not None:
            self._release_in_background(endpoint, job, at)

    def _release_in_background(self, endpoint: str, job: str, at: float) -> None:
        self._unreleased[(endpoint, job)] = at
        self.background.spawn(self._release_later(endpoint, job, at), name=f"release {endpoint}/{job}")

    async def _release_leftover(self, endpoint: str, job: str) -> None:
        """A release of the job still waiting for the database is made now, before the job is claimed again: a retry
        tried again after an outage would otherwise meet its own claim ("already being retried, by you")."""
        key = (endpoint, job)
        if key in self._unreleased:
            at = self._unreleased[key]
            await self.store.release(endpoint, job, at)
            self._released(key, at)

    async def _release_later(self, endpoint: str, job: str, at: float) -> None:
        key = (endpoint, job)
        for delay in self.release_pauses:
            await asyncio.sleep(delay)
            if key not in self._unreleased or self._unreleased[key] != at:  # made already, before a new claim
                return
            try:
                await self.store.release(endpoint, job, at)
            except Exception:
                log.warning("could not release the claim on a job; trying again", extra=ctx(endpoint=endpoint,
                                                                                             job=job))
                continue
            self._released(key, at)
            return
        log.error("could not release the claim on a job; it stays refused until this replica stops",
                  extra=ctx(endpoint=endpoint, job=job))

    def _released(self, key: tuple[str, str], at: float) -> None:
        if key in self._unreleased and self._unreleased[key] == at:
            del self._unreleased[key]
