"""The kill switch of automatic retries, and their breaker.

People pause automatic retries on one endpoint or on every one (`/runpod-retry auto pause`, the Home tab's Pause
all), for a while or until someone resumes, and resume them; the breaker pauses an endpoint by itself when its
automatic retries keep failing again. A paused endpoint's failures are alerted for people to decide.

The same access rules as retrying apply: who may pause or resume an endpoint is who may retry its jobs. Every pause
and resume is audited (and reaches the audit channel like other audit lines); the alert channel is told in one line
when a person pauses or resumes, and once, with a Resume button, when the breaker trips.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bot.core import messages
from bot.core.breaker import BREAKER, BREAKER_LAST, BREAKER_PAUSE, BREAKER_WINDOW, should_trip
from bot.core.messages.auto import breaker_reason
from bot.core.policies import COMPLETED, EVERY_ENDPOINT, FAILED_AGAIN, Pause, Policy
from bot.core.words import utc
from bot.infra.config import Settings
from bot.infra.metrics import Metrics
from bot.slack.out import Place, SlackOut
from bot.store import AuditEntry, Store
from bot.work.access import AccessPolicy
from bot.work.who import Source, Who

log = logging.getLogger(__name__)

PAUSED, RESUMED = "auto:pause", "auto:resume"  # audit outcomes


def _lasts(pause: Pause) -> float:
    return math.inf if pause.until is None else pause.until


class AutoSwitch:
    def __init__(self, store: Store, out: SlackOut, access: AccessPolicy, metrics: Metrics, settings: Settings,
                 clock: Callable[[], float] = time.time, *,
                 record: Callable[[AuditEntry], Awaitable[None]] | None = None,
                 changed: Callable[[], Awaitable[object]] | None = None) -> None:
        self.store = store
        self.out = out
        self.access = access
        self.metrics = metrics
        self.policies: tuple[Policy, ...] = settings.policies
        self.alert_channel = settings.alert_channel
        self.clock = clock
        # How an audit entry is written: the retry service's `record` (kept until the database takes it, and sent
        # to the audit channel) in the app; the store alone otherwise.
        self.record = record or store.audit
        self.changed = changed  # what the Home tab shows changed: it is redrawn

    # ---------------------------------------------------------------- for the automatic retries

    async def paused(self, endpoint: str) -> Pause | None:
        """The active pause covering the endpoint (its own, or every endpoint's): the one lasting longest."""
        covering = [p for p in await self.store.auto_pauses(self.clock()) if p.scope in (EVERY_ENDPOINT, endpoint)]
        return max(covering, key=_lasts, default=None)

    async def finished(self, endpoint: str) -> None:
        """An automatic retry on the endpoint ended (its COMPLETED or FAILED_AGAIN is recorded): trip the breaker
        when half or more of the endpoint's last automatic retries failed again within its window."""
        now = self.clock()
        ended = [(at, result == FAILED_AGAIN) for at, result in await self.store.auto_results(endpoint,
                                                                                                now - BREAKER_WINDOW)
                 if result in (COMPLETED, FAILED_AGAIN)]
        if not should_trip(ended, now):
            return
        newest = sorted((r for r in ended if r[0] <= now), reverse=True)[:BREAKER_LAST]
        await self.trip(endpoint, breaker_reason(sum(1 for _, failed in newest if failed), len(newest)))

    async def trip(self, endpoint: str, reason: str) -> None:
        """Pause the endpoint's automatic retries for BREAKER_PAUSE. Whichever replica's call takes the pause tells
        the alert channel, once; the others (and a pause already on) say nothing."""
        now = self.clock()
        pause = Pause(endpoint, now + BREAKER_PAUSE, BREAKER, reason, now)
        if not await self.store.pause_auto(pause):
            return
        log.warning("the breaker paused automatic retries on %s for %.0f minutes: %s", endpoint, BREAKER_PAUSE / 60,
                    reason, extra={"endpoint": endpoint})
        await self.record(AuditEntry(BREAKER, self.alert_channel, endpoint, "", BREAKER, PAUSED,
                                     detail=f"until {utc(now + BREAKER_PAUSE)}: {reason}"[:300], at=now))
        if self.alert_channel:
            await self.out.post_later(Place(self.alert_channel), messages.breaker_notice(pause, now))
        await self._changed()

    # ---------------------------------------------------------------- `/runpod-retry auto …` and the buttons

    async def show(self, who: Who) -> None:
        """The policies and their state, to the person who asked."""
        now = self.clock()
        pauses = await self.store.auto_pauses(now) if self.policies else []
        await self._tell(who, messages.auto_listing(self.policies, pauses, now))

    async def pause(self, who: Who, scope: str, duration: float | None) -> None:
        """Pause automatic retries on `scope` (an endpoint, or EVERY_ENDPOINT) for `duration` seconds, or until
        resumed. A longer pause replaces a shorter one; a pause as long or longer already on is left as it is."""
        if not self.policies:
            await self._tell(who, messages.no_policies())
            return
        if scope != EVERY_ENDPOINT and not any(p.covers(scope) for p in self.policies):
            await self._tell(who, messages.auto_not_covered(scope))
            return
        if await self._refused(who, scope, "Nothing was paused"):
            return
        now = self.clock()
        pause = Pause(scope, None if duration is None else now + duration, who.user, "", now)
        current = next((p for p in await self.store.auto_pauses(now) if p.scope == scope), None)
        if current is not None:
            if _lasts(current) >= _lasts(pause):
                await self._tell(who, messages.already_paused(current, now))
                return
            await self.store.resume_auto(scope)  # replaced by the longer one, at once
        if not await self.store.pause_auto(pause):  # someone else paused it a moment ago
            current = next((p for p in await self.store.auto_pauses(now) if p.scope == scope), pause)
            await self._tell(who, messages.already_paused(current, now))
            return
        until = "until someone resumes them" if pause.until is None else f"until {utc(pause.until)}"
        await self.record(AuditEntry(who.user, who.channel, scope, "", who.source, PAUSED, detail=until, at=now))
        await self._tell(who, messages.paused_confirm(pause, now))
        await self._tell_team(who.user, scope, pause, now)
        await self._changed()

    async def resume(self, who: Who, scope: str, *, notice: tuple[str, str] | None = None) -> None:
        """Lift the pause on `scope`; EVERY_ENDPOINT lifts every pause. `notice`: the breaker's message (channel, ts)
        whose Resume was pressed, brought up to date."""
        if await self._refused(who, scope, "Nothing was resumed"):
            return
        now = self.clock()
        active = await self.store.auto_pauses(now)
        targets = active if scope == EVERY_ENDPOINT else [p for p in active if p.scope == scope]
        lifted: list[Pause] = []
        for target in targets:
            gone = await self.store.resume_auto(target.scope)
            if gone is not None and _lasts(gone) > now:
                lifted.append(gone)
        if not lifted:
            await self._tell(who, messages.not_paused(scope))
            return
        for gone in lifted:
            await self.record(AuditEntry(who.user, who.channel, gone.scope, "", who.source, RESUMED, at=now))
        still = next((p for p in active if p.scope == EVERY_ENDPOINT and scope != EVERY_ENDPOINT), None)
        await self._tell(who, messages.resumed_confirm(scope, still, now))
        if notice is not None and (breaker := next((p for p in lifted if p.by == BREAKER), None)):
            await self.out.update(notice[0], notice[1], messages.breaker_resumed(breaker, who.user, now))
        await self._tell_team(who.user, scope, None, now)
        await self._changed()

    # ---------------------------------------------------------------- shared

    def _endpoints(self, scope: str) -> list[str | None]:
        """The endpoints a person needs access to for `scope`: the one; for every endpoint, each endpoint the
        policies name that the app may call (every allowed one when a policy covers all; None: any endpoint)."""
        if scope != EVERY_ENDPOINT:
            return [scope]
        named = {e for p in self.policies for e in p.endpoints}
        endpoints = sorted(self.access.endpoints) if EVERY_ENDPOINT in named else sorted(
            e for e in named if self.access.enabled(e))
        return [*endpoints] or [None]

    async def _refused(self, who: Who, scope: str, nothing: str) -> bool:
        """The access rules of retrying, for every endpoint `scope` covers. True (and the person told) when refused.
        From the Home tab, which is in no channel, the channel is the alert channel, where automatic retries act."""
        channel = self.alert_channel if who.source is Source.HOME and self.alert_channel else who.channel
        for endpoint in self._endpoints(scope):
            reason = await self.access.refusal(who.user, channel, endpoint, "retry")
            if reason is not None:
                self.metrics.refusals.labels(reason="access").inc()
                await self._tell(who, messages.refusal(f"{nothing}. {reason}"))
                return True
        return False

    async def _tell(self, who: Who, msg: messages.Message) -> None:
        await self.out.ephemeral(who.channel, who.user, msg, who.response_url)

    async def _tell_team(self, user: str, scope: str, pause: Pause | None, now: float) -> None:
        """One line in the alert channel: posted with plain names, then edited to mentions (no notification for
        the person who did it)."""
        if not self.alert_channel:
            return
        ts = await self.out.post(Place(self.alert_channel), messages.switch_line(user, scope, pause, now,
                                                                                  mentions=False))
        if ts:
            await self.out.update(self.alert_channel, ts, messages.switch_line(user, scope, pause, now))

    async def _changed(self) -> None:
        if self.changed is None:
            return
        try:
            await self.changed()
        except Exception:  # the Home tab is redrawn later anyway; the pause itself is done
            log.warning("could not tell the Home tabs that automatic retries changed", exc_info=True)


def from_home(who: Who) -> Who:
    """A click on the Home tab: answered in the person's messages with the app."""
    return replace(who, source=Source.HOME, response_url=None)
