"""At the platforms' real limits (issue 10): a storm of failure webhooks into one alert channel, then a 300-job bulk
retry; each beside the floor the limits allow."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.config import (
    ALERT_CHANNEL,
    ALL_REQUEUED,
    LIMITS_BULK,
    LIMITS_BULK_CAP,
    LIMITS_BULK_CHANNEL,
    LIMITS_BULK_ENDPOINT,
    LIMITS_BULK_LATENCY,
    NOT_RETRIED,
    QUIET,
    SIGNING_SECRET,
    STORM_CAP,
    STORM_ENDPOINTS,
    STORM_PER_ENDPOINT,
    STORM_SPREAD,
    WEBHOOK_SECRET,
)
from bench.scenarios import call_text, raw_post
from testkit.fakes import FakeRunPod, FakeSlack, SlackCall
from testkit.fakes.limits import SLACK_POST_PER_CHANNEL, RunPodLimits
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.polling import came_true

# ---------------------------------------------------------------- real limits (issue 10)


async def quiet(slack: FakeSlack, seconds: float = QUIET, cap: float = 60.0) -> None:
    """Wait until the app has sent nothing to Slack for `seconds` (its outbox has drained), at most `cap`."""
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        last = slack.calls[-1].at if slack.calls else 0.0
        if time.monotonic() - last >= seconds:
            return
        await asyncio.sleep(0.1)


def channel_text(slack: FakeSlack, channel: str) -> str:
    """Every word the channel shows now: top-level messages and their threads (as updated)."""
    texts = []
    for (ch, _), msg in list(slack.messages.items()):
        if ch == channel:
            texts.append(call_text(SlackCall("message", msg, None, 0.0)))
    return "\n".join(texts)


@dataclass
class Storm:
    failures: int = 0
    webhooks_ok: int = 0
    webhooks_sent_in: float = 0.0      # first webhook sent -> last one answered
    visible_after: float | None = None  # first webhook sent -> every failed job's ID visible in the channel
    visible: int = 0                   # jobs visible when the wait ended
    posts_needed: int = 0              # chat.postMessage calls into the alert channel by then
    posts_total: int = 0               # ... once the app was quiet again
    top_level: int = 0                 # top-level messages in the alert channel
    updates: int = 0                   # chat.update calls Slack carried out
    slack_429: int = 0                 # 429s Slack's limits answered the app (all methods)
    slack_429_post: int = 0            # ... of them chat.postMessage into the alert channel
    refused: int = 0                   # calls Slack refused for good (rejected, or any non-429 error)
    rejected: int = 0                  # ... of them malformed (Block Kit etc.)
    runpod_429: int = 0

    @property
    def floor(self) -> float:
        """What Slack's per-channel limit allows for the posts the app needed: the burst at once, then 1 a second."""
        rate = SLACK_POST_PER_CHANNEL
        return max(0.0, (self.posts_needed - rate.capacity) / rate.per_second)

    @property
    def dropped(self) -> int:
        return (self.failures - self.visible) + self.refused


async def storm(port: int, slack: FakeSlack, runpod: FakeRunPod, http: aiohttp.ClientSession) -> Storm:
    jobs = [(ep, f"{ep}-job-{i:03d}") for ep in STORM_ENDPOINTS for i in range(STORM_PER_ENDPOINT)]
    for ep, job in jobs:
        runpod.add_job(ep, job, status="FAILED")
    # Interleaved across the endpoints, as a storm arrives.
    order = sorted(jobs, key=lambda ej: (ej[1][-3:], ej[0]))
    first_call, first_hit, first_rp_hit = len(slack.calls), len(slack.limit_hits), len(runpod.limit_hits)
    step = STORM_SPREAD / len(order)
    start = time.monotonic()

    async def one(i: int, ep: str, job: str) -> bool:
        await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
        body = {"id": job, "status": "FAILED", "error": "CUDA out of memory", "executionTime": 1234}
        async with http.post(f"http://127.0.0.1:{port}/runpod/webhook/{ep}?token={WEBHOOK_SECRET}",
                             json=body) as response:
            await response.read()
            return response.status == 200

    answered = await asyncio.gather(*(one(i, ep, job) for i, (ep, job) in enumerate(order)))
    sent_in = time.monotonic() - start
    ids = [job for _, job in jobs]

    def shown() -> int:
        text = channel_text(slack, ALERT_CHANNEL)
        return sum(1 for job in ids if job in text)

    def posts() -> int:
        return sum(1 for c in slack.calls[first_call:]
                   if c.method == "chat.postMessage" and c.ok and c.channel == ALERT_CHANNEL)

    visible_after = None
    deadline = start + STORM_CAP
    while time.monotonic() < deadline:
        if shown() == len(ids):
            visible_after = time.monotonic() - start
            break
        await asyncio.sleep(0.05)
    result = Storm(failures=len(ids), webhooks_ok=sum(answered), webhooks_sent_in=sent_in,
                   visible_after=visible_after, posts_needed=posts())
    await quiet(slack)
    calls = slack.calls[first_call:]
    hits = slack.limit_hits[first_hit:]
    result.visible = shown()
    result.posts_total = posts()
    result.top_level = sum(1 for (ch, _), m in slack.messages.items() if ch == ALERT_CHANNEL and not m.get("thread_ts"))
    result.updates = sum(1 for c in calls if c.method == "chat.update" and c.ok)
    result.slack_429 = len(hits)
    result.slack_429_post = sum(1 for h in hits if h.method == "chat.postMessage" and h.channel == ALERT_CHANNEL)
    result.refused = sum(1 for c in calls if not c.ok and c.status != 429)
    result.rejected = sum(1 for c in calls if c.rejected)
    result.runpod_429 = len(runpod.limit_hits) - first_rp_hit
    return result


