"""Retry policies at the platforms' real limits (issue 20), each measured at the stand-ins.

- Transient storm: AUTO_STORM failure webhooks (a CUDA out-of-memory) over AUTO_ENDPOINTS endpoints within
  AUTO_SPREAD seconds, a policy retrying each once after AUTO_DELAY. Each job must be retried exactly once, its
  retry must go within the delay + 1 s of its webhook, and all of them within 1.3 × the floor RunPod's limits set
  (each retry due at its webhook + the delay, at most 20 at once and 100 per 10 s per endpoint). The jobs then
  complete; every alert saying so takes Slack's 1 post a second in the one alert channel (minutes), so how many
  say it is read AUTO_DONE_AFTER seconds after the first webhook, beside Slack's floor for the posts involved.
- Failing storm: FAILING_JOBS failures on one endpoint, 2 a second, every automatic retry failing again. The
  breaker must trip (half or more of the endpoint's last 10 automatic retries failed again), say so once in the
  alert channel, and no automatic retry may go out on the endpoint after it.

Times are the stand-ins' (time.monotonic() on arrival); the breaker's trip time is the pause the app stored
(wall clock, converted)."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.auto_timeline import Timeline, around, timeline
from bench.config import (
    AUTO_CHANNEL,
    AUTO_DELAY,
    AUTO_DONE_AFTER,
    AUTO_ENDPOINTS,
    AUTO_LATENCY,
    AUTO_RETRY_CAP,
    AUTO_SPREAD,
    AUTO_STORM,
    FAILING_CAP,
    FAILING_CHANNEL,
    FAILING_DELAY,
    FAILING_ENDPOINT,
    FAILING_JOBS,
    FAILING_LATER,
    FAILING_SPREAD,
    WEBHOOK_SECRET,
)
from bench.limits import channel_text, quiet
from bench.one_channel import floor, pct
from bench.scenarios import call_text
from bot.core.actions import AUTO_RESUME
from testkit.fakes import FakeRunPod, FakeSlack, SlackCall
from testkit.fakes.limits import RunPodLimits
from testkit.polling import came_true

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
COMPLETED_WORDS = "Completed after automatic retry"
PAUSED_WORDS = "Not retried automatically"


def policy_file(path: Path, name: str, endpoints: list[str], attempts: int, delay: float) -> str:
    path.write_text(f'[[policy]]\nname = "{name}"\nendpoints = {endpoints!r}\nerrors = ["CUDA out of memory"]\n'
                    f'max_attempts = {attempts}\ndelay = "{delay:g}s"\nmode = "on"\n'.replace("'", '"'))
    return str(path)


def retry_floor(dues: list[float], latency: float) -> float:
    """The earliest the last of one endpoint's /retry calls can reach RunPod: each no sooner than it is due, at most
    `concurrent` in flight (each `latency` long) and `requests` in any window."""
    limits = RunPodLimits()
    limit = limits.ops["retry"]
    assert limit.requests is not None and limit.concurrent is not None
    ends: list[float] = []    # when each call sent so far is answered
    starts: list[float] = []
    for due in sorted(dues):
        at = due
        if len(ends) >= limit.concurrent:
            at = max(at, sorted(ends)[-limit.concurrent])
        if len(starts) >= limit.requests:
            at = max(at, starts[-limit.requests] + limits.window)
        starts.append(at)
        ends.append(at + latency)
    return max(starts, default=0.0)


async def send_webhooks(port: int, http: aiohttp.ClientSession, order: list[tuple[str, str]],
                        spread: float) -> tuple[float, dict[str, float], int]:
    """The failure webhooks, evenly over `spread` seconds: (start, when each job's was sent, how many got 200)."""
    step = spread / max(1, len(order) - 1)
    start = time.monotonic()
    sent: dict[str, float] = {}

    async def one(i: int, ep: str, job: str) -> bool:
        await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
        sent[job] = time.monotonic()
        body = {"id": job, "status": "FAILED", "error": OOM, "executionTime": 4321}
        async with http.post(f"http://127.0.0.1:{port}/runpod/webhook/{ep}?token={WEBHOOK_SECRET}",
                             json=body) as response:
            await response.read()
            return response.status == 200

    answered = await asyncio.gather(*(one(i, ep, job) for i, (ep, job) in enumerate(order)))
    return start, sent, sum(answered)


def alerts(slack: FakeSlack, channel: str) -> dict[str, str]:
    """Each top-level message's text in the channel, as it reads now (edits included), by its ts."""
    return {ts: call_text(SlackCall("message", m, None, 0.0)) for (ch, ts), m in list(slack.messages.items())
            if ch == channel and not m.get("thread_ts")}


def channel_posts(slack: FakeSlack, channel: str, since: int) -> list[SlackCall]:
    return [c for c in slack.calls[since:] if c.method == "chat.postMessage" and c.ok and c.channel == channel]


# ---------------------------------------------------------------- the transient storm


@dataclass
class TransientStorm:
    jobs: int = AUTO_STORM
    webhooks_ok: int = 0
    webhooks_in: float = 0.0               # first webhook sent -> last sent
    retried_once: int = 0                  # jobs RunPod requeued exactly once
    retried_more: int = 0                  # ... more than once (must be 0)
    retry_calls: int = 0                   # /retry calls the app made for the storm's jobs (429s included)
    runpod_429: int = 0
    late: list[float] = field(default_factory=list)  # per job: first /retry − webhook sent − the delay
    all_out: float | None = None           # first webhook -> the last job's accepted /retry
    floor: float = 0.0                     # ... the earliest RunPod's limits allow, given when each was due
    peak_in_flight: int = 0                # most /retry in flight on one endpoint
    alerts_by_last_retry: int = 0          # alerts Slack had taken when the last retry went out
    posts_by_last_retry: int = 0           # channel posts Slack had taken by then
    alerts_posted: int = 0                 # alerts in Slack at AUTO_DONE_AFTER
    completed_after: float | None = None   # first webhook -> every alert says its job completed, if by then
    completed: int = 0                     # alerts saying so at AUTO_DONE_AFTER (or when all did)
    read_at: float = 0.0                   # first webhook -> when they were counted
    posts_total: int = 0                   # chat.postMessage calls into the alert channel by then
    posts_queued: int = 0                  # posts the app had put in the channel's outbox lane by then (sent or not)
    updates: int = 0                       # chat.update calls Slack carried out
    slack_429: int = 0
    refused: int = 0
    timeline: Timeline = field(default_factory=Timeline)

    @property
    def posts_floor(self) -> float:
        """The earliest Slack takes every post the app had queued for the channel (1 a second in one channel)."""
        return floor(self.posts_queued)

    @property
    def ratio(self) -> float | None:
        return self.all_out / self.floor if self.all_out is not None and self.floor > 0 else None


def storm_endpoint(i: int) -> str:
    return f"oom-ep-{i % AUTO_ENDPOINTS}"


async def transient_storm(port: int, slack: FakeSlack, runpod: FakeRunPod, http: aiohttp.ClientSession,
                          db: Path) -> TransientStorm:
    runpod.latency = AUTO_LATENCY
    order = [(storm_endpoint(i), f"oom-job-{i:03d}") for i in range(AUTO_STORM)]  # interleaved across endpoints
    for ep, job in order:
        runpod.add_job(ep, job, status="FAILED", error=OOM, after_retry=("COMPLETED",))
    jobs = {job for _, job in order}
    endpoint_of = dict((job, ep) for ep, job in order)
    first_call, first_hit, first_rp = len(slack.calls), len(slack.limit_hits), len(runpod.calls)
    wall_minus_mono = time.time() - time.monotonic()
    start, sent, ok = await send_webhooks(port, http, order, AUTO_SPREAD)
    result = TransientStorm(webhooks_ok=ok, webhooks_in=max(sent.values()) - start)

    def accepted() -> dict[str, float]:
        first: dict[str, float] = {}
        for c in runpod.calls[first_rp:]:
            if c.op == "retry" and c.status == 200 and c.job in jobs:
                first.setdefault(c.job, c.at)
        return first

    await came_true(lambda: len(accepted()) >= len(jobs), AUTO_RETRY_CAP + AUTO_DELAY, 0.05)
    await asyncio.sleep(AUTO_DELAY)  # a second retry of any job would come by now
    calls = [c for c in runpod.calls[first_rp:] if c.op == "retry" and c.job in jobs]
    result.retry_calls = len(calls)
    result.runpod_429 = sum(1 for c in calls if c.status == 429)
    counts = {job: sum(1 for c in calls if c.job == job and c.status == 200) for job in jobs}
    result.retried_once = sum(1 for n in counts.values() if n == 1)
    result.retried_more = sum(1 for n in counts.values() if n > 1)
    firsts = accepted()
    first_try: dict[str, float] = {}
    for c in calls:
        if c.job is not None:
            first_try.setdefault(c.job, c.at)
    result.late = [first_try[job] - sent[job] - AUTO_DELAY for job in jobs if job in first_try]
    if len(firsts) == len(jobs):
        last = max(firsts.values())
        result.all_out = last - start
        by_endpoint: dict[str, list[float]] = {}
        for job in jobs:
            by_endpoint.setdefault(endpoint_of[job], []).append(sent[job] + AUTO_DELAY)
        result.floor = max(retry_floor(dues, AUTO_LATENCY) for dues in by_endpoint.values()) - start
        posts = channel_posts(slack, AUTO_CHANNEL, first_call)
        result.posts_by_last_retry = sum(1 for c in posts if c.at <= last)
        result.alerts_by_last_retry = sum(1 for c in posts if c.at <= last and not c.args.get("thread_ts"))
    result.peak_in_flight = max(runpod.peak_concurrency("retry", ep) for ep in set(endpoint_of.values()))

    def done() -> int:
        return sum(1 for text in alerts(slack, AUTO_CHANNEL).values() if COMPLETED_WORDS in text)

    result.timeline = timeline(db, sent, first_try, AUTO_DELAY, wall_minus_mono)
    if await came_true(lambda: done() >= len(jobs), max(0.0, start + AUTO_DONE_AFTER - time.monotonic()), 0.5):
        result.completed_after = time.monotonic() - start
    result.read_at = time.monotonic() - start
    texts = alerts(slack, AUTO_CHANNEL)
    result.completed = sum(1 for text in texts.values() if COMPLETED_WORDS in text)
    result.alerts_posted = len(texts)
    result.posts_total = len(channel_posts(slack, AUTO_CHANNEL, first_call))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE lane = ?", (f"channel:{AUTO_CHANNEL}",)).fetchone()
    result.posts_queued = int(row[0])
    result.updates = sum(1 for c in slack.calls[first_call:] if c.method == "chat.update" and c.ok)
    result.slack_429 = len(slack.limit_hits) - first_hit
    result.refused = sum(1 for c in slack.calls[first_call:] if not c.ok and c.status != 429)
    return result


# ---------------------------------------------------------------- the failing storm


@dataclass
class FailingStorm:
    jobs: int = FAILING_JOBS
    webhooks_ok: int = 0
    tripped_after: float | None = None     # first webhook -> the breaker's pause stored
    reason: str = ""                       # the breaker's reason, as stored (and told)
    failed_again_by_trip: int = 0          # automatic retries recorded as failed again by then
    fifth_failed_again: float | None = None  # first webhook -> the 5th failed-again recorded
    retries_before: int = 0                # automatic retries RunPod took on the endpoint before the trip
    retries_after: int = 0                 # ... after it (must be 0)
    second_attempts: int = 0               # of those before: second attempts
    jobs_retried: int = 0                  # jobs with at least one automatic retry
    handed_over: int = 0                   # failures before the trip whose next attempt the pause stopped
    later_failures: int = 0                # webhooks sent after the trip (a second wave)
    later_retried: int = 0                 # ... of those jobs retried at all (must be 0)
    later_told_paused: int = 0             # ... whose alert says they were not retried automatically
    notices: int = 0                       # breaker notices posted in the alert channel (must be 1)
    notice_after: float | None = None      # first webhook -> the notice reached Slack
    alerts_posted: int = 0
    # Where the time to the trip goes, for the failed-again results the breaker counted (median, max):
    to_retry: tuple[float, float] = (math.nan, math.nan)      # webhook -> the attempt's /retry at RunPod
    to_status: tuple[float, float] = (math.nan, math.nan)     # /retry -> the follow's /status answering FAILED
    to_recorded: tuple[float, float] = (math.nan, math.nan)   # that /status -> failed again recorded
    send_tail: tuple[float, float] = (math.nan, math.nan)     # /retry at RunPod -> the workflow's send step done
    # Each automatic retry RunPod took after the trip: (job, its /retry − the trip, the check that let it go − the
    # trip), seconds; a check before the trip and a /retry after it is the pause landing between the two.
    late_retries: list[tuple[str, float, float | None]] = field(default_factory=list)


def spread(values: list[float]) -> tuple[float, float]:
    return (statistics.median(values), max(values)) if values else (math.nan, math.nan)


async def failing_storm(port: int, slack: FakeSlack, runpod: FakeRunPod, http: aiohttp.ClientSession,
                        db: Path) -> FailingStorm:
    runpod.latency = AUTO_LATENCY
    order = [(FAILING_ENDPOINT, f"flaky-job-{i:03d}") for i in range(FAILING_JOBS)]
    for ep, job in order:
        runpod.add_job(ep, job, status="FAILED", error=OOM, after_retry=("FAILED",))
    jobs = {job for _, job in order}
    first_call, first_rp = len(slack.calls), len(runpod.calls)
    wall_minus_mono = time.time() - time.monotonic()
    start, sent, ok = await send_webhooks(port, http, order, FAILING_SPREAD)
    result = FailingStorm(webhooks_ok=ok)

    def tripped() -> tuple[float, str] | None:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT at, reason FROM auto_pauses WHERE scope = ? AND paused_by = 'breaker'",
                               (FAILING_ENDPOINT,)).fetchone()
        return (float(row[0]) - wall_minus_mono, str(row[1])) if row else None

    def notices() -> list[SlackCall]:
        """The breaker's notices: the channel's posts with a Resume button."""
        resume = f'"action_id": "{AUTO_RESUME}"'
        return [c for c in channel_posts(slack, FAILING_CHANNEL, first_call) if resume in json.dumps(c.args)]

    await came_true(lambda: tripped() is not None, max(0.0, start + FAILING_CAP - time.monotonic()), 0.2)
    trip = tripped()
    if trip is not None:  # a second wave, after the trip: none of it may be retried automatically
        wave = [(FAILING_ENDPOINT, f"flaky-later-{i:03d}") for i in range(FAILING_LATER)]
        for ep, job in wave:
            runpod.add_job(ep, job, status="FAILED", error=OOM, after_retry=("FAILED",))
        jobs |= {job for _, job in wave}
        _, later_sent, later_ok = await send_webhooks(port, http, wave, FAILING_LATER / 2)
        sent |= later_sent
        result.webhooks_ok += later_ok
    await came_true(lambda: notices(), max(0.0, start + FAILING_CAP - time.monotonic()), 0.2)
    await asyncio.sleep(FAILING_DELAY + 3.0)  # any retry still let through would arrive by now
    await quiet(slack, cap=max(1.0, start + FAILING_CAP - time.monotonic()))
    calls = [c for c in runpod.calls[first_rp:] if c.op == "retry" and c.job in jobs and c.status == 200]
    result.jobs_retried = len({c.job for c in calls})
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = [(str(job), int(attempt), float(at) - wall_minus_mono) for job, attempt, at in conn.execute(
            "SELECT job, attempt, at FROM auto_results WHERE endpoint = ? AND result = 'failed_again' ORDER BY at",
            (FAILING_ENDPOINT,))]
    ended = [at for _, _, at in rows]
    to_retry, to_status, to_recorded, send_tail = [], [], [], []
    for job, attempt, at in rows[:5]:  # the failed-again results the breaker counted
        sent_at = [c.at for c in calls if c.job == job]
        if len(sent_at) < attempt:
            continue
        retry_at = sent_at[attempt - 1]
        failed = [c.at for c in runpod.calls[first_rp:] if c.op == "status" and c.job == job and c.at > retry_at
                  and isinstance(c.body, dict) and c.body.get("status") == "FAILED"]
        if attempt == 1:
            to_retry.append(retry_at - sent[job])
        _, send_done = around(db, job, retry_at + wall_minus_mono)
        if send_done is not None:
            send_tail.append(send_done - wall_minus_mono - retry_at)
        if failed:
            to_status.append(failed[0] - retry_at)
            to_recorded.append(at - failed[0])
    result.to_retry, result.to_status, result.to_recorded = spread(to_retry), spread(to_status), spread(to_recorded)
    result.send_tail = spread(send_tail)
    if len(ended) >= 5:
        result.fifth_failed_again = ended[4] - start
    if trip is not None:
        at, result.reason = trip
        result.tripped_after = at - start
        result.failed_again_by_trip = sum(1 for t in ended if t <= at)
        result.retries_before = sum(1 for c in calls if c.at <= at)
        result.retries_after = sum(1 for c in calls if c.at > at)
        for c in calls:
            if c.at > at and c.job is not None:
                checked, _ = around(db, c.job, c.at + wall_minus_mono)
                result.late_retries.append(
                    (c.job, c.at - at, None if checked is None else checked - wall_minus_mono - at))
        seen: set[str] = set()
        for c in calls:
            if c.at <= at and c.job in seen:
                result.second_attempts += 1
            seen.add(str(c.job))
        later = [job for job in jobs if sent[job] > at]
        result.later_failures = len(later)
        retried = {c.job for c in calls}
        result.later_retried = sum(1 for job in later if job in retried)
        texts = alerts(slack, FAILING_CHANNEL)
        result.handed_over = sum(1 for job in jobs if job not in later
                                 and any(job in t and PAUSED_WORDS in t for t in texts.values()))
        result.later_told_paused = sum(1 for job in later
                                       if any(job in t and PAUSED_WORDS in t for t in texts.values()))
    told = notices()
    result.notices = len(told)
    result.notice_after = told[0].at - start if told else None
    result.alerts_posted = sum(1 for job in jobs if job in channel_text(slack, FAILING_CHANNEL))
    return result


def retries_late_ok(storm: TransientStorm) -> bool:
    return len(storm.late) == storm.jobs and max(storm.late) <= 1.0


__all__ = ["FailingStorm", "TransientStorm", "failing_storm", "pct", "policy_file", "transient_storm"]
