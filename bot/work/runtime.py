"""The running app's parts, built once and wired together; start-up and shutdown in one place."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import messages
from bot.core.alerts import BadJobBody, parse_job_body
from bot.core.outcome import RETRYABLE, TERMINAL
from bot.core.worker_errors import error_summary
from bot.infra.config import Settings
from bot.infra.metrics import Metrics
from bot.infra.tasks import Background, every
from bot.infra.timing import Timing
from bot.runpod import RunPodClient
from bot.runpod.limits import RunPodLimits
from bot.slack.out import SlackOut, make_client
from bot.slack.outbox import Outbox
from bot.store import Queued, Store, StoreUnavailable, open_store
from bot.work.access import AccessPolicy
from bot.work.alert_desk import AlertDesk
from bot.work.auto_switch import AutoSwitch
from bot.work.bulk import BulkRunner
from bot.work.channels import ChannelState, channel_report, check_channels
from bot.work.engine import Engine
from bot.work.events import JobEvents
from bot.work.follow import Follower
from bot.work.health import EndpointHealth
from bot.work.home import HomeDesk
from bot.work.recent import RecentFailures
from bot.work.retry import RetryService
from bot.work.settle import settle
from bot.work.single import RETRY_REQUEST, SingleRetries
from bot.work.storms import StormDesk
from bot.work.who import Who

if TYPE_CHECKING:
    from bot.work.auto import AutoRetrier

T = TypeVar("T")
log = logging.getLogger(__name__)

# Alerts, storms and seen failures older than this are dropped at start-up; the audit trail is kept.
KEEP_SECONDS = 7 * 24 * 3600.0
# Replicas tell each other about webhooks for followed jobs on this topic: the one following the job ends it at once.
FOLLOW_TOPIC = "follow"
MAX_FOLLOW_NEWS = 7000  # bytes; a bigger webhook body is announced without it (its follower asks /status instead)


class Runtime:
    """Everything a listener needs, and nothing global."""

    def __init__(self, settings: Settings, *, client: AsyncWebClient | None = None, store: Store | None = None,
                 timing: Timing | None = None):
        self.settings = settings
        # The one clock every part that waits is given: the real one, unless RUNPOD_RETRY_TIME_SCALE shrinks it.
        self.timing = timing if timing is not None else Timing().scaled(settings.time_scale)
        self.metrics = Metrics()
        self.background = Background()
        self.client = client or make_client(settings.slack_bot_token, settings.slack_api_url)
        self.store = store or open_store(settings.db_path, timing=self.timing)
        # The outbox retries and paces its own calls: its client has no retry handlers of slack_sdk's.
        self.outbox_client = AsyncWebClient(token=self.client.token, base_url=self.client.base_url,
                                            timeout=self.client.timeout, retry_handlers=[])
        self.outbox = Outbox(self.store, self.outbox_client, self.metrics, timing=self.timing)
        self.out = SlackOut(self.outbox)
        self.runpod = RunPodClient(settings.runpod_api_url, settings.runpod_api_key,
                                   endpoint_keys=settings.runpod_endpoint_keys, timeout=settings.runpod_timeout,
                                   max_attempts=settings.runpod_max_attempts, timing=self.timing,
                                   observe=self.metrics.observe_runpod,
                                   rate_limits=RunPodLimits(timing=self.timing,
                                                            observe=self.metrics.observe_runpod_rate),
                                   on_rate_limited=lambda _endpoint, op: self.metrics.rate_limited.labels(
                                       platform="runpod", method=op).inc())
        self.access = AccessPolicy(settings, self._group_members, timing=self.timing)
        self.desk = AlertDesk(self.store, self.out, self.metrics, max_retries=settings.max_retries_per_job,
                              enabled=self.access.enabled, audit_channel=settings.audit_channel,
                              channels=self.access.channels, timing=self.timing)
        self.events = JobEvents()
        self.events.subscribe(self.desk)
        self.follower = Follower(self.runpod, self.out, self.store, self.events, self.metrics, settings,
                                 self.background, timing=self.timing)
        self.service = RetryService(self.runpod, self.out, self.store, self.events, self.follower, self.access,
                                    self.metrics, settings, self.background, alert_of=self.desk.get,
                                    timing=self.timing)
        self.bulk = BulkRunner(self.service, settings)
        self.storms = StormDesk(self.bulk, self.desk, settings)
        self.bulk.storm_run = self.storms.run_of
        self.recent = RecentFailures(self.bulk)
        # Endpoint health beside alerts, confirmations and summaries; the Home tab kept current by job events.
        self.health = EndpointHealth(self.runpod, self.access.enabled, configured=bool(settings.runpod_api_key),
                                     timing=self.timing)
        self.desk.health = self.storms.health = self.health.peek
        self.bulk.health = self.health
        self.home = HomeDesk(self.service, self.storms, self.health, settings)
        self.events.subscribe(self.home)
        self.single = SingleRetries(self.service, self.home)  # one job's retry asked for by a person
        # The kill switch and breaker of automatic retries (retry policies); its audit lines go the retries' way.
        self.switch = AutoSwitch(self.store, self.out, self.access, self.metrics, settings, record=self.service.record,
                                 changed=self.home.changed)
        # Retry policies run on the durable-work engine; without policies neither is loaded.
        self.auto: AutoRetrier | None = None
        if settings.policies:
            from bot.work.auto import AutoRetrier
            self.auto = AutoRetrier(settings.policies, Engine(settings.db_path, self.store, self.timing), self.desk,
                                    self.service, self.switch, self.health, self.store, self.out, self.metrics,
                                    self.timing)
        self.auth: dict[str, Any] | None = None
        self.channel_states: list[ChannelState] = []
        self._stopping = self.desk.stopping  # one event: shutdown began
        self._sweeper: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._home: asyncio.Task[None] | None = None
        self.database_lost_at: float | None = None  # when the database was last found unreachable (None: fine)
        if self.store.shared:
            self.store.subscribe(FOLLOW_TOPIC, self._followed_elsewhere)

    @property
    def database_lost(self) -> bool:
        return self.database_lost_at is not None

    def database_state(self, reachable: bool) -> None:
        """What a lease renewal, /healthz or a request found: logged once when it changes."""
        if reachable and self.database_lost_at is not None:
            log.warning("the database is reachable again (it was away for %.0f s)", time.time() - self.database_lost_at)
            self.database_lost_at = None
        elif not reachable and self.database_lost_at is None:
            log.error("the database (RUNPOD_RETRY_DB) cannot be reached; commands and clicks are answered with "
                      "'try again in a minute' until it is back")
            self.database_lost_at = time.time()

    async def _group_members(self, group: str) -> list[str]:
        response = await self.client.usergroups_users_list(usergroup=group)
        return list(response.get("users") or [])

    async def open(self, *, engine: bool = False) -> None:
        """Connect and load. `engine`: also launch the durable-work engine, which resumes the workflows the last
        run left; only the server does, never a one-off command beside it (`python -m bot retry`)."""
        if self.client.session is None:
            # One pooled session for every Web API call; without it slack_sdk opens a session and a connection
            # per call, which is most of the app's CPU in a burst of commands (bench/).
            self.client.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        self.outbox_client.session = self.client.session
        await self.store.open()
        await self.store.prune(time.time() - KEEP_SECONDS)
        await self.desk.load()
        await self.storms.load()
        await self.bulk.load()
        if engine and self.auto is not None:
            await self.auto.open()

    async def check_channels(self) -> list[ChannelState]:
        """Whether the alert and audit channels can be posted to; logged plainly (see bot.work.channels)."""
        self.channel_states = await check_channels(self.client, self.settings)
        return self.channel_states

    def channel_report(self) -> dict[str, Any]:
        """For /healthz: each configured channel, whether the app can post there (see bot.work.channels)."""
        return channel_report(self.channel_states, self.desk.undelivered)

    async def start(self) -> None:
        """After Slack is reachable: pick up work the previous run left, and keep alerts current."""
        url = (self.auth or {}).get("url")
        self.service.workspace_url = self.desk.workspace_url = url if isinstance(url, str) else None
        self._sweeper = asyncio.create_task(every(self.timing.alert_sweep, self._stopping, self.sweep_expired,
                                                  "could not redraw expired alerts", (StoreUnavailable,)),
                                            name="expired alerts")
        self._home = asyncio.create_task(self.home.keep_current(self._stopping), name="home tabs")
        # The app already answers Slack (with "try again in a minute" while the database is away), so a database lost
        # during start-up is waited out, said in one line each time, instead of ending the process.
        # A lone instance owns everything the previous run left; a replica takes only what was handed over.
        adopted = await self._until_stored(lambda: self.store.adopt(time.time(), everything=not self.store.shared))
        self.outbox.resume(await self._until_stored(self.store.queued))
        self._leases = asyncio.create_task(self.keep_leases(), name="leases")
        resumed = await self._until_stored(self.follower.resume_all)  # skips jobs already followed: safe again
        if resumed:
            log.info("resumed following %d retried jobs", resumed)
        self.resume_inbox(adopted.inbox)

    async def sweep_expired(self) -> None:
        """Alerts and grouped alerts whose retry deadline passed lose their Retry (every `Timing.alert_sweep`)."""
        await self.desk.sweep_expired()
        if not self._stopping.is_set():
            await self.storms.sweep_expired()

    async def _until_stored(self, step: Callable[[], Awaitable[T]]) -> T:
        pause = self.timing.outbox_store_pause
        while True:
            try:
                return await step()
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    raise
                log.error("the database went away while the app was starting (%s); earlier work is picked up once "
                          "it is back", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10 * self.timing.outbox_store_pause)

    def resume_inbox(self, rows: list[Queued]) -> None:
        """Work accepted but never finished, because the process that took it stopped or died: failure webhooks
        answered 200 whose alert was not stored yet, retries asked for and acknowledged but not sent, retries sent to
        RunPod whose answer never came, and bulk retries that had not reached every job or posted their summary."""
        for row in rows:
            if row.kind == "webhook":
                endpoint, body = str(row.payload.get("endpoint")), dict(row.payload.get("body") or {})
                self.background.spawn(self._failure_accepted(row.id, endpoint, body, row.created),
                                      name=f"alert {endpoint}/{body.get('id')} (accepted before a restart)")
            elif row.kind == "retry":
                self.background.spawn(settle(self.service, row),
                                      name=f"settle {row.payload.get('endpoint')}/{row.payload.get('job')}")
            elif row.kind == "bulk":
                self.background.spawn(self.bulk.resume(row), name=f"bulk retry {row.payload.get('run')}")
            elif row.kind == RETRY_REQUEST:
                self.background.spawn(self.single.resume(row), name=f"retry request {row.payload.get('job')}")
            elif row.kind == "retry_all":
                self.background.spawn(self.storms.resume(row), name=f"retry all {row.payload.get('storm')}")
            else:
                log.warning("unknown accepted work %r left by an earlier run; dropped", row.kind)
                self.background.spawn(self._finished(row.id), name="drop unknown work")
        if rows:
            log.info("took on %d pieces of work an earlier run accepted and did not finish", len(rows))

    async def keep_leases(self) -> None:
        """Keep this replica's leases alive (every third of a lease); with replicas, take over work whose owner died,
        looked for every fifteenth of a lease: that work waits out its lease and little more. (Looked for only at each
        renewal, a follow taken over twice in a row, its adopter killed as well, cost up to 2 × 5 s more.)"""
        renew_every = self.store.lease / 3
        tick = self.store.lease / 15 if self.store.shared else renew_every
        renewed_at = -math.inf
        while not self._stopping.is_set():
            try:
                if time.monotonic() - renewed_at >= renew_every - tick / 2:
                    await self.store.renew(time.time())
                    renewed_at = time.monotonic()
                if self.store.shared:
                    adopted = await self.store.adopt(time.time())
                    self.outbox.resume(adopted.outbox)
                    if adopted.follows:
                        await self.follower.resume_all()
                    self.resume_inbox(adopted.inbox)
                self.database_state(True)
            except StoreUnavailable as exc:
                self.database_state(False)
                log.warning("could not renew this replica's leases or look for a dead replica's work: %s", exc)
            except Exception:
                log.exception("could not renew this replica's leases or look for a dead replica's work")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=tick)

    async def close(self, grace: float = 8.0) -> None:
        loop = asyncio.get_running_loop()
        # The outbox's share comes last and is kept whole: a second to send what is queued, then time for a post
        # already on its way to be answered (cut there, the next owner would post it again).
        outbox_share = 1.0 + self.timing.outbox_finish_grace
        deadline = loop.time() + max(grace - outbox_share, 0.0)
        self._stopping.set()
        # The sweep stops between two alerts; what it is waiting for gets `periodic_grace`, then it is cancelled.
        periodic = {task for task in (self._sweeper, self._leases, self._home) if task is not None}
        if periodic:
            _done, late = await asyncio.wait(periodic, timeout=self.timing.periodic_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self.follower.hand_over()
        cancelled = await self.background.drain(max(deadline - loop.time(), 0.0))
        if cancelled:
            log.warning("%d tasks were still running at shutdown; followed jobs resume on the next start",
                        cancelled)
        if self.auto is not None:  # its workflows resume on the next start, or at once on a live replica
            await self.auto.close()
        await self.outbox.close(grace=1.0)
        with contextlib.suppress(Exception):
            await self.store.hand_over()
        await self.runpod.aclose()
        await self.store.close()
        if self.client.session is not None:
            await self.client.session.close()

    # ---------------------------------------------------------------- RunPod's webhook

    async def job_event(self, endpoint: str, body: dict[str, Any]) -> str:
        """A job JSON from RunPod's webhook (already authenticated). Returns what was done with it.

        A failure is stored (the inbox) before this returns, so before RunPod is answered 200: RunPod does not send
        it again after a 200, and a restart before its alert is stored takes it up again. When the store cannot
        take it, this raises, and the webhook answers an error so that RunPod sends it again.
        """
        job, status = parse_job_body(body)
        if self.follower.nudge(endpoint, job, body):
            self.metrics.webhooks.labels(result="followed").inc()
            return "followed"
        if self.store.shared:
            # Another replica may be following it: the one that owns the follow ends it at once.
            self.background.spawn(self._tell_followers(endpoint, job, body), name=f"follow news {endpoint}/{job}")
        if status not in RETRYABLE:
            if status in TERMINAL:
                # An alert still offering Retry for a job that ended another way (retried outside this app,
                # say) would mislead: bring it up to date if there is one.
                self.background.spawn(self.desk.ended_elsewhere(endpoint, body), name=f"alert {endpoint}/{job}")
            self.metrics.webhooks.labels(result="ignored").inc()
            return "ignored"
        if not self.settings.alert_channel:
            log.warning("a failure webhook arrived but RUNPOD_ALERT_CHANNEL is not set; no alert posted")
            self.metrics.webhooks.labels(result="no_channel").inc()
            return "no_channel"
        arrived = time.time()
        work_id = await self.store.accept("webhook", {"endpoint": endpoint, "body": body}, arrived)
        self.metrics.webhooks.labels(result="failure").inc()
        self.background.spawn(self._failure_accepted(work_id, endpoint, body, arrived), name=f"alert {endpoint}/{job}")
        return "accepted"

    async def _tell_followers(self, endpoint: str, job: str, body: dict[str, Any]) -> None:
        news = json.dumps({"endpoint": endpoint, "job": job, "body": body})
        if len(news.encode()) > MAX_FOLLOW_NEWS:
            news = json.dumps({"endpoint": endpoint, "job": job, "body": {"id": job}})  # a wake-up: ask /status
        try:
            await self.store.publish(FOLLOW_TOPIC, news)
        except Exception as exc:  # the follower still polls /status: the end is only later, not lost
            log.warning("could not tell the other replicas about job %s on %s: %s", job, endpoint, exc)

    def _followed_elsewhere(self, news: str) -> None:
        """Another replica (or this one) got a webhook for a job: if this replica follows it, that ends the wait."""
        try:
            data = json.loads(news)
            endpoint, job, body = str(data["endpoint"]), str(data["job"]), dict(data.get("body") or {})
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed follow message from another replica")
            return
        if self.follower.nudge(endpoint, job, body):
            self.metrics.webhooks.labels(result="followed").inc()

    async def _failure_accepted(self, work_id: int, endpoint: str, body: dict[str, Any], arrived: float) -> None:
        """An accepted failure: done once its alert is stored and queued for Slack (or it joined a grouped alert).
        Cut off by a shutdown, or the database away for long, it stays in the inbox for the next owner."""
        # An accepted failure the database could not take is tried again after these pauses.
        for pause in (*self.timing.store_retry_pauses, None):
            try:
                await self.failure(endpoint, body, arrived=arrived)
                break
            except StoreUnavailable:
                if pause is None:
                    log.error("the database stayed away; a failure webhook waits in the inbox for the next start",
                              extra={"endpoint": endpoint})
                    return
                await asyncio.sleep(pause)
            except Exception:  # the app's own error: logged, and not tried again at every start
                log.exception("could not handle a failure webhook", extra={"endpoint": endpoint})
                break
        await self._finished(work_id)

    async def _finished(self, work_id: int) -> None:
        try:
            await self.store.done(work_id)
        except Exception:
            log.exception("could not mark accepted work as done; it is taken up again at the next start")

    async def failure(self, endpoint: str, body: dict[str, Any], channel: str | None = None, *,
                      arrived: float | None = None) -> tuple[str, Any]:
        """A failure to alert: `arrived` is when RunPod's webhook was taken (a retry policy's delay counts from it)."""
        arrived = time.time() if arrived is None else arrived
        job, status = parse_job_body(body)
        # Kept as its one line (what Home and `failed` show and group by), never its first 500 characters.
        await self.store.record_failure(endpoint, job, status, error_summary(body.get("error")), time.time())
        await self.health.get(endpoint)  # the alert shows the endpoint's health, when RunPod answers in time
        policy = self.auto.match(endpoint, body) if self.auto is not None and self.auto.running else None
        if self.auto is not None and policy is not None:  # its own quiet alert, never folded into a grouped one
            result = await self.auto.failure(endpoint, body, channel or self.settings.alert_channel, policy, arrived)
        else:
            result = await self.storms.failure(endpoint, body, channel or self.settings.alert_channel)
        await self.home.changed()
        return result

    # ---------------------------------------------------------------- errors, once

    async def guard(self, who: Who, what: str, work: Any) -> None:
        """Run a listener's work; any unexpected failure is told to the person who asked, never swallowed."""
        try:
            await work
        except StoreUnavailable as exc:
            self.database_state(False)
            log.warning("could not handle %s: %s", what, exc, extra={"user": who.user})
            await self.out.tell_now(who.channel, who.user, messages.database_unreachable(), who.response_url)
        except Exception as exc:
            log.exception("unexpected failure while handling %s", what, extra={"user": who.user})
            await self.out.ephemeral(who.channel, who.user, messages.internal_error(what, type(exc).__name__),
                                     who.response_url)


__all__ = ["BadJobBody", "Runtime"]