def not_retried(headline: str) -> int | None:
    """How many jobs the summary's headline (its fallback text, not the per-job table) says were not retried."""
    if match := NOT_RETRIED.search(headline):
        return int(match.group(1))
    return 0 if ALL_REQUEUED.search(headline) else None


@dataclass
class LimitsBulk:
    jobs: int = LIMITS_BULK
    requeued_after: float | None = None  # command sent -> the last job requeued (RunPod answered 200)
    summary_after: float | None = None   # command sent -> the summary reply posted
    requeued: int = 0                    # distinct jobs requeued
    requeued_once: int = 0               # ... exactly once
    runpod_429: int = 0                  # 429s RunPod's limits answered the app's /retry calls
    peak_window: int = 0                 # most /retry calls RunPod accepted in any 10 s
    peak_in_flight: int = 0              # most /retry calls in flight at once
    not_retried: int | None = None       # what the summary reports as not retried
    rate_limited_words: bool = False     # the summary mentions rate limiting
    slack_429: int = 0
    refused: int = 0                     # Slack calls refused for good during the run

    @property
    def floor(self) -> float:
        """RunPod's /retry limit: 100 at once, then 100 more every 10 s; the last hundred, 20 at a time."""
        limit = RunPodLimits().ops["retry"]
        assert limit.requests is not None and limit.concurrent is not None
        windows = math.ceil(self.jobs / limit.requests) - 1
        last = min(self.jobs - windows * limit.requests, limit.requests)
        return windows * RunPodLimits().window + math.ceil(last / limit.concurrent) * LIMITS_BULK_LATENCY

    @property
    def total(self) -> float | None:
        if self.requeued_after is None or self.summary_after is None:
            return None
        return max(self.requeued_after, self.summary_after)


async def limits_bulk(port: int, slack: FakeSlack, runpod: FakeRunPod) -> LimitsBulk:
    runpod.latency = LIMITS_BULK_LATENCY
    jobs = [f"job-{i:04d}-u1" for i in range(LIMITS_BULK)]
    for job in jobs:
        runpod.add_job(LIMITS_BULK_ENDPOINT, job, status="FAILED", after_retry=("IN_PROGRESS", "COMPLETED"))
    body = form_encode(slash_command_body(f"{LIMITS_BULK_ENDPOINT} " + " ".join(jobs), user_id="UBULK",
                                          channel_id=LIMITS_BULK_CHANNEL, response_url=slack.new_response_url(),
                                          trigger_id="T.limits-bulk"))
    first_call, first_hit, first_rp_call = len(slack.calls), len(slack.limit_hits), len(runpod.calls)

    def summary() -> SlackCall | None:
        return next((c for c in slack.calls[first_call:]
                     if c.method == "chat.postMessage" and c.ok and c.channel == LIMITS_BULK_CHANNEL
                     and c.args.get("thread_ts") and "Results for" in call_text(c)), None)

    def requeued_calls() -> list[Any]:
        return [c for c in runpod.calls[first_rp_call:]
                if c.op == "retry" and c.limited is None and c.status == 200 and c.endpoint == LIMITS_BULK_ENDPOINT]

    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw_post(port, "/slack/events", body, sign(body, SIGNING_SECRET)))
    await reader.read()
    writer.close()
    result = LimitsBulk()
    await came_true(lambda: len({c.job for c in requeued_calls()}) >= LIMITS_BULK and summary() is not None,
               LIMITS_BULK_CAP, 0.02)
    done = requeued_calls()
    counts = {job: sum(1 for c in done if c.job == job) for job in {c.job for c in done}}
    if len(counts) >= LIMITS_BULK:
        result.requeued_after = max(c.at for c in done) - start
    posted = summary()
    if posted is not None:
        result.summary_after = posted.at - start
        text = call_text(posted)
        result.not_retried = not_retried(str(posted.args.get("text") or ""))
        result.rate_limited_words = bool(re.search(r"rate.limit|limiting requests", text))
    result.requeued = len(counts)
    result.requeued_once = sum(1 for n in counts.values() if n == 1)
    retries = [c for c in runpod.calls[first_rp_call:] if c.op == "retry" and c.endpoint == LIMITS_BULK_ENDPOINT]
    result.runpod_429 = sum(1 for c in retries if c.status == 429)
    result.peak_window = runpod.peak("retry", endpoint=LIMITS_BULK_ENDPOINT)
    result.peak_in_flight = runpod.peak_concurrency("retry", LIMITS_BULK_ENDPOINT)
    result.slack_429 = len(slack.limit_hits) - first_hit
    result.refused = sum(1 for c in slack.calls[first_call:] if not c.ok and c.status != 429)
    return result


