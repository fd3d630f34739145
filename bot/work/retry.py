"""Retrying a job: the rules (access, budget, exactly once), the RunPod call, the record, the reply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from bot.core import messages, words
from bot.core.alerts import BUDGET_WINDOW, Alert, Phase
from bot.core.outcome import (
    RETENTION_SECONDS,
    UNCERTAIN,
    Kind,
    Outcome,
    classify_error,
    classify_retry,
    classify_status,
)
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.infra.metrics import Metrics
from bot.infra.tasks import Background
from bot.infra.timing import REAL, Timing
from bot.runpod import RunPodClient, RunPodError, RunPodReply
from bot.runpod.client import Throttled
from bot.slack.out import Place, SlackOut
from bot.store import AuditEntry, Store, StoreUnavailable
from bot.work.access import AccessPolicy
from bot.work.audit_channel import AuditChannel
from bot.work.claims import Claims, Hold
from bot.work.events import JobEvents, MessageRef
from bot.work.follow import Follower, FollowTarget
from bot.work.who import Who

log = logging.getLogger(__name__)

# RunPod errors after which /status is asked: whether the retry took effect (its answer lost or garbled), or why
# RunPod refused it.
PROBE_AFTER = UNCERTAIN | {Kind.REFUSED}


def sent_record(who: Who, endpoint: str, job: str, place: Place, post: bool, follow: bool,
                run: str | None, parent: str | None = None) -> dict[str, Any]:
    """What settling a retry needs when its answer is lost: the inbox row written before it is sent. `parent`: the
    outbox key of a command's message still on its way (the place has no thread yet)."""
    record = {"endpoint": endpoint, "job": job, "who": who.to_json(), "place": asdict(place), "post": post,
              "follow": follow, "run": run}
    return record if parent is None else {**record, "parent": parent}


def reply_key(work_id: int) -> str:
    """The outbox key of a retry's result reply, by the retry's record (`sent_record`'s row): the reply and the one
    settling the retry after its replica died (killed after the reply went, before the record was let go) are one
    post."""
    return f"reply:{work_id}"


