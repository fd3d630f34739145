"""The Home tab: drawn for a person when they open it, and kept current while they may be looking (job events,
new failures), at most once per `Timing.home_min_interval` per person and only when what it shows changed, so
views.publish (Tier 4, about 100 a minute) is never flooded. A Retry there goes where a retry of that job belongs.

Several replicas: whoever changes something tells the others (store.publish), so a Home opened on one replica
follows work done on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.core import messages
from bot.core.messages.home import MAX_FAILURES
from bot.core.outcome import RETENTION_SECONDS, Outcome
from bot.core.policies import Pause
from bot.infra.config import Settings
from bot.store import Store
from bot.work.access import AccessPolicy
from bot.work.events import Ending, JobListener, MessageRef
from bot.work.follow import FollowTarget
from bot.work.health import EndpointHealth
from bot.work.retry import RetryService
from bot.work.storms import StormDesk
from bot.work.threads import retry_in_thread
from bot.work.who import Source, Who

log = logging.getLogger(__name__)

MAX_VIEWERS = 500
TOPIC = "home"
DAY = 24 * 3600.0


@dataclass
class _Shared:
    """What every viewer's Home shows alike, read once per redraw round."""

    now: float
    failures: list[messages.Failure]
    more: int
    following: list[messages.Followed]
    attempts: list[dict[str, Any]]
    stats: list[messages.EndpointStats]
    pauses: list[Pause]


