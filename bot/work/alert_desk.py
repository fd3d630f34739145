"""The alert desk: posts failure alerts, keeps one alert per job, and keeps each alert's message current."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from bot.core import messages
from bot.core.alerts import (
    Alert,
    Phase,
    called,
    expired,
    failed_again_outside,
    finished,
    gave_up,
    interrupted,
    new_alert,
    next_retry_at,
    parse_job_body,
    progressed,
    refused,
    requeued,
    retrying,
)
from bot.core.health import Health
from bot.core.outcome import Outcome
from bot.infra.metrics import Metrics
from bot.infra.timing import REAL, Timing
from bot.slack.out import Place, SlackOut
from bot.slack.outbox import Delivery
from bot.store import Store
from bot.work.events import Ending, JobListener, MessageRef

log = logging.getLogger(__name__)

Key = tuple[str, str]
# Alerts untouched for this long leave memory (RunPod forgets the job after 30 minutes anyway); the store keeps them.
MEMORY_SECONDS = 24 * 3600.0
# The outbox hook that records where an alert was posted, whenever (and by whichever replica) Slack takes it.
POSTED_HOOK = "alert_posted"


class AlertDesk(JobListener):
    """Owns the alert messages. Subscribes to job events (bot.work.events) to keep each alert current."""

    def __init__(self, store: Store, out: SlackOut, metrics: Metrics, clock: Callable[[], float] = time.time, *,
                 max_retries: int | None = None, enabled: Callable[[str], bool] = lambda _endpoint: True,
                 audit_channel: str = "", channels: Collection[str] = (), timing: Timing = REAL):
        self.store = store
        # RunPod redelivers a webhook up to twice, 10 s apart: a second failure of the same job inside
        # `redelivery_window` is the same failure. Expired alerts lose Retry every `alert_sweep`; an alert that cannot
        # be posted is told to the audit channel at most every `undelivered_notice` per channel.
        self.timing = timing
        self.out = out
        self.metrics = metrics
        self.clock = clock
        # What keeps the buttons honest: the hourly retry budget, and which endpoints the app may call at all.
        self.max_retries = max_retries
        self.enabled = enabled
        self.channels = channels  # where retries are allowed (empty: anywhere); elsewhere alerts have no buttons
        self.audit_channel = audit_channel  # where an alert Slack refused is reported, with how to fix it
        self.workspace_url: str | None = None  # auth.test's `url`, for links to messages (set at start-up)
        self._alerts: dict[Key, Alert] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._blocked_until: dict[Key, float] = {}  # alerts drawn without Retry until their budget frees up
        self._undelivered_told: dict[str, float] = {}  # channel -> when the audit channel was last told
        self.undelivered: dict[str, float] = {}  # channel -> when an alert there was last refused by Slack
        self.stopping = asyncio.Event()  # shutdown began: a sweep under way stops between two alerts
        out.outbox.on_sent(POSTED_HOOK, self._posted)
        # The endpoint's latest health snapshot (cached, no I/O), shown while Retry is offered; set at wiring.
        self.health: Callable[[str], Health | None] = lambda _endpoint: None

    async def load(self) -> None:
        for data in await self.store.recent_alerts(self.clock() - MEMORY_SECONDS):
            alert = Alert.from_json(data)
            self._alerts[(alert.endpoint, alert.job)] = alert

    @asynccontextmanager
    async def lock(self, key: Key) -> AsyncIterator[None]:
        """One read-modify-write of the job's alert at a time: in this process, and with several replicas on a
        shared store across all of them (an advisory lock), so a failure redelivered to another replica finds
        the alert the first delivery posted."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not self.store.shared:
                yield
                return
            async with self.store.lock(f"alert:{key[0]}/{key[1]}"):
                yield

    async def get(self, endpoint: str, job: str) -> Alert | None:
        """The job's alert. With a shared store it is read from the database every time (another replica may
        have changed it); the cache serves a lone instance."""
        key = (endpoint, job)
        if key not in self._alerts or self.store.shared:
            data = await self.store.load_alert(endpoint, job)
            if data is not None:
                self._alerts[key] = Alert.from_json(data)
        return self._alerts.get(key)

    def render(self, alert: Alert) -> dict[str, Any]:
        """The alert's message now. Retry is drawn only when a click would be let through (see retry_block)."""
        now = self.clock()
        key = (alert.endpoint, alert.job)
        again = next_retry_at(alert, now, self.max_retries) if self.max_retries else None
        if again is not None and alert.retry_offered and now < alert.deadline:
            self._blocked_until[key] = again  # the sweep redraws it with Retry once the budget allows
        else:
            self._blocked_until.pop(key, None)
        return messages.alert_message(alert, now, max_retries=self.max_retries, enabled=self.enabled(alert.endpoint),
                                      health=self.health(alert.endpoint), channels=self.channels)

    def link(self, alert: Alert) -> str | None:
        return messages.permalink(self.workspace_url, alert.channel, alert.ts, alert.thread_ts) if alert.ts else None

    async def save(self, alert: Alert) -> Alert:
        """Remember the alert and bring its Slack message up to date."""
        self._alerts[(alert.endpoint, alert.job)] = alert
        await self.store.save_alert(alert.endpoint, alert.job, alert.to_json())
        if alert.ts:
            await self.out.update(alert.channel, alert.ts, self.render(alert), news=True)
        return alert

    async def post(self, alert: Alert) -> Alert:
        """Queue the alert's message and store the alert. Slack's trouble (a 5xx, a dropped connection, a restart
        in between) delays the post, never loses it: the outbox sends it, then `_posted` records its ts.

        Queued before it is stored: a crash between the two can post an alert twice, never lose one."""
        alert = replace(alert, ts=None, posting=True)
        await self.out.post_later(Place(alert.channel, thread_ts=alert.thread_ts), self.render(alert),
                                  after={"hook": POSTED_HOOK, "endpoint": alert.endpoint, "job": alert.job,
                                         "shown": _fingerprint(alert)})
        self._alerts[(alert.endpoint, alert.job)] = alert
        await self.store.save_alert(alert.endpoint, alert.job, alert.to_json())
        return alert

    async def _posted(self, after: dict[str, Any], delivery: Delivery) -> None:
        """The outbox sent (or could never send) an alert's message: record where it is."""
        key = (str(after.get("endpoint")), str(after.get("job")))
        async with self.lock(key):
            alert = await self.get(*key)
            if alert is None or alert.ts is not None:
                return
            if not delivery.ok or not delivery.ts:
                log.error("alert for job %s on %s could not be posted to %s (%s): invite the app to that channel "
                          "(/invite @RunPod Retry) or fix RUNPOD_ALERT_CHANNEL", alert.job, alert.endpoint,
                          alert.channel, delivery.error)
                alert = replace(alert, posting=False)  # a redelivered failure may try again
                self._alerts[key] = alert
                await self.store.save_alert(alert.endpoint, alert.job, alert.to_json())
                await self.tell_undelivered(alert.channel, alert.endpoint, alert.job, alert.status, alert.error)
                return
            self.undelivered.pop(alert.channel, None)
            log.info("alert for job %s on %s posted (ts %s)", alert.job, alert.endpoint, delivery.ts)
            changed = _fingerprint(alert) != after.get("shown")
            alert = replace(alert, ts=delivery.ts, posting=False)
            self.metrics.alerts.labels(kind="single").inc()
            details = messages.alert_error_details(alert)
            if details is not None:  # the alert shows the error's one line; its whole traceback goes in the thread
                await self.out.post_later(Place(alert.channel, thread_ts=alert.reply_thread), details)
            if changed:  # someone acted on the job while its alert was on its way: show that
                await self.save(alert)
            else:
                self._alerts[key] = alert
                await self.store.save_alert(alert.endpoint, alert.job, alert.to_json())

    async def tell_undelivered(self, channel: str, endpoint: str, job: str, status: str, error: str | None,
                               count: int = 1) -> None:
        """Slack refused an alert: an alert nobody sees must not vanish into a log line. The audit channel (when
        set, and not the broken channel itself) is told how to fix it, at most every 10 minutes per channel."""
        now = self.clock()
        self.undelivered[channel] = now
        if not self.audit_channel or self.audit_channel == channel:
            return
        if now - self._undelivered_told.get(channel, float("-inf")) < self.timing.undelivered_notice:
            return
        self._undelivered_told[channel] = now
        await self.out.post(Place(self.audit_channel), messages.alert_undelivered(endpoint, job, status, error,
                                                                                  channel, count), news=True)

    async def sweep_expired(self) -> int:
        """Redraw alerts whose retry deadline passed, so nobody presses a Retry that can no longer work; alerts
        whose retry budget freed up, so Retry comes back; then alerts untouched for MEMORY_SECONDS leave memory.
        Stops between two alerts as soon as shutdown begins. (Grouped alerts: `StormDesk.sweep_expired`.)"""
        now = self.clock()
        if self.store.shared:  # alerts other replicas posted or changed are swept too (whoever gets there first)
            await self.load()
        stale = [a for a in self._alerts.values() if a.ts and a.retry_offered and now >= a.deadline
                 and a.phase in (Phase.FAILED, Phase.FAILED_AGAIN, Phase.REFUSED)]
        for alert in stale:
            if self.stopping.is_set():
                return 0
            async with self.lock((alert.endpoint, alert.job)):
                current = await self.get(alert.endpoint, alert.job)
                if current == alert:  # unchanged while we waited for the lock
                    await self.save(expired(alert))
        freed = [key for key, until in self._blocked_until.items() if now >= until]
        for key in freed:
            if self.stopping.is_set():
                return 0
            async with self.lock(key):
                freed_alert = await self.get(*key)
                if freed_alert is not None and self._blocked_until.get(key, now + 1) <= now:
                    await self.save(freed_alert)
        self.forget_old(now)
        return len(stale)

    def forget_old(self, now: float) -> None:
        """Alerts untouched for MEMORY_SECONDS leave memory, and so do locks nobody holds: memory stays flat in a
        process that runs for months. `get` reads an alert back from the store if a late click needs it."""
        for key, alert in list(self._alerts.items()):
            lock = self._locks.get(key)
            if now - max(alert.ended_at, alert.acted_at or 0.0) > MEMORY_SECONDS and not (lock and lock.locked()):
                del self._alerts[key]
        for key in [k for k, lock in self._locks.items() if k not in self._alerts and not lock.locked()]:
            del self._locks[key]

    async def ended_elsewhere(self, endpoint: str, body: dict[str, Any]) -> Alert | None:
        """RunPod says the job ended (completed, cancelled) without this app retrying it: settle its alert."""
        job, _status = parse_job_body(body)
        async with self.lock((endpoint, job)):
            alert = await self.get(endpoint, job)
            if alert is None or alert.phase not in (Phase.FAILED, Phase.FAILED_AGAIN, Phase.REFUSED):
                return None
            return await self.save(finished(replace(alert, actor=None, acted_at=None), body, self.clock()))

    async def failure(self, endpoint: str, body: dict[str, Any], channel: str,
                      post: Callable[[Alert], Any] | None = None) -> tuple[str, Alert]:
        """A job failed. Returns ("posted" | "updated" | "duplicate", alert). One alert per job, ever."""
        fresh = new_alert(endpoint, body, channel, self.clock())
        key = (endpoint, fresh.job)
        async with self.lock(key):
            existing = await self.get(endpoint, fresh.job)
            if existing is not None and existing.ts is None and existing.posting:
                # Its message is on its way to Slack (queued through an outage, or a restart): the same failure.
                self.metrics.duplicates.labels(kind="webhook").inc()
                return "duplicate", existing
            if existing is None or existing.ts is None:
                # Never posted (Slack refused it for good): this delivery gets its chance to post it.
                log.info("failure of job %s on %s: alert queued%s", fresh.job, endpoint,
                         "" if existing is None else " again (the earlier one never reached Slack)")
                alert = await (post or self.post)(fresh)
                return "posted", alert
            recent = self.clock() - existing.ended_at < self.timing.redelivery_window
            # The same failure redelivered after someone acted on the alert (retried and it completed, or was
            # refused) must not turn the alert into "failed again".
            same_failure = (fresh.status, fresh.error) == (existing.status, existing.error)
            if recent and (existing.phase in (Phase.FAILED, Phase.FAILED_AGAIN) or same_failure):
                self.metrics.duplicates.labels(kind="webhook").inc()
                return "duplicate", existing
            if existing.phase in (Phase.RETRYING, Phase.REQUEUED) and await self._in_flight(endpoint, fresh.job):
                # A retry is in flight and its follower will report; this event is its echo or a race.
                self.metrics.duplicates.labels(kind="webhook").inc()
                return "duplicate", existing
            alert = await self.save(failed_again_outside(existing, body, self.clock()))
        # Outside the lock: waiting on Slack must not hold up the job's other events.
        await self.out.post(Place(alert.channel, thread_ts=alert.reply_thread), messages.alert_refailed(
            alert, self.clock(), max_retries=self.max_retries, enabled=self.enabled(alert.endpoint),
            channels=self.channels))
        return "updated", alert

    async def _in_flight(self, endpoint: str, job: str) -> bool:
        """Someone holds the job (a retry waiting for RunPod, or its follow): an alert saying so is current. With
        no claim, "retrying" is left over from work that was cut off, and a new failure is news."""
        try:
            return await self.store.claimed(endpoint, job) is not None
        except Exception:
            log.exception("could not check whether job %s on %s is being retried", job, endpoint)
            return True

    # ---------------------------------------------------------------- job events (see bot.work.events)

    async def retrying(self, user: str, endpoint: str, job: str, origin: MessageRef | None) -> None:
        async with self.lock((endpoint, job)):
            alert = await self.get(endpoint, job)
            if origin is not None and (alert is None or alert.ts != origin.ts):
                # A button on a message this app has no record of (lost database, or posted elsewhere): adopt it.
                alert = Alert(endpoint=endpoint, job=job, channel=origin.channel, status="FAILED",
                              ended_at=self.clock(), ts=origin.ts, thread_ts=origin.thread_ts)
            if alert is not None and (alert.ts or alert.posting) and alert.phase is not Phase.COMPLETED:
                # A completed alert keeps saying so while a late retry is asked; RunPod will refuse it anyway.
                await self.save(retrying(alert, user, self.clock()))

    async def retried(self, user: str, endpoint: str, job: str, outcome: Outcome,
                      report: MessageRef | None = None) -> None:
        async with self.lock((endpoint, job)):
            alert = await self.get(endpoint, job)
            if alert is not None and (alert.ts or alert.posting):
                now = self.clock()
                if outcome.may_have_taken_effect:  # what the enforced budget counts: the button must agree
                    alert = called(alert, now)
                if alert.phase is Phase.COMPLETED and not outcome.ok:
                    # A late retry of a job that already completed after a retry: the alert already says how it
                    # ended, and "could not be retried" would turn that success into a warning.
                    self._alerts[(endpoint, job)] = alert
                    await self.store.save_alert(endpoint, job, alert.to_json())
                    return
                if report is None or report.ts == alert.reply_thread:
                    url = None  # reported in the alert's own thread
                else:  # elsewhere: a command's thread, a bulk run's message ("" where no link can point)
                    url = messages.permalink(self.workspace_url, report.channel, report.ts) if report.ts else ""
                alert = requeued(alert, user, now, outcome.job_status) if outcome.ok else refused(alert, outcome)
                await self.save(replace(alert, report_url=url))

    async def retry_interrupted(self, endpoint: str, job: str) -> None:
        async with self.lock((endpoint, job)):
            alert = await self.get(endpoint, job)
            if alert is not None and alert.phase is Phase.RETRYING:
                await self.save(interrupted(alert))

    async def progressed(self, endpoint: str, job: str, status: str) -> None:
        async with self.lock((endpoint, job)):
            alert = await self.get(endpoint, job)
            if alert is not None and (alert.ts or alert.posting) and alert.phase is Phase.REQUEUED \
                    and alert.job_status != status:
                await self.save(progressed(alert, status))

    async def ended(self, ending: Ending) -> None:
        final = ending.final
        async with self.lock(ending.key):
            alert = await self.get(ending.endpoint, ending.job)
            if alert is not None and (alert.ts or alert.posting) and alert.phase in (Phase.RETRYING, Phase.REQUEUED):
                await self.save(finished(alert, final, self.clock()) if final is not None
                                else gave_up(alert, ending.reason))


def _fingerprint(alert: Alert) -> str:
    """The alert's state as its message shows it (where it was posted left out)."""
    return hashlib.sha256(replace(alert, ts=None, posting=False).to_json().encode()).hexdigest()[:16]