class RetryService:
    def __init__(self, runpod: RunPodClient, out: SlackOut, store: Store, events: JobEvents, follower: Follower,
                 access: AccessPolicy, metrics: Metrics, settings: Settings, background: Background,
                 clock: Callable[[], float] = time.time,
                 alert_of: Callable[[str, str], Awaitable[Alert | None]] | None = None, timing: Timing = REAL):
        self.runpod = runpod
        self.timing = timing  # handed on to what the service's users make (pacers, bulk runs)
        self.out = out
        self.store = store
        self.events = events
        self.follower = follower
        self.access = access
        self.metrics = metrics
        self.settings = settings
        self.background = background
        self.clock = clock
        self.claims = Claims(store, background, clock, timing)
        self.retry_window = float(RETENTION_SECONDS)  # the longest a job can still be retried from now
        # The job's alert, if it has one (the alert desk's view): where results are shown, and whether it ended.
        self.alert_of = alert_of
        self.workspace_url: str | None = None  # auth.test's `url`, for links to messages (set at start-up)
        self.audit_channel = (AuditChannel(out, settings.audit_channel, background, timing.pacer_interval)
                              if settings.audit_channel else None)
        # A follow holds its job's claim until the job ends.
        events.subscribe(self.claims)

    # ---------------------------------------------------------------- rules

    async def refuse(self, who: Who, endpoint: str, jobs: tuple[str, ...], reason: str, code: str) -> None:
        """Tell only the person refused, and record the refusal for each job."""
        self.metrics.refusals.labels(reason=code).inc()
        for job in jobs[:1000]:
            await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, f"refused:{code}",
                                         detail=reason[:300]))
        await self.out.ephemeral(who.channel, who.user, messages.refusal(reason), who.response_url)

    async def gate(self, who: Who, endpoint: str, jobs: tuple[str, ...], action: str = "retry") -> bool:
        """Access rules. False (and the person told) when refused. `action` is "retry" or "check"."""
        reason = await self.access.refusal(who.user, who.channel, endpoint, action)
        if reason is None:
            return True
        await self.refuse(who, endpoint, jobs, reason, "access")
        return False

    async def alert(self, endpoint: str, job: str) -> Alert | None:
        if self.alert_of is None:
            return None
        try:
            return await self.alert_of(endpoint, job)
        except StoreUnavailable as exc:
            log.warning("could not look up the alert: %s", exc, extra=ctx(endpoint=endpoint, job=job))
            return None
        except Exception:  # only words depend on it: never let it stop a retry
            log.exception("could not look up the alert", extra=ctx(endpoint=endpoint, job=job))
            return None

    async def where(self, endpoint: str, job: str) -> str | None:
        """A link to where this job's retry result is shown: the thread it is followed into, else its alert."""
        target = self.follower.following(endpoint, job)
        if target is not None and target.thread_ts:
            return messages.permalink(self.workspace_url, target.channel, target.thread_ts)
        alert = await self.alert(endpoint, job)
        if alert is not None and alert.ts:
            return messages.permalink(self.workspace_url, alert.channel, alert.ts, alert.thread_ts)
        return None

    async def retry_limit(self, endpoint: str, job: str, *, plain: bool = False) -> str | None:
        """The retry limit's words when the job's hourly budget is spent (with the next allowed time); else None.
        `plain`: "HH:MM UTC" rather than a date token, for text Slack shows raw (code blocks, terminals)."""
        limit = self.settings.max_retries_per_job
        times = await self.store.retry_times(endpoint, job, self.clock() - BUDGET_WINDOW)
        again = words.next_allowed(times, limit, BUDGET_WINDOW)
        if again is None:
            return None
        alert = await self.alert(endpoint, job)
        return words.retry_limit(limit, again, alert.deadline if alert is not None else None, plain=plain)

    async def over_budget(self, endpoint: str, job: str) -> str | None:
        reached = await self.retry_limit(endpoint, job)
        if reached is None:
            return None
        used = await self.store.retries_since(endpoint, job, self.clock() - BUDGET_WINDOW)
        times = "once" if used == 1 else f"{used} times"
        where = await self.where(endpoint, job)
        last = f" The last result is in {messages.link(where, 'its alert or thread')}." if where else ""
        return (f"Not retried: job `{job}` on endpoint `{endpoint}` was already retried {times} in the last hour. "
                f"{reached} A job that keeps failing needs a human look at its input or its worker, not another "
                f"retry.{last}")

    async def admitted(self, who: Who, endpoint: str, job: str, hold: Hold) -> bool:
        """Exactly once and the hourly budget, inside `claims.hold`. False (and the person told) when refused."""
        existing = hold.taken_by
        if existing is not None:
            self.metrics.duplicates.labels(kind=who.source.value).inc()
            await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "refused:duplicate",
                                         detail=f"already retried by {existing.user}"))
            await self.out.ephemeral(who.channel, who.user,
                                     messages.already_claimed(endpoint, job, existing.user, existing.at,
                                                              viewer=who.user, where=await self.where(endpoint, job)),
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
        except StoreUnavailable as exc:
            # The record is what the hourly budget counts: it is written once the database is back, not dropped.
            log.warning("could not write the audit record yet, will once the database is back: %s", exc,
                        extra=ctx(endpoint=entry.endpoint, job=entry.job))
            self.background.spawn(self._record_later(entry), name=f"audit {entry.endpoint}/{entry.job}")
        except Exception:
            log.exception("could not write the audit record", extra=ctx(endpoint=entry.endpoint, job=entry.job))
        if self.audit_channel is not None:
            self.audit_channel.add(entry)

    async def _record_later(self, entry: AuditEntry) -> None:
        wait = self.timing.outbox_store_pause  # the database is away: the same pause as the outbox's
        while True:
            await asyncio.sleep(wait)
            try:
                await self.store.audit(entry)
            except StoreUnavailable:
                wait = min(wait * 2, 10 * self.timing.outbox_store_pause)
                continue
            log.info("wrote the audit record the database had missed", extra=ctx(endpoint=entry.endpoint,
                                                                                  job=entry.job))
            return

    # ---------------------------------------------------------------- RunPod

    async def call_retry(self, endpoint: str, job: str, *, until: float | None = None,
                         throttled: Throttled | None = None) -> Outcome:
        """POST /retry. When RunPod refuses, GET /status says why in plain words; when its answer was lost or
        garbled, GET /status says whether the retry took effect. RunPod's 429s are waited out until `until`
        (default: the longest a job can still be retried from now)."""
        until = until if until is not None else self.clock() + self.retry_window
        try:
            answer: RunPodReply | RunPodError = await self.runpod.retry(endpoint, job, until=until,
                                                                         throttled=throttled)
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
                      follow: bool = True, run: str | None = None,
                      answered: Callable[[Outcome], Awaitable[None]] | None = None,
                      parent: asyncio.Task[None] | None = None, parent_key: str | None = None) -> Outcome:
        """Retry a job claimed by `hold`: call, record, reply, announce, follow (the follow keeps the claim).

        That the retry is sent is written down first (an inbox row): when the app stops before RunPod answers (a
        deploy while RunPod is slow), the next start, or another replica, settles it with a /status check
        (`settle`) instead of leaving it unknown. `run` names the bulk run or grouped alert it belongs to;
        `answered` records the answer there before the inbox row is let go, so whoever takes the run over finds
        each job either answered or still to settle, never neither. `parent`, when given, is the post of the
        message the replies thread under (`parent()`): RunPod is called at once and only the replies wait for it;
        `parent_key` is its outbox key, so that settling the retry finds that thread."""
        work_id: int | None = None
        try:
            if announce:
                await self.events.retrying(who.user, endpoint, job, origin)
            record = sent_record(who, endpoint, job, place, post, follow, run,
                                 parent_key if place.thread_ts is None else None)
            work_id = await self.store.accept("retry", record, self.clock())
            hold.sent = True

            async def notice(wait: float) -> None:
                if parent is not None:
                    await asyncio.shield(parent)
                await self.out.post(place, messages.retry_throttled(endpoint, job, wait))

            async def queued_behind_limit(wait: float) -> None:
                # Not awaited here: the retry's wait for RunPod's limit must not also wait for Slack's pace.
                self.background.spawn(notice(wait), name=f"throttled notice {endpoint}/{job}")

            outcome = await self.call_retry(endpoint, job,
                                            throttled=queued_behind_limit if post else None)
            if parent is not None:
                await asyncio.shield(parent)  # the reply goes in its thread
            await self.conclude(who, endpoint, job, place, outcome, hold, post=post, follow=follow, run=run,
                                once=reply_key(work_id))
            if answered is not None:
                await answered(outcome)
        except asyncio.CancelledError:
            # Shutting down. Sent: the inbox row stays and whoever adopts it settles it. Not sent: nothing to settle.
            if not hold.sent:
                await self.events.retry_interrupted(endpoint, job)
            raise
        except Exception:
            await self.events.retry_interrupted(endpoint, job)
            if work_id is not None:
                await self.mark_answered(work_id)  # an error of the app's own: not worth trying again at every start
            raise
        await self.mark_answered(work_id)
        return outcome

    async def conclude(self, who: Who, endpoint: str, job: str, place: Place, outcome: Outcome, hold: Hold, *,
                       post: bool, follow: bool, counted: bool = True, prefix: str = "",
                       run: str | None = None, once: str | None = None) -> None:
        """RunPod's answer (or the /status check that settled it): record, reply, announce, follow. When `hold` is
        someone else's, only record and reply: the alert and the follow are theirs. `once` keys the reply
        (`reply_key`), so a retry's reply and its settling after a death, or two replicas settling it, post once."""
        log_ctx = ctx(user=who.user, channel=who.channel, endpoint=endpoint, job=job, source=who.source.value)
        self.metrics.retries.labels(outcome=outcome.kind.value, source=who.source.value).inc()
        log.info("retry %s", outcome.kind.value, extra={**log_ctx, "http_status": outcome.http_status})
        # The budget counts only retries RunPod took or may have taken, never one it refused or did not act on.
        await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, outcome.kind.value,
                                     called=counted and outcome.may_have_taken_effect,
                                     http_status=outcome.http_status, job_status=outcome.job_status,
                                     detail=None if outcome.ok else (outcome.excerpt or outcome.summary)[:300]))
        replied = await self.reply(place, outcome, prefix=prefix, once=once) if post else None
        if not hold.ours:
            return
        # Where this retry is reported (a command's thread, a bulk run's message); ts "" when that is the
        # command's response_url, which nothing can link to.
        report = MessageRef(place.channel, "" if place.via_response_url else place.thread_ts or "")
        await self.events.retried(who.user, endpoint, job, outcome, report)
        if outcome.ok and follow:
            hold.keep_for_follow()  # before the follow starts: a job that ends at once releases the claim itself
            try:
                await self.follower.start(FollowTarget(
                    endpoint, job, place.channel, place.thread_ts, who.user, who.source.value, self.clock(),
                    response_url=place.response_url if place.via_response_url else None, quiet=not post,
                    run=run or "", claim_at=hold.at, reply=once or ""), after=replied)
            except BaseException:
                hold.kept = False
                raise

    async def reply(self, place: Place, outcome: Outcome, *, prefix: str = "", once: str | None = None
                    ) -> asyncio.Task[None]:
        """Queue the result reply and return once it is stored, not sent, with the task that sends it: in a channel
        busy with alerts a post waits its turn for seconds, and storing the follow and letting go of the record must
        not wait behind it (a replica killed in that wait left its retry to be settled a lease later)."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def queued() -> None:
            if not stored.done():
                stored.set_result(None)

        posting = self.background.spawn(self.out.post_outcome(place, outcome, prefix=prefix, once=once,
                                                              queued=queued),
                                        name=f"reply {outcome.endpoint}/{outcome.job}")
        try:
            await asyncio.wait({posting, stored}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stored.cancel()
        if posting.done() and not posting.cancelled() and (error := posting.exception()) is not None:
            raise error
        return posting

    async def mark_answered(self, work_id: int) -> None:
        """The retry's inbox row is done with: nobody needs to settle it."""
        try:
            await self.store.done(work_id)
        except StoreUnavailable as exc:  # an outage: one line, not a traceback; settled again (`settle`)
            log.warning("could not mark a retry as answered: %s", exc)
        except Exception:  # the next start settles it again: a second reply at worst, never a second count
            log.exception("could not mark a retry as answered")

    # ---------------------------------------------------------------- the two ways in

    async def retry_from_command(self, who: Who, endpoint: str, job: str, *, once: str | None = None) -> None:
        """`once`: the request's key for its message, posted once whoever carries it out (bot/work/single.py)."""
        if not await self.gate(who, endpoint, (job,)):
            return
        async with self.claims.hold(endpoint, job, who.user) as hold:
            if not await self.admitted(who, endpoint, job, hold):
                return
            place = Place(who.channel, response_url=who.response_url)
            parent = self.parent(place, messages.command_parent(who.user, endpoint, job), f"{endpoint}/{job}", once)
            await self.attempt(who, endpoint, job, place, hold, announce=True, parent=parent, parent_key=once)

    def parent(self, place: Place, msg: messages.Message, name: str, once: str | None = None) -> asyncio.Task[None]:
        """Post the message a command's replies thread under, without waiting for it: in a busy channel Slack takes
        about one post a second, and RunPod must not wait behind that. Whatever goes in the thread awaits the task,
        which sets `place.thread_ts` (or switches `place` to the response_url when the channel refuses it)."""

        async def post() -> None:
            place.thread_ts = await self.out.post(place, msg, once=once)

        return self.background.spawn(post(), name=f"command parent {name}")

    async def already_completed(self, who: Who, endpoint: str, job: str) -> bool:
        """A late click (a confirm dialog left open, or Retry all got there first) on an alert whose job already
        completed after a retry: the clicker is told privately and the alert stays as it is. RunPod is not called."""
        alert = await self.alert(endpoint, job)
        if alert is None or alert.phase is not Phase.COMPLETED:
            return False
        await self.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "refused:completed",
                                     job_status="COMPLETED", detail="it already completed after a retry"))
        where = messages.permalink(self.workspace_url, alert.channel, alert.ts, alert.thread_ts) if alert.ts else None
        await self.out.ephemeral(who.channel, who.user,
                                 messages.already_completed(endpoint, job, alert.actor, alert.acted_at,
                                                            viewer=who.user, where=where), who.response_url)
        return True

    async def retry_from_button(self, who: Who, endpoint: str, job: str, channel: str, message_ts: str,
                                thread_ts: str | None) -> None:
        if await self.already_completed(who, endpoint, job):
            return
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
        if not await self.gate(who, endpoint, (job,), "check"):
            return
        parent = None
        if place is None:
            place = Place(who.channel, response_url=who.response_url)
            parent = self.parent(place, messages.command_parent(who.user, endpoint, job, "status"), f"{endpoint}/{job}")
        outcome = await self.call_status(endpoint, job)
        if parent is not None:
            await asyncio.shield(parent)
        await self.out.post_outcome(place, outcome)