class HomeDesk(JobListener):
    """Draws Home tabs; a job-events listener (bot.work.events) that redraws the ones being looked at."""

    def __init__(self, service: RetryService, storms: StormDesk, health: EndpointHealth, settings: Settings,
                 clock: Callable[[], float] = time.time):
        self.service = service
        self.timing = service.timing  # home_active, home_min_interval, home_idle_redraw, home_tell_every
        self.storms = storms
        self.health = health
        self.settings = settings
        self.store: Store = service.store
        self.access: AccessPolicy = service.access
        self.clock = clock
        self._viewers: dict[str, float] = {}   # user -> when they last opened Home
        self._drawn: dict[str, float] = {}     # user -> when their Home was last drawn
        self._keys: dict[str, str] = {}        # user -> what their Home showed (messages.home_key)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._told = 0.0
        self._tell_pending = False
        self.store.subscribe(TOPIC, self._heard)

    # ---------------------------------------------------------------- being looked at

    def _heard(self, owner: str) -> None:
        if owner != self.store.owner:  # another replica changed something
            self._mark_all()

    def _mark_all(self) -> None:
        now = self.clock()
        self._dirty.update(u for u, at in self._viewers.items() if now - at < self.timing.home_active)
        if self._dirty:
            self._wake.set()

    async def opened(self, user: str) -> None:
        """app_home_opened: draw it now, then keep it current for a while."""
        now = self.clock()
        self._viewers[user] = now
        if now - self._drawn.get(user, 0) >= self.timing.home_min_interval:
            self._keys.pop(user, None)  # opened again a while later: publish even if nothing changed
        if len(self._viewers) > MAX_VIEWERS:
            oldest = min(self._viewers, key=self._viewers.__getitem__)
            for table in (self._viewers, self._drawn, self._keys):
                table.pop(oldest, None)
        await self.draw([user])

    async def changed(self) -> None:
        """Something a Home shows changed: redraw the Homes being looked at (paced), here and on other replicas."""
        self._mark_all()
        if self.store.shared:
            self._tell_pending = True
            await self._tell()

    async def _tell(self) -> None:
        if not self._tell_pending or self.clock() - self._told < self.timing.home_tell_every:
            return
        self._tell_pending, self._told = False, self.clock()
        try:
            await self.store.publish(TOPIC, self.store.owner)
        except Exception:
            log.warning("could not tell other replicas that a Home tab changed", exc_info=True)

    async def keep_current(self, stop: asyncio.Event) -> None:
        """Until `stop`: redraw the Homes marked changed (at most every `home_min_interval` each), and the active
        ones at least every `home_idle_redraw` (deadlines pass without any event)."""
        t = self.timing
        while not stop.is_set():
            self._wake.clear()
            now = self.clock()
            for user in [u for u, at in self._viewers.items() if now - at >= t.home_active]:
                self._viewers.pop(user, None)
                self._dirty.discard(user)
            due = [u for u in self._viewers
                   if (u in self._dirty and now - self._drawn.get(u, 0) >= t.home_min_interval)
                   or now - self._drawn.get(u, 0) >= t.home_idle_redraw]
            try:
                if due:
                    self._dirty.difference_update(due)
                    await self.draw(due)
                await self._tell()
            except Exception:  # the database away, say: try again at the next round
                log.exception("could not bring the Home tabs up to date")
            waits = [t.home_min_interval - (now - self._drawn.get(u, 0)) for u in self._dirty]
            waits += [t.home_idle_redraw - (now - self._drawn.get(u, 0)) for u in self._viewers]
            timeout = max(t.home_min_wait, min([*waits, t.home_idle_redraw]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._either(stop), timeout=timeout)

    async def _either(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # ---------------------------------------------------------------- drawing

    async def _shared(self) -> _Shared:
        now = self.clock()
        rows = await self.store.unretried_failures(now - RETENTION_SECONDS, MAX_FAILURES + 1)
        following = [FollowTarget.from_json(data) for data in await self.store.followed_jobs(50)]
        following.sort(key=lambda t: t.started, reverse=True)
        url = self.service.workspace_url
        followed = [messages.Followed(t.endpoint, t.job, t.user, t.started,
                                      messages.permalink(url, t.channel, t.thread_ts) if t.thread_ts else None)
                    for t in following]
        stats = [messages.EndpointStats(**row) for row in await self.store.retry_stats(now - DAY)]
        failures = [await self._failure(row) for row in rows[:MAX_FAILURES]]
        pauses = await self.store.auto_pauses(now) if self.settings.policies else []
        return _Shared(now, failures, max(0, len(rows) - MAX_FAILURES), followed, await self.store.history(10), stats,
                       pauses)

    async def _failure(self, row: dict[str, Any]) -> messages.Failure:
        """A failure as everyone's Home shows it; `blocked` says why Retry is not offered to anyone."""
        endpoint, job = str(row["endpoint"]), str(row["job"])
        seen = float(row["seen_at"])
        alert = await self.service.alert(endpoint, job)
        storm = self.storms.holding(endpoint, job)
        if alert is not None and alert.ts:
            channel: str | None = alert.channel
            url = messages.permalink(self.service.workspace_url, alert.channel, alert.ts, alert.thread_ts)
        elif storm is not None and storm.ts:
            channel, url = storm.channel, messages.permalink(self.service.workspace_url, storm.channel, storm.ts)
        else:
            channel, url = None, None
        blocked = None
        if not self.access.enabled(endpoint):
            blocked = "Retries are not enabled for this endpoint (RUNPOD_RETRY_ENDPOINTS)."
        elif self.access.channels and channel not in self.access.channels:
            # A Retry here reports where the job's alert is, else in your direct messages with the app.
            blocked = "Retry it with the command in a channel where retries are enabled."
        else:
            blocked = await self.service.retry_limit(endpoint, job)
        return messages.Failure(endpoint, job, str(row["status"]), row.get("error"), seen, seen + RETENTION_SECONDS,
                                blocked, url)

    async def _view(self, user: str, shared: _Shared) -> dict[str, Any]:
        may = await self.access.may_act(user)
        access = messages.Access(may, tuple(sorted(self.access.channels)), tuple(sorted(self.access.endpoints)),
                                 self.access.who_may(), self.settings.max_retries_per_job)
        failures = [f if may is True or f.blocked else replace(f, blocked="You may not retry it (see above).")
                    for f in shared.failures]
        health = [h for s in shared.stats if (h := self.health.peek(s.endpoint)) is not None]
        return messages.home_view(user, shared.now, access, failures, shared.following, shared.attempts,
                                  shared.stats, more_failures=shared.more, health=health,
                                  refresh=self.timing.home_min_interval, kept=self.timing.home_active,
                                  policies=self.settings.policies, pauses=shared.pauses)

    async def draw(self, users: list[str]) -> None:
        """Publish each user's Home if what it shows changed since it was last published."""
        try:
            shared = await self._shared()
        except Exception:
            log.exception("could not read what the Home tab shows")
            return
        for user in users:
            try:
                view = await self._view(user, shared)
            except Exception:
                log.exception("could not draw the Home tab of %s", user)
                continue
            self._drawn[user] = self.clock()
            key = messages.home_key(view)
            if self._keys.get(user) == key:
                continue
            await self.service.out.publish_home(user, view)
            self._keys[user] = key  # after: a publish that failed is tried again at the next redraw

    # ---------------------------------------------------------------- its Retry buttons

    async def retry(self, who: Who, endpoint: str, job: str, *, once: str | None = None) -> None:
        """A Retry on the Home tab. The result goes where this job's retry belongs: its alert's thread (the alert
        updates as if its own Retry was pressed), else its grouped alert's thread, else the person's direct messages
        with the app (a request and the result in its thread). `once`: the request's key for its first message."""
        who = replace(who, source=Source.HOME, response_url=None)
        try:
            alert = await self.service.alert(endpoint, job)
            storm = self.storms.holding(endpoint, job)
            if alert is not None and alert.ts:
                await self.service.retry_from_button(replace(who, channel=alert.channel), endpoint, job,
                                                     alert.channel, alert.ts, alert.thread_ts)
            elif storm is not None and storm.ts:
                await retry_in_thread(self.service, replace(who, channel=storm.channel), endpoint, job,
                                      storm.channel, storm.ts, once=once)
            else:
                await self.service.retry_from_command(replace(who, channel=who.user), endpoint, job, once=once)
        finally:
            self._dirty.add(who.user)
            self._wake.set()

    # ---------------------------------------------------------------- job events (see bot.work.events)

    async def retrying(self, user: str, endpoint: str, job: str, origin: MessageRef | None) -> None:
        await self.changed()

    async def retried(self, user: str, endpoint: str, job: str, outcome: Outcome,
                      report: MessageRef | None = None) -> None:
        await self.changed()

    async def retry_interrupted(self, endpoint: str, job: str) -> None:
        await self.changed()

    async def progressed(self, endpoint: str, job: str, status: str) -> None:
        """IN_QUEUE to IN_PROGRESS: nothing the Home shows."""

    async def ended(self, ending: Ending) -> None:
        status = str((ending.final or {}).get("status") or "UNKNOWN").upper()
        try:
            await self.store.record_retry_end(ending.endpoint, ending.job, status, self.clock())
        finally:
            await self.changed()
