"""Retry policies at work (RUNPOD_RETRY_POLICIES): a failure a policy matches is retried without waking anyone, and
handed to people (Retry, and a message that notifies) when the policy is spent, stopped or skipped.

Each matched failure is one durable workflow, `auto_retry`, that reads top to bottom: show when the retry goes,
wait, check and retry, follow; again, or hand over. Its ID is the failure's, so a webhook delivered twice or to two
replicas joins the same workflow, and a replica that dies during the delay leaves it to another (bot/work/engine.py).
Importing this module loads DBOS: the runtime imports it only when policies are set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from dbos import DBOS

from bot.core import messages
from bot.core.alerts import Alert, AutoState, Phase, auto_moved, auto_planned, parse_job_body
from bot.core.health import health_warning
from bot.core.messages.auto_alert import NOT_AUTO
from bot.core.outcome import RETRYABLE, TERMINAL, Outcome
from bot.core.policies import COMPLETED, DRY_RUN, FAILED_AGAIN, SENT, Policy, first_match
from bot.core.words import POLICY_ACTOR
from bot.core.worker_errors import error_summary
from bot.infra.logs import ctx
from bot.infra.metrics import Metrics
from bot.infra.timing import Timing
from bot.slack.out import Place, SlackOut
from bot.store import AuditEntry, Store
from bot.work.alert_desk import AlertDesk
from bot.work.auto_switch import AutoSwitch
from bot.work.engine import Engine
from bot.work.events import MessageRef
from bot.work.health import EndpointHealth
from bot.work.retry import RetryService
from bot.work.who import Source, Who

log = logging.getLogger(__name__)

# The longest an automatic retry's reply waits for its alert to be in Slack (200 alerts in one channel take 200 s).
ALERT_WAIT = 600.0
_current: AutoRetrier | None = None  # workflows are module-level functions: they reach the running app here


def current() -> AutoRetrier:
    if _current is None:
        raise RuntimeError("no app is running automatic retries in this process")
    return _current


class AutoRetrier:
    """Matches failures to policies, starts their workflows, and answers Stop."""

    def __init__(self, policies: tuple[Policy, ...], engine: Engine, desk: AlertDesk, service: RetryService,
                 switch: AutoSwitch, health: EndpointHealth, store: Store, out: SlackOut, metrics: Metrics,
                 timing: Timing):
        self.policies = {policy.name: policy for policy in policies}
        self._ordered = policies
        self.engine = engine
        self.desk = desk
        self.service = service
        self.switch = switch
        self.health = health
        self.store = store
        self.out = out
        self.metrics = metrics
        self.timing = timing
        self.running = False  # the engine is up: failures are matched (not in one-off commands like `alert`)

    async def open(self) -> None:
        global _current
        _current = self
        await self.engine.open()  # resumes this executor's unfinished workflows: `_current` must be set first
        self.running = True

    async def close(self) -> None:
        global _current
        self.running = False
        await self.engine.close()
        if _current is self:
            _current = None

    def delay(self, policy: Policy) -> float:
        return policy.delay * self.timing.scale  # the policy's seconds on the app's clock (shrunk in tests)

    def match(self, endpoint: str, body: dict[str, Any]) -> Policy | None:
        _job, status = parse_job_body(body)
        error = body.get("error")
        text = error if isinstance(error, str) else None if error is None else str(error)
        return first_match(self._ordered, endpoint, status, error_summary(error), text)

    async def failure(self, endpoint: str, body: dict[str, Any], channel: str, policy: Policy,
                      arrived: float) -> tuple[str, Alert]:
        """A failure a policy matched: its alert posted quietly with when the retry goes (the delay counted from
        `arrived`, when the app took the failure), and the workflow started. Paused (by on-call or the breaker),
        the alert is today's, saying why it was not retried automatically."""
        pause = await self.switch.paused(endpoint)
        due = arrived + self.delay(policy)

        async def post(fresh: Alert) -> Alert:
            planned = auto_planned(fresh, policy.name, 1, policy.max_attempts, due, dry_run=policy.dry_run)
            if pause is not None:
                planned = auto_moved(planned, AutoState.SKIPPED, messages.auto_paused_note(pause))
            return await self.desk.post(planned)

        result, alert = await self.desk.failure(endpoint, body, channel, post=post)
        auto = alert.auto
        if auto is None or auto.policy != policy.name:
            return result, alert
        if result == "posted" and auto.state is AutoState.DRY_RUN:
            await self.audit(policy.name, alert, DRY_RUN, f"would retry at {auto.due:.0f}")
        elif result == "posted" and auto.state is AutoState.SKIPPED:
            await self.audit(policy.name, alert, "skipped", auto.note)
        if auto.state is AutoState.WAITING:
            # Started again by a redelivery or by work taken over after a crash: the same ID joins the first.
            await self.engine.start(workflow_id(alert), auto_retry, endpoint, alert.job, policy.name)
        return result, alert

    async def stop(self, who: Who, endpoint: str, job: str, channel: str, message_ts: str) -> None:
        """Stop, on an auto-retrying alert: the policy lets go and people decide (Retry comes back at once)."""
        if not await self.service.gate(who, endpoint, (job,)):  # the access rules of retrying; refused: told
            return
        async with self.desk.lock((endpoint, job)):
            alert = await self.desk.get(endpoint, job)
            if alert is None or alert.auto is None or alert.auto.state is not AutoState.WAITING:
                late = messages.auto_stop_too_late(endpoint, job, alert.auto if alert else None)
                await self.out.ephemeral(channel, who.user, late, who.response_url)
                return
            await self.store.stop_auto(endpoint, job, who.user, time.time())
            stopped = auto_moved(alert, AutoState.STOPPED, f"Stopped by {messages.mention(who.user)}")
            alert = await self.desk.save(stopped)
        self.metrics.auto_retries.labels(policy=alert.auto.policy if alert.auto else "", result="stopped").inc()
        await self.service.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "auto:stop",
                                             detail=f"policy {alert.auto.policy if alert.auto else ''}"))

    async def claim_let_go(self, endpoint: str, job: str) -> bool:
        """The previous attempt's follow holds the job's claim until it has said how the job ended, which waits for
        Slack's pace: the next attempt waits for that (bounded), so it is not refused as its own duplicate. True
        when it had to wait."""
        deadline = time.time() + 60 * self.timing.scale
        waited = False
        while time.time() < deadline:
            claim = await self.store.claimed(endpoint, job)
            if claim is None or not claim.user.startswith(POLICY_ACTOR):
                return waited
            waited = True
            await asyncio.sleep(self.timing.auto_poll)
        return waited

    async def posted(self, place: Place, endpoint: str, job: str) -> None:
        """Until the job's alert is in Slack (or Slack refused it for good): then `place` is its thread. Bounded: an
        alert whose place was never recorded (its replica died as Slack took it) gets its reply in the channel."""
        deadline = time.time() + ALERT_WAIT * self.timing.scale
        while True:
            alert = await self.desk.get(endpoint, job)
            if alert is None or alert.ts or not alert.posting or time.time() >= deadline:
                place.thread_ts = alert.reply_thread if alert is not None else None
                return
            await asyncio.sleep(self.timing.auto_poll)

    async def audit(self, policy: str, alert: Alert, outcome: str, detail: str | None = None) -> None:
        self.metrics.auto_retries.labels(policy=policy, result=outcome).inc()
        await self.service.record(AuditEntry(POLICY_ACTOR + policy, alert.channel, alert.endpoint, alert.job,
                                             Source.POLICY, f"auto:{outcome}", detail=(detail or "")[:300] or None))


