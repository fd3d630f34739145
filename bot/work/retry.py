"""Retrying a job: the rules (access, budget, exactly once), the RunPod call, the record, the reply."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.core import messages
from bot.core.outcome import UNCERTAIN, Kind, Outcome, classify_error, classify_retry, classify_status
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.infra.metrics import Metrics
from bot.infra.tasks import Background
from bot.runpod import RunPodClient, RunPodError, RunPodReply
from bot.slack.out import Place, SlackOut
from bot.store import AuditEntry, Store
from bot.work.access import AccessPolicy
from bot.work.audit_channel import AuditChannel
from bot.work.claims import Claims, Hold
from bot.work.events import JobEvents, MessageRef
from bot.work.follow import Follower, FollowTarget

log = logging.getLogger(__name__)

BUDGET_WINDOW = 3600.0
PROBE_AFTER = UNCERTAIN | {Kind.REFUSED}


class Source(StrEnum):
    COMMAND = "command"
    BUTTON = "button"
    BULK = "bulk"
    RETRY_ALL = "retry_all"


@dataclass(frozen=True)
class Who:
    """The person asking and where they asked."""

    user: str
    channel: str
    source: Source
    response_url: str | None = None


class RetryService:
    def __init__(self, runpod: RunPodClient, out: SlackOut, store: Store, events: JobEvents, follower: Follower,
                 access: AccessPolicy, metrics: Metrics, settings: Settings, background: Background,
                 clock: Callable[[], float] = time.time):
        self.runpod = runpod
        self.out = out
        self.store = store
        self.events = events
        self.follower = follower
        self.access = access
        self.metrics = metrics
        self.settings = settings
        self.background = background
        self.clock = clock
        self.claims = Claims(store, background, clock)
        self.audit_channel = AuditChannel(out, settings.audit_channel, background) if settings.audit_channel else None
        # A follow holds its job's claim until the job ends.
        follower.on_end.append(lambda target, _final: self.claims.follow_ended(target.endpoint, target.job))

    # ---------------------------------------------------------------- rules

    async def refuse(self, who: Who, endpoint: str, jobs: tuple[str, ...], reason: str, code: str) -> None:
        """Tell only the person refused, and record the refusal for each job."""
        self.metrics.refusals.labels(reason=code).inc()
        for job in jobs[:1000]:
            await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, f"refused:{code}",
                                         detail=reason[:300]))
        await self.out.ephemeral(who.channel, who.user, messages.refusal(reason), who.response_url)

    async def gate(self, who: Who, endpoint: str, jobs: tuple[str, ...]) -> bool:
        """Access rules. False (and the person told) when refused."""
        reason = await self.access.refusal(who.user, who.channel, endpoint)
        if reason is None:
            return True
        await self.refuse(who, endpoint, jobs, reason, "access")
        return False

    async def over_budget(self, endpoint: str, job: str) -> str | None:
        used = await self.store.retries_since(endpoint, job, self.clock() - BUDGET_WINDOW)
        limit = self.settings.max_retries_per_job
        if used < limit:
            return None
        times = "once" if used == 1 else f"{used} times"
        return (f"Job `{job}` on endpoint `{endpoint}` was already retried {times} in the last hour (the "
                f"limit is {limit}). A job that keeps failing needs a human look at its input or its worker, "
                "not another retry.")

    async def admitted(self, who: Who, endpoint: str, job: str, hold: Hold) -> bool:
        """Exactly once and the hourly budget, inside `claims.hold`. False (and the person told) when refused."""
        existing = hold.taken_by
        if existing is not None:
            self.metrics.duplicates.labels(kind=who.source.value).inc()
            await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "refused:duplicate",
                                         detail=f"already retried by {existing.user}"))
            await self.out.ephemeral(who.channel, who.user,
                                     messages.already_claimed(endpoint, job, existing.user, existing.at),
                                     who.response_url)
            return False
        budget = await self.over_budget(endpoint, job)
        if budget is not None:
            await self.refuse(who, endpoint, (job,), budget, "budget")
            return False
        return True

    # ---------------------------------------------------------------- records

    async def record(self, entry: AuditEntry) -> None:
        try:
            await self.store.audit(entry)
        except Exception:
            log.exception("could not write the audit record", extra=ctx(endpoint=entry.endpoint, job=entry.job))
        if self.audit_channel is not None:
            self.audit_channel.add(entry)

    # ---------------------------------------------------------------- RunPod

    async def call_retry(self, endpoint: str, job: str) -> Outcome:
        """POST /retry. When RunPod refuses, GET /status says why in plain words; when its answer was lost or
        garbled, GET /status says whether the retry took effect."""
        try:
            answer: RunPodReply | RunPodError = await self.runpod.retry(endpoint, job)
        except RunPodError as exc:
            answer = exc
        probe: RunPodReply | RunPodError | None = None
        if isinstance(answer, RunPodError) and classify_error(endpoint, job, answer).kind in PROBE_AFTER:
            try:
                probe = await self.runpod.status(endpoint, job)
            except RunPodError as exc:
                probe = exc
        return classify_retry(endpoint, job, answer, probe)

    async def call_status(self, endpoint: str, job: str) -> Outcome:
        try:
            return classify_status(endpoint, job, await self.runpod.status(endpoint, job))
        except RunPodError as exc:
            return classify_error(endpoint, job, exc)

    async def attempt(self, who: Who, endpoint: str, job: str, place: Place, hold: Hold, *,
                      origin: MessageRef | None = None, announce: bool = False, post: bool = True,
                      follow: bool = True) -> Outcome:
        """Retry a job claimed by `hold`: call, record, reply, announce, follow (the follow keeps the claim)."""
        try:
            if announce:
                await self.events.retrying(who.user, endpoint, job, origin)
            outcome = await self.call_retry(endpoint, job)
            await self.conclude(who, endpoint, job, place, outcome, hold, post=post, follow=follow)
        except BaseException:
            await self.events.retry_interrupted(endpoint, job)
            raise
        return outcome

    async def conclude(self, who: Who, endpoint: str, job: str, place: Place, outcome: Outcome, hold: Hold, *,
                       post: bool, follow: bool) -> None:
        """RunPod's answer: record, reply, announce, follow."""
        log_ctx = ctx(user=who.user, channel=who.channel, endpoint=endpoint, job=job, source=who.source.value)
        self.metrics.retries.labels(outcome=outcome.kind.value, source=who.source.value).inc()
        log.info("retry %s", outcome.kind.value, extra={**log_ctx, "http_status": outcome.http_status})
        # The budget counts only retries RunPod took or may have taken, never one it refused or did not act on.
        await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, outcome.kind.value,
                                     called=outcome.may_have_taken_effect,
                                     http_status=outcome.http_status, job_status=outcome.job_status,
                                     detail=None if outcome.ok else (outcome.excerpt or outcome.summary)[:300]))
        if post:
            await self.out.post_outcome(place, outcome)
        await self.events.retried(who.user, endpoint, job, outcome)
        if outcome.ok and follow:
            hold.keep_for_follow()  # before the follow starts: a job that ends at once releases the claim itself
            try:
                await self.follower.start(FollowTarget(
                    endpoint, job, place.channel, place.thread_ts, who.user, who.source.value, self.clock(),
                    response_url=place.response_url if place.via_response_url else None, quiet=not post))
            except BaseException:
                hold.kept = False
                raise

    # ---------------------------------------------------------------- the two ways in

    async def retry_from_command(self, who: Who, endpoint: str, job: str) -> None:
        if not await self.gate(who, endpoint, (job,)):
            return
        async with self.claims.hold(endpoint, job, who.user) as hold:
            if not await self.admitted(who, endpoint, job, hold):
                return
            place = Place(who.channel, response_url=who.response_url)
            place.thread_ts = await self.out.post(place, messages.command_parent(who.user, endpoint, job))
            await self.attempt(who, endpoint, job, place, hold, announce=True)

    async def retry_from_button(self, who: Who, endpoint: str, job: str, channel: str, message_ts: str,
                                thread_ts: str | None) -> None:
        if not await self.gate(who, endpoint, (job,)):
            return
        async with self.claims.hold(endpoint, job, who.user) as hold:
            if not await self.admitted(who, endpoint, job, hold):
                return
            place = Place(channel, thread_ts=thread_ts or message_ts, response_url=who.response_url)
            await self.attempt(who, endpoint, job, place, hold, announce=True,
                               origin=MessageRef(channel, message_ts, thread_ts))

    async def status(self, who: Who, endpoint: str, job: str, place: Place | None = None) -> None:
        """Show the job's status JSON without changing anything."""
        if not await self.gate(who, endpoint, (job,)):
            return
        if place is None:
            place = Place(who.channel, response_url=who.response_url)
            place.thread_ts = await self.out.post(place, messages.command_parent(who.user, endpoint, job, "status"))
        outcome = await self.call_status(endpoint, job)
        await self.out.post_outcome(place, outcome)
