"""Following a retried job until it ends, then saying how it ended where the retry was asked for."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bot.core import messages, words
from bot.core.alerts import BUDGET_WINDOW
from bot.core.outcome import RETENTION_SECONDS, RETRYABLE, TERMINAL, classify_error
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.infra.metrics import Metrics
from bot.infra.tasks import Background
from bot.infra.timing import REAL, Timing
from bot.runpod import RunPodClient, RunPodError
from bot.slack.out import Place, SlackOut
from bot.store import Store, StoreUnavailable
from bot.work.events import Ending, JobEvents, JobListener

log = logging.getLogger(__name__)

GROWTH = 1.5
# After this many failed status checks in a row the thread is told, once, that checks are failing.
WARN_AFTER_ERRORS = 5
# While the database is away, how long between tries to say how a job ended (and to let go of it).
STORE_RETRY_FIRST = 1.0
STORE_RETRY_MAX = 10.0

Key = tuple[str, str]


@dataclass(frozen=True)
class FollowTarget:
    endpoint: str
    job: str
    channel: str
    thread_ts: str | None
    user: str
    source: str
    started: float
    response_url: str | None = None
    quiet: bool = False   # part of a bulk run: report to the job events only, not with a thread post of its own
    run: str = ""         # the bulk run or grouped alert it belongs to ("bulk:…", "storm:…"), as the retry said
    claim_at: float = 0.0  # when the claim the follow holds was taken: its ending releases that claim only
    reply: str = ""        # the outbox key of the retry's reply: a follow taken over says the ending after it
    # Its ending is in the outbox already (it goes out whoever sends it): a follow taken over after a death only
    # finishes up with these, it does not say the ending again.
    said_resumed: bool = False    # "following it again" is in the outbox: a later takeover does not say it again
    ended: bool = False
    final: dict[str, Any] | None = None
    reason: str = ""

    @property
    def key(self) -> Key:
        return (self.endpoint, self.job)

    @classmethod
    def from_json(cls, text: str) -> FollowTarget:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}  # rows saved by older versions may carry fields since removed
        return cls(**{k: v for k, v in data.items() if k in known})

    def place(self) -> Place:
        return Place(self.channel, thread_ts=self.thread_ts, response_url=self.response_url,
                     via_response_url=self.thread_ts is None and self.response_url is not None)


class Follower:
    def __init__(self, runpod: RunPodClient, out: SlackOut, store: Store, events: JobEvents, metrics: Metrics,
                 settings: Settings, background: Background, clock: Callable[[], float] = time.time,
                 timing: Timing = REAL):
        self.max_interval = timing.follow_max_interval  # status checks grow apart up to this
        self.timing = timing
        self.runpod = runpod
        self.out = out
        self.store = store
        self.events = events
        self.metrics = metrics
        self.settings = settings
        self.background = background
        self.clock = clock
        self._active: dict[Key, FollowTarget] = {}
        self._nudges: dict[Key, asyncio.Event] = {}
        self._news: dict[Key, dict[str, Any]] = {}
        self._handing_over = False

    def following(self, endpoint: str, job: str) -> FollowTarget | None:
        return self._active.get((endpoint, job))

    def __len__(self) -> int:
        return len(self._active)

    async def start(self, target: FollowTarget, *, resumed: bool = False,
                    after: asyncio.Future[Any] | None = None) -> None:
        """Follow the job (stored first: whoever resumes it after a restart or a death reads it). `after`: the
        retry's reply on its way; the first look waits for it, so that in a busy channel the job's ending takes its
        turn after every reply already queued, not between them."""
        if self._handing_over:
            # Shutting down: only remember the job, so the next start follows it.
            if not resumed:
                await self._save(target)
            return
        self._active[target.key] = target
        self._nudges[target.key] = asyncio.Event()
        self.metrics.followed.set(len(self._active))
        unsaved = False
        if not resumed:
            try:
                await self._save(target)
            except StoreUnavailable as exc:
                # RunPod took the retry: its follow must not fail with the database (the run would call the job
                # "not retried", and its ending would be shown nowhere). It is stored before the first look instead.
                log.warning("could not store the follow yet; it starts once the database is back: %s", exc,
                            extra=ctx(endpoint=target.endpoint, job=target.job))
                unsaved = True
        self.background.spawn(self._follow(target, resumed, unsaved=unsaved, after=after),
                              name=f"follow {target.endpoint}/{target.job}")

    async def _save(self, target: FollowTarget) -> None:
        """The follow as the store keeps it: what whoever resumes it (after a restart, or a replica's death) reads."""
        await self.store.save_follow(target.endpoint, target.job, json.dumps(asdict(target)))

    def nudge(self, endpoint: str, job: str, body: dict[str, Any]) -> bool:
        """RunPod's webhook says how the job is doing: use it instead of waiting for the next poll."""
        key = (endpoint, job)
        if key not in self._active:
            return False
        self._news[key] = body
        self._nudges[key].set()
        return True

    def hand_over(self) -> None:
        """Shutting down: every follow stops at its next wait and stays stored, so the next start resumes it.

        Waiting for followed jobs to end would hold a restart for as long as a job runs.
        """
        self._handing_over = True
        for event in self._nudges.values():
            event.set()

    async def resume_all(self) -> int:
        """Pick up the jobs that were being followed when the app stopped. Never waits on Slack (each follow says
        it resumed from its own task), and one follow's trouble does not keep the others or the start back."""
        count = 0
        for data in await self.store.follows():
            try:
                target = FollowTarget.from_json(data)
                if target.key in self._active:
                    continue
                await self.start(target, resumed=True)
            except Exception:
                log.exception("could not resume following a job (stored as %s)", data[:200])
                continue
            count += 1
        return count

    async def _wait(self, key: Key, seconds: float) -> dict[str, Any] | None:
        event = self._nudges[key]
        try:
            await asyncio.wait_for(event.wait(), timeout=max(seconds, 0))
        except TimeoutError:
            return None
        event.clear()
        return self._news.pop(key, None)

    async def _follow(self, target: FollowTarget, resumed: bool, *, unsaved: bool = False,
                      after: asyncio.Future[Any] | None = None) -> None:
        key = target.key
        log_ctx = ctx(user=target.user, endpoint=target.endpoint, job=target.job, source=target.source)
        interval = self.settings.follow_interval
        deadline = target.started + self.settings.follow_max
        too_long = f"it had not ended after {words.duration(self.settings.follow_max)}"
        last_status: str | None = None
        errors = 0
        final: dict[str, Any] | None = None
        reason = ""
        if target.ended:
            await self._finish(target, target.final, target.reason, None, turn=target.started)  # read on a resume
            return
        if unsaved and not await self._until_stored(target, "store the follow", lambda: self._save(target)):
            self._forget(key)  # shutting down first: the retry's own record is settled by whoever adopts it
            return
        # Resumed after a restart: look at once, and say "following it again" only when the job is still running
        # (one that ended meanwhile gets its ending, not two posts in a channel that may be queueing at Slack's pace).
        look_now = resumed
        # Taken over (a replica died) or resumed after a restart, the ending is late already: it takes its turn in the
        # channel from when the job was retried, not behind everything queued since (the chaos run's alert channel
        # put such an ending 45 s after its job's end).
        turn = target.started if resumed else None
        say_resumed = resumed and not target.quiet and not target.said_resumed
        try:
            if after is not None:
                waited_from = self.clock()
                await asyncio.wait({after})  # its failure is the reply's to log
                deadline += self.clock() - waited_from  # the channel's queue is not the job's time
            while True:
                # Past the deadline (also when it passed while the app was down): one last look, then give up.
                last_look = deadline - self.clock() <= 0
                claimed: dict[str, Any] | None = None
                if look_now:
                    look_now = False
                elif not last_look:
                    news = await self._wait(key, min(interval, deadline - self.clock()))
                    if self._handing_over:
                        self._forget(key)
                        return
                    news_status = str((news or {}).get("status", "")).upper()
                    if news_status in TERMINAL and news_status not in RETRYABLE:
                        final = news
                        break
                    if news_status in RETRYABLE:
                        # RunPod documents duplicate deliveries: this may be the very failure that was retried.
                        # It is believed only when /status, asked right now, says the same.
                        claimed = news
                try:
                    reply = await self.runpod.status(target.endpoint, target.job)
                except RunPodError as exc:
                    outcome = classify_error(target.endpoint, target.job, exc)
                    if exc.status == 404:
                        reason = ("RunPod no longer knows the job (its result expired, or it outlived the time "
                                  "limit it was submitted with)")
                        break
                    if last_look:
                        reason = too_long
                        break
                    errors += 1
                    log.warning("status check failed (%s), will keep trying", outcome.kind, extra=log_ctx)
                    if errors == WARN_AFTER_ERRORS and not target.quiet:
                        await self._say(target, messages.follow_trouble(target.endpoint, target.job,
                                                                        outcome.summary))
                    interval = min(interval * GROWTH * 2, self.max_interval)
                    continue
                errors = 0
                status = (reply.job_status or "").upper()
                if status in TERMINAL:
                    # A confirmed failure event keeps its own body (RunPod's error text for this run).
                    confirmed = claimed is not None and str(claimed.get("status", "")).upper() == status
                    final = claimed if confirmed else reply.body
                    break
                if say_resumed:
                    say_resumed = False
                    target = replace(target, said_resumed=True)
                    await self._say(target, messages.follow_resumed(target.endpoint, target.job),
                                    queued=functools.partial(self._save, target))
                if claimed is not None:
                    log.info("ignored a %s event for a job that is %s (a redelivery of the retried failure)",
                             claimed.get("status"), status or "unknown", extra=log_ctx)
                if status and status != last_status:
                    try:
                        await self.events.progressed(target.endpoint, target.job, status)
                        last_status = status
                    except StoreUnavailable as exc:  # shown at the next check after the database is back
                        log.warning("could not show that the job is %s: %s", status, exc, extra=log_ctx)
                if last_look:
                    reason = too_long
                    break
                interval = min(interval * GROWTH, self.max_interval)
        except asyncio.CancelledError:
            # Shutting down: the follow stays in the store and resumes on the next start.
            self._forget(key)
            raise
        except Exception:
            # Never a follow that silently stops: /healthz would count it and the job would stay claimed.
            log.exception("following failed", extra=log_ctx)
            final, reason = None, "the app hit an unexpected error while following it (it is in the app's log)"
        await self._finish(target, final, reason, last_status, turn=turn)

    async def _limit(self, target: FollowTarget, now: float) -> str | None:
        """The retry limit's words when the job's hourly budget is spent, so the end of a follow never says "it can be
        retried until …" of a job the app would refuse."""
        try:
            times = await self.store.retry_times(target.endpoint, target.job, now - BUDGET_WINDOW)
        except StoreUnavailable as exc:  # the ending goes out without the limit's words
            log.warning("could not count the job's recent retries: %s", exc, extra=ctx(endpoint=target.endpoint,
                                                                                         job=target.job))
            return None
        except Exception:
            log.exception("could not count the job's recent retries", extra=ctx(endpoint=target.endpoint,
                                                                                 job=target.job))
            return None
        limit = self.settings.max_retries_per_job
        again = words.next_allowed(times, limit, BUDGET_WINDOW)
        return None if again is None else words.retry_limit(limit, again, now + RETENTION_SECONDS)

    async def _say(self, target: FollowTarget, msg: messages.Message,
                   queued: Callable[[], Awaitable[Any]] | None = None) -> None:
        """A progress note in the thread: Slack's trouble costs this note, never the follow."""
        try:
            await self.out.post(target.place(), msg, queued=queued)
        except Exception:
            log.exception("could not post a note about a followed job",
                          extra=ctx(endpoint=target.endpoint, job=target.job))

    def _forget(self, key: Key) -> None:
        self._active.pop(key, None)
        self._nudges.pop(key, None)
        self._news.pop(key, None)
        self.metrics.followed.set(len(self._active))

    async def _until_stored(self, target: FollowTarget, what: str, step: Callable[[], Awaitable[Any]]) -> bool:
        """Run `step` until the database takes it: a job that ends while the database is away still has its
        ending said (and its follow let go) once it is back. False when the app is shutting down first: then the
        follow stays stored, and whoever adopts it says the ending."""
        wait = STORE_RETRY_FIRST
        while True:
            try:
                await step()
                return True
            except StoreUnavailable as exc:
                if self._handing_over:
                    return False
                log.warning("could not %s, trying again in %g s: %s", what, wait, exc,
                            extra=ctx(endpoint=target.endpoint, job=target.job))
                await asyncio.sleep(wait)
                wait = min(wait * 2, STORE_RETRY_MAX)

    async def _say_ending(self, target: FollowTarget, final: dict[str, Any] | None, reason: str,
                          last_status: str | None, turn: float | None) -> bool:
        """Post how the job ended, once: as soon as the post is in the outbox the stored follow says so, so that a
        replica taking the follow over after this one dies does not post it again. False: shutting down first."""
        if final is not None:
            now = self.clock()
            msg = messages.follow_outcome(target.endpoint, target.job, final, target.user, now=now,
                                          limit=await self._limit(target, now))
        else:
            msg = messages.follow_gave_up(target.endpoint, target.job, reason, last_status)
        place = target.place()
        done = replace(target, ended=True, final=final, reason=reason)
        queued = False
        if turn is not None and target.reply:
            await self._after_reply(target)

        async def mark() -> None:
            nonlocal queued
            queued = True
            await self._until_stored(target, "note that the ending is queued",
                                     lambda: self._save(done))

        async def post() -> None:
            if not queued:  # the database failing after the post was queued must not queue it again
                await self.out.post(place, msg, queued=mark, turn=turn)

        return await self._until_stored(target, "say how the job ended", post)

    async def _after_reply(self, target: FollowTarget) -> None:
        """A follow taken over says the ending (with the retry's turn, ahead of the channel's backlog) once the
        retry's reply has gone, wherever it is queued: the dead replica's calls may have gone to another replica than
        its follows, and the thread must read reply, then ending. At most a lease: a reply Slack keeps refusing does
        not cost the ending."""
        deadline = self.clock() + self.timing.lease
        while self.clock() < deadline:
            try:
                state = await self.store.said(target.reply)
            except StoreUnavailable:
                state = ("queued", None)
            if state is None or state[0] not in ("queued", "sending"):
                return
            await asyncio.sleep(self.timing.outbox_store_pause)

    async def _finish(self, target: FollowTarget, final: dict[str, Any] | None, reason: str,
                      last_status: str | None, *, turn: float | None = None) -> None:
        """Say how the job ended, tell the listeners of job events (the alert, a run's tally, the job's claim, the
        Home tab), and only then let go of the stored follow: a replica killed before the last step leaves the follow
        stored, and whoever resumes it tells them again (each takes the same ending twice as once), where letting go
        first lost the ending with the kill. While the database is away each step waits for it; shutting down
        meanwhile keeps the follow stored for the next owner."""
        key = target.key
        log_ctx = ctx(endpoint=target.endpoint, job=target.job)
        kept = False
        try:
            try:
                if not target.quiet and not target.ended:
                    kept = not await self._say_ending(target, final, reason, last_status, turn)
            except Exception:
                log.exception("could not say how a followed job ended", extra=log_ctx)
            if not kept:
                kept = not await self._tell_ended(target, final, reason, turn)
            log.info("followed job ended: %s", (final or {}).get("status", "unknown"),
                     extra=ctx(user=target.user, endpoint=target.endpoint, job=target.job))
        finally:
            self._forget(key)
        if kept:
            return
        try:
            await self._until_stored(target, "let go of the follow",
                                     lambda: self.store.drop_follow(target.endpoint, target.job))
        except Exception:
            log.exception("could not forget a follow that ended", extra=log_ctx)

    async def _tell_ended(self, target: FollowTarget, final: dict[str, Any] | None, reason: str,
                          turn: float | None) -> bool:
        """Every listener of job events, each until the database takes it. False: shutting down first."""
        ending = Ending(target.endpoint, target.job, final, reason, target.user, target.run, target.claim_at, turn)
        untold: list[JobListener] | None = None

        async def tell() -> None:
            nonlocal untold
            untold = await self.events.ended(ending, only=untold)
            if untold:
                raise StoreUnavailable(f"{len(untold)} listeners are still to be told how the job ended")

        return await self._until_stored(target, "show how the job ended", tell)