def workflow_id(alert: Alert) -> str:
    """One workflow per failure: the job and when it failed (a later failure of the same job is a new one)."""
    return f"auto:{alert.endpoint}:{alert.job}:{alert.ended_at:.3f}"


# ------------------------------------------------------------------------------------------------ the workflow


@DBOS.workflow(name="auto_retry")
async def auto_retry(endpoint: str, job: str, policy_name: str) -> str:
    """One matched failure, from its quiet alert to its end. Each step is checkpointed: after a crash it goes on
    from the last one finished, here or on another replica, and each wait keeps its end (a step's recorded output,
    or a durable sleep's recorded wake-up time)."""
    policy = current().policies.get(policy_name)
    if policy is None:  # the policy file changed since: people decide
        await hand_over(endpoint, job, AutoState.SKIPPED, f"Policy `{policy_name}` is no longer configured")
        return "skipped"
    for attempt in range(1, policy.max_attempts + 1):
        due = await show_waiting(endpoint, job, policy_name, attempt)
        # Until the recorded time, not a DBOS sleep: that counts its seconds from when its own record is written,
        # which in a storm came up to half a second after this step had worked them out.
        await asyncio.sleep(max(0.0, due - time.time()))
        why_not = await send(endpoint, job, policy_name, attempt)
        if why_not is not None:
            state, note = why_not
            if note is not None:  # None: Stop already handed it over
                await hand_over(endpoint, job, AutoState(state), note)
            return state
        ended = ""
        while not ended:
            await DBOS.sleep_async(current().timing.auto_poll)
            ended = await ending(endpoint, job)
        await record(endpoint, job, policy_name, attempt, ended)
        if ended != FAILED_AGAIN:
            return ended  # completed; or it ended another way, which the alert already says
    await hand_over(endpoint, job, AutoState.SPENT,
                    f"{messages.auto_spent_note(policy.max_attempts)}, policy `{policy_name}`")
    return "spent"


