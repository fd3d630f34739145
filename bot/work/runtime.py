"""The running app's parts, built once and wired together; start-up and shutdown in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import messages
from bot.core.alerts import BadJobBody, parse_job_body
from bot.core.outcome import RETRYABLE, TERMINAL
from bot.infra.config import Settings
from bot.infra.metrics import Metrics
from bot.infra.tasks import Background
from bot.runpod import RunPodClient
from bot.runpod.limits import RunPodLimits
from bot.slack.out import SlackOut, make_client
from bot.slack.outbox import Outbox
from bot.store import LEASE_SECONDS, Store, open_store
from bot.work.access import AccessPolicy
from bot.work.alert_desk import AlertDesk
from bot.work.bulk import BulkRunner
from bot.work.channels import ChannelState, check_channels
from bot.work.events import JobEvents
from bot.work.follow import Follower
from bot.work.health import EndpointHealth
from bot.work.home import HomeDesk
from bot.work.retry import RetryService, Who
from bot.work.storms import StormDesk

log = logging.getLogger(__name__)

# Alerts, storms and seen failures older than this are dropped at start-up; the audit trail is kept.
KEEP_SECONDS = 7 * 24 * 3600.0


class Runtime:
    """Everything a listener needs, and nothing global."""

    def __init__(self, settings: Settings, *, client: AsyncWebClient | None = None, store: Store | None = None):
        self.settings = settings
        self.metrics = Metrics()
        self.background = Background()
        self.client = client or make_client(settings.slack_bot_token, settings.slack_api_url)
        self.store = store or open_store(settings.db_path)
        # The outbox retries and paces its own calls: its client has no retry handlers of slack_sdk's.
        self.outbox_client = AsyncWebClient(token=self.client.token, base_url=self.client.base_url,
                                            timeout=self.client.timeout, retry_handlers=[])
        self.outbox = Outbox(self.store, self.outbox_client, self.metrics)
        self.out = SlackOut(self.outbox)
        self.runpod = RunPodClient(settings.runpod_api_url, settings.runpod_api_key,
                                   endpoint_keys=settings.runpod_endpoint_keys, timeout=settings.runpod_timeout,
                                   max_attempts=settings.runpod_max_attempts,
                                   observe=self.metrics.observe_runpod,
                                   rate_limits=RunPodLimits(observe=self.metrics.observe_runpod_rate),
                                   on_rate_limited=lambda _endpoint, op: self.metrics.rate_limited.labels(
                                       platform="runpod", method=op).inc())
        self.access = AccessPolicy(settings, self._group_members)
        self.desk = AlertDesk(self.store, self.out, self.metrics, max_retries=settings.max_retries_per_job,
                              enabled=self.access.enabled, audit_channel=settings.audit_channel)
        self.events = JobEvents()
        self.events.subscribe(self.desk)
        self.follower = Follower(self.runpod, self.out, self.store, self.events, self.metrics, settings,
                                 self.background)
        self.service = RetryService(self.runpod, self.out, self.store, self.events, self.follower, self.access,
                                    self.metrics, settings, self.background, alert_of=self.desk.get)
        self.bulk = BulkRunner(self.service, settings)
        self.storms = StormDesk(self.bulk, self.desk, settings)
        # Endpoint health beside alerts, confirmations and summaries; the Home tab kept current by job events.
        self.health = EndpointHealth(self.runpod, self.access.enabled, configured=bool(settings.runpod_api_key))
        self.desk.health = self.storms.health = self.health.peek
        self.bulk.health = self.health
        self.home = HomeDesk(self.service, self.storms, self.health, settings)
        self.events.subscribe(self.home)
        self.auth: dict[str, Any] | None = None
        self.channel_states: list[ChannelState] = []
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._home: asyncio.Task[None] | None = None

    async def _group_members(self, group: str) -> list[str]:
        response = await self.client.usergroups_users_list(usergroup=group)
        return list(response.get("users") or [])

    async def open(self) -> None:
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

    async def check_channels(self) -> list[ChannelState]:
        """Whether the alert and audit channels can be posted to; logged plainly (see bot.work.channels)."""
        self.channel_states = await check_channels(self.client, self.settings)
        return self.channel_states

    def channel_report(self) -> dict[str, Any]:
        """For /healthz: each configured channel, whether the app can post there (the start-up check, then what
        the last alert found), and `ok` false when alerts are being lost."""
        report: dict[str, Any] = {state.role.split()[0]: state.as_json() for state in self.channel_states}
        for channel, at in self.desk.undelivered.items():
            report.setdefault("alert", {"channel": channel, "setting": "RUNPOD_ALERT_CHANNEL"})
            report["alert"].update(can_post=False, last_refused_at=at)
        report["ok"] = all(entry.get("can_post") is not False for entry in report.values() if isinstance(entry, dict))
        return report

    async def start(self) -> None:
        """After Slack is reachable: pick up work the previous run left, and keep alerts current."""
        url = (self.auth or {}).get("url")
        self.service.workspace_url = self.desk.workspace_url = url if isinstance(url, str) else None
        self._sweeper = asyncio.create_task(self.desk.keep_current(self._stopping), name="expired alerts")
        self._home = asyncio.create_task(self.home.keep_current(self._stopping), name="home tabs")
        # A lone instance owns everything the previous run left; a replica takes only what was handed over.
        await self.store.adopt(time.time(), everything=not self.store.shared)
        self.outbox.resume(await self.store.queued())
        self._leases = asyncio.create_task(self.keep_leases(), name="leases")
        resumed = await self.follower.resume_all()
        if resumed:
            log.info("resumed following %d retried jobs", resumed)

    async def keep_leases(self) -> None:
        """Keep this replica's leases alive; take over work whose owner died (replicas only)."""
        while not self._stopping.is_set():
            try:
                await self.store.renew(time.time())
                if self.store.shared:
                    adopted = await self.store.adopt(time.time())
                    self.outbox.resume(adopted.outbox)
                    if adopted.follows:
                        await self.follower.resume_all()
            except Exception:
                log.exception("could not renew this replica's leases")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=LEASE_SECONDS / 3)

    async def close(self, grace: float = 8.0) -> None:
        self._stopping.set()
        for task in (self._sweeper, self._leases, self._home):
            if task is not None:
                await task
        self.follower.hand_over()
        cancelled = await self.background.drain(grace)
        if cancelled:
            log.warning("%d tasks were still running at shutdown; followed jobs resume on the next start",
                        cancelled)
        await self.outbox.close(grace=1.0)
        with contextlib.suppress(Exception):
            await self.store.hand_over()
        await self.runpod.aclose()
        await self.store.close()
        if self.client.session is not None:
            await self.client.session.close()

    # ---------------------------------------------------------------- RunPod's webhook

    def job_event(self, endpoint: str, body: dict[str, Any]) -> str:
        """A job JSON from RunPod's webhook (already authenticated). Returns what was done with it.

        Runs synchronously up to the point where it decides, so duplicates arriving together are caught.
        """
        job, status = parse_job_body(body)
        if self.follower.nudge(endpoint, job, body):
            self.metrics.webhooks.labels(result="followed").inc()
            return "followed"
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
        self.metrics.webhooks.labels(result="failure").inc()
        self.background.spawn(self.failure(endpoint, body), name=f"alert {endpoint}/{job}")
        return "accepted"

    async def failure(self, endpoint: str, body: dict[str, Any], channel: str | None = None) -> tuple[str, Any]:
        job, status = parse_job_body(body)
        await self.store.record_failure(endpoint, job, status, str(body.get("error") or "")[:500] or None,
                                        time.time())
        await self.health.get(endpoint)  # the alert shows the endpoint's health, when RunPod answers in time
        result = await self.storms.failure(endpoint, body, channel or self.settings.alert_channel)
        await self.home.changed()
        return result

    # ---------------------------------------------------------------- errors, once

    async def guard(self, who: Who, what: str, work: Any) -> None:
        """Run a listener's work; any unexpected failure is told to the person who asked, never swallowed."""
        try:
            await work
        except Exception as exc:
            log.exception("unexpected failure while handling %s", what, extra={"user": who.user})
            await self.out.ephemeral(who.channel, who.user, messages.internal_error(what, type(exc).__name__),
                                     who.response_url)


__all__ = ["BadJobBody", "Runtime"]