@DBOS.step()
async def show_waiting(endpoint: str, job: str, policy_name: str, attempt: int) -> float:
    """The alert says when this attempt goes; returns that time. The first attempt's time was set when the failure
    arrived (the alert already shows it): the wait counts from then, not from this step."""
    auto = current()
    policy = auto.policies[policy_name]
    due = time.time() + auto.delay(policy)
    async with auto.desk.lock((endpoint, job)):
        alert = await auto.desk.get(endpoint, job)
        if alert is not None and alert.auto is not None and alert.auto.state is not AutoState.STOPPED:
            if (alert.auto.attempt, alert.auto.state) == (attempt, AutoState.WAITING):
                due = alert.auto.due
            else:
                await auto.desk.save(auto_planned(alert, policy_name, attempt, policy.max_attempts, due))
    return due


async def why_not_now(auto: AutoRetrier, alert: Alert, policy: Policy) -> tuple[str, str | None] | None:
    """Why this attempt must not go now, as (state, words for the alert; None when Stop already handed it over);
    None when it may."""
    endpoint = alert.endpoint
    if await auto.store.auto_stopped(endpoint, alert.job) is not None:
        return "stopped", None
    if time.time() >= alert.deadline:
        return "skipped", f"{NOT_AUTO}RunPod has forgotten the job (30 minutes after it ended)"
    if not auto.service.access.enabled(endpoint):
        return "skipped", f"{NOT_AUTO}this app may not call the endpoint (RUNPOD_RETRY_ENDPOINTS)"
    pause = await auto.switch.paused(endpoint)
    if pause is not None:
        return "skipped", messages.auto_paused_note(pause)
    if policy.only_when_healthy:
        health = await auto.health.get(endpoint)
        warning = health_warning(health) if health is not None else None
        if warning is not None:
            await auto.switch.trip(endpoint, f"its health warns: {warning}")
            return "skipped", f"{NOT_AUTO}the endpoint's health warns ({warning})"
    return None


@DBOS.step()
async def send(endpoint: str, job: str, policy_name: str, attempt: int) -> tuple[str, str | None] | None:
    """The attempt, checked right before it goes (see `why_not_now`), then sent through the same rules and path as a
    click. None when RunPod took it; else (the state the alert moves to, its words; None when Stop already handed
    it over). Check and call are one step: 200 workflows waking together each write one checkpoint fewer before
    their /retry.

    A step can run twice when its replica dies before its checkpoint. An alert already retrying this attempt was
    checked by the first run, and is not checked again. The `sent` record, written before the call, tells the second
    run to ask RunPod first, and a job already requeued is not sent again."""
    auto = current()
    async with auto.desk.lock((endpoint, job)):
        alert = await auto.desk.get(endpoint, job)
        if alert is None or alert.auto is None or alert.auto.state is AutoState.STOPPED:
            return "stopped", None
        if (alert.auto.state, alert.auto.attempt) != (AutoState.RETRYING, attempt):
            why_not = await why_not_now(auto, alert, auto.policies[policy_name])
            if why_not is not None:
                return why_not
            alert = await auto.desk.save(auto_moved(alert, AutoState.RETRYING))
    if not await auto.store.record_auto(endpoint, job, attempt, policy_name, SENT, time.time()):
        # This step ran before and may have reached RunPod: a job no longer failed was requeued by it.
        now = await auto.service.call_status(endpoint, job)
        if now.job_status not in RETRYABLE:
            return None
    if await auto.claim_let_go(endpoint, job):
        # That wait can be long (the previous ending waits for Slack's pace): the breaker or on-call may have
        # paused retries meanwhile, and a pause means no automatic retry leaves after it.
        pause = await auto.switch.paused(endpoint)
        if pause is not None:
            return "skipped", messages.auto_paused_note(pause)
        if await auto.store.auto_stopped(endpoint, job) is not None:
            return "skipped", f"{NOT_AUTO}someone stopped the automatic retries"
    who = Who(POLICY_ACTOR + policy_name, alert.channel, Source.POLICY)
    place = Place(alert.channel, thread_ts=alert.reply_thread)
    # In a storm the alert may still wait for its turn in the channel: RunPod is called now, the reply waits for it.
    parent = None if alert.ts else auto.service.background.spawn(auto.posted(place, endpoint, job),
                                                                  name=f"alert posted {endpoint}/{job}")
    result = await retry_by_policy(auto.service, who, endpoint, job, place,
                                   MessageRef(alert.channel, alert.ts or "", alert.thread_ts), parent)
    if isinstance(result, str):
        return "skipped", NOT_AUTO + result
    auto.metrics.auto_retries.labels(policy=policy_name, result=SENT if result.ok else "refused").inc()
    return None if result.ok else ("skipped", NOT_AUTO + result.summary)


async def retry_by_policy(service: RetryService, who: Who, endpoint: str, job: str, place: Place,
                          origin: MessageRef, parent: asyncio.Task[None] | None) -> Outcome | str:
    """A click's rules (exactly once, the hourly budget) and path (record, reply in the alert's thread, follow).
    A refusal is recorded and returned in words for the alert: nobody asked, so nobody is told privately."""
    async with service.claims.hold(endpoint, job, who.user) as hold:
        if hold.taken_by is not None:
            await service.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "refused:duplicate",
                                            detail=f"already retried by {hold.taken_by.user}"))
            return f"{messages.mention(hold.taken_by.user)} was already retrying it"
        limit = await service.retry_limit(endpoint, job)
        if limit is not None:
            await service.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, "refused:budget",
                                            detail=limit[:300]))
            return limit
        # Not announced: `send` already shows the alert as the policy's retry, and every write before the call is one
        # more that 200 retries at once queue behind on one database.
        return await service.attempt(who, endpoint, job, place, hold, origin=origin, parent=parent)


@DBOS.step()
async def ending(endpoint: str, job: str) -> str:
    """How the retried job ended, "" while it runs. RunPod's own word: the alert hears it later, once the ending is
    in its thread at the channel's pace, and the breaker and the next attempt must not wait for Slack."""
    auto = current()
    status = (await auto.service.call_status(endpoint, job)).job_status
    if status == "COMPLETED":
        return COMPLETED
    if status in RETRYABLE:
        return FAILED_AGAIN
    if status in TERMINAL:
        return status.lower()
    alert = await auto.desk.get(endpoint, job)  # RunPod did not say (away, or it forgot the job): the follow's word
    if alert is None:
        return "unknown"
    if alert.phase in (Phase.RETRYING, Phase.REQUEUED):
        return ""
    return {Phase.COMPLETED: COMPLETED, Phase.FAILED_AGAIN: FAILED_AGAIN}.get(alert.phase, alert.phase.value)


@DBOS.step()
async def record(endpoint: str, job: str, policy_name: str, attempt: int, ended: str) -> None:
    """The attempt's end: in the store (the breaker counts it), the metrics and, when it completed, the alert."""
    auto = current()
    await auto.store.record_auto(endpoint, job, attempt, policy_name, ended, time.time())
    auto.metrics.auto_retries.labels(policy=policy_name, result=ended).inc()
    if ended == COMPLETED:
        async with auto.desk.lock((endpoint, job)):
            alert = await auto.desk.get(endpoint, job)
            if alert is not None:
                await auto.desk.save(auto_moved(alert, AutoState.COMPLETED))
    if ended in (COMPLETED, FAILED_AGAIN):
        await auto.switch.finished(endpoint)


@DBOS.step()
async def hand_over(endpoint: str, job: str, state: AutoState, note: str) -> None:
    """The policy lets go: the alert offers Retry again, and a new message in the channel notifies people (an
    edited message notifies nobody)."""
    auto = current()
    async with auto.desk.lock((endpoint, job)):
        alert = await auto.desk.get(endpoint, job)
        if alert is None or alert.auto is None or alert.auto.handed_over:
            return
        alert = await auto.desk.save(auto_moved(alert, state, note))
    assert alert.auto is not None
    await auto.audit(alert.auto.policy, alert, state.value, note)
    log.info("automatic retries handed to people: %s", note, extra=ctx(endpoint=endpoint, job=job))
    await auto.out.post_later(Place(alert.channel, thread_ts=alert.reply_thread),
                              messages.auto_handed_over(alert, auto.desk.link(alert)))


__all__ = ["AutoRetrier", "auto_retry", "current", "workflow_id"]
