"""One busy channel (issue 17, defect 6): forty `/runpod-retry <endpoint> <job>` into one channel at once, Slack's
1 post a second per channel enforced by the stand-in, RunPod answering in 0.5 s. Measured at the stand-ins: how
long each retry took to reach RunPod after its ack (it must not wait behind the channel's posts), and how long
until every command's two messages (its parent and the result reply in the parent's thread) reached Slack, beside
the floor Slack's per-channel limit sets for that many posts."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field

from bench.config import (
    ONE_CHANNEL,
    ONE_CHANNEL_CAP,
    ONE_CHANNEL_COMMANDS,
    ONE_CHANNEL_ENDPOINTS,
    ONE_CHANNEL_LATENCY,
    REQUEUED,
    SIGNING_SECRET,
)
from bench.scenarios import call_text, raw_post, signed_request
from testkit.fakes import FakeRunPod, FakeSlack, SlackCall
from testkit.fakes.limits import SLACK_POST_PER_CHANNEL
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.polling import came_true


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def floor(posts: int) -> float:
    """The earliest the last of `posts` chat.postMessage calls into one channel can land: Slack's burst at once,
    then one a second."""
    rate = SLACK_POST_PER_CHANNEL
    return max(0.0, (posts - rate.capacity) / rate.per_second)


@dataclass
class OneChannel:
    commands: int = ONE_CHANNEL_COMMANDS
    acked: int = 0                       # commands answered 200 within ACK_CAP
    acks: list[float] = field(default_factory=list)        # command sent -> ack read
    to_runpod: list[float] = field(default_factory=list)   # ack read -> its /retry arrived at RunPod
    sent_to_runpod: list[float] = field(default_factory=list)  # command sent -> its /retry arrived
    retried: int = 0                     # jobs whose /retry reached RunPod
    requeued_once: int = 0               # jobs RunPod requeued exactly once
    requeued_more: int = 0               # ... more than once (must be 0)
    last_retry: float = 0.0              # burst start -> the last /retry arrived
    posts_before_last_retry: int = 0     # channel posts Slack had taken by then
    parents: int = 0                     # commands with their parent message in the channel
    results: int = 0                     # ... and a result reply in its thread
    results_say_requeued: int = 0
    results_after: float | None = None   # burst start -> the last result reply, when all arrived
    posts_by_results: int = 0            # channel posts Slack had taken by then (endings included)
    endings: int = 0                     # second replies (how the job ended) seen by the end
    all_after: float | None = None       # burst start -> the last post of all (endings included)
    posts_total: int = 0
    slack_429: int = 0                   # 429s Slack's limits answered for posts into the channel
    rejected: int = 0

    @property
    def results_floor(self) -> float:
        """Two posts per command (the parent and its result reply)."""
        return floor(2 * self.commands)

    @property
    def results_ratio(self) -> float | None:
        return self.results_after / self.results_floor if self.results_after is not None else None

    @property
    def all_floor(self) -> float:
        return floor(self.posts_total)

    @property
    def all_ratio(self) -> float | None:
        return self.all_after / self.all_floor if self.all_after is not None and self.all_floor > 0 else None


def endpoint_of(i: int) -> str:
    return f"one-ep-{i % ONE_CHANNEL_ENDPOINTS}"


async def one_channel(port: int, slack: FakeSlack, runpod: FakeRunPod) -> OneChannel:
    runpod.latency = ONE_CHANNEL_LATENCY
    jobs = [f"one-{i:02d}" for i in range(ONE_CHANNEL_COMMANDS)]
    for i, job in enumerate(jobs):
        runpod.add_job(endpoint_of(i), job, status="FAILED", after_retry=("COMPLETED",))
    requests = []
    for i, job in enumerate(jobs):
        body = form_encode(slash_command_body(f"{endpoint_of(i)} {job}", user_id=f"U{i % 7}", channel_id=ONE_CHANNEL,
                                              response_url=slack.new_response_url(), trigger_id=f"T.one.{i}"))
        requests.append(raw_post(port, "/slack/events", body, sign(body, SIGNING_SECRET)))
    first_call, first_hit, first_rp = len(slack.calls), len(slack.limit_hits), len(runpod.calls)

    async def one(request: bytes) -> tuple[bool, float, float]:
        return await signed_request(port, request)

    def posts() -> list[SlackCall]:
        return [c for c in slack.calls[first_call:]
                if c.method == "chat.postMessage" and c.ok and c.channel == ONE_CHANNEL]

    job_id = re.compile(r"\bone-\d\d\b")
    parent_ts: dict[str, str] = {}  # a parent message's ts -> its job (kept between polls: parents do not change)
    job_of: dict[int, str | None] = {}  # id(call) -> the job its text names

    def named(c: SlackCall) -> str | None:
        if id(c) not in job_of:
            match = job_id.search(call_text(c))
            job_of[id(c)] = match.group(0) if match else None
        return job_of[id(c)]

    def threads() -> tuple[dict[str, SlackCall], dict[str, list[SlackCall]]]:
        """Each job's parent post, and the replies in its thread, in order."""
        calls = posts()
        for (ch, ts), m in list(slack.messages.items()):
            if ch == ONE_CHANNEL and ts not in parent_ts and not m.get("thread_ts"):
                match = job_id.search(call_text(SlackCall("message", m, None, 0.0)))
                if match:
                    parent_ts[ts] = match.group(0)
        parents: dict[str, SlackCall] = {}
        replies: dict[str, list[SlackCall]] = {}
        for c in calls:
            thread = c.args.get("thread_ts")
            if not thread:
                job = named(c)
                if job is not None:
                    parents.setdefault(job, c)
            elif (job := parent_ts.get(str(thread))) is not None:
                replies.setdefault(job, []).append(c)
        return parents, replies

    def every_result() -> bool:
        parents, replies = threads()
        return len(parents) == len(jobs) and all(replies.get(job) for job in jobs)

    start = time.monotonic()
    acks = await asyncio.gather(*(one(request) for request in requests))
    await came_true(every_result, max(0.0, start + ONE_CHANNEL_CAP - time.monotonic()), 0.05)
    parents, replies = threads()
    result = OneChannel(acked=sum(1 for ok, _, _ in acks if ok), acks=[a - s for _, s, a in acks],
                        parents=len(parents), results=sum(1 for job in jobs if replies.get(job)))
    firsts = [replies[job][0] for job in jobs if replies.get(job)]
    result.results_say_requeued = sum(1 for c in firsts if REQUEUED.search(call_text(c)))
    if result.results == len(jobs) and result.parents == len(jobs):
        done = max(c.at for c in firsts)
        result.results_after = done - start
        result.posts_by_results = sum(1 for c in posts() if c.at <= done)

    retries = [c for c in runpod.calls[first_rp:] if c.op == "retry" and c.job in set(jobs)]
    first_retry: dict[str, float] = {}
    for c in retries:
        if c.job is not None:
            first_retry.setdefault(c.job, c.at)
    for (ok, sent, acked), job in zip(acks, jobs, strict=True):
        if ok and job in first_retry:
            result.to_runpod.append(first_retry[job] - acked)
            result.sent_to_runpod.append(first_retry[job] - sent)
    result.retried = len(first_retry)
    counts = [sum(1 for c in retries if c.job == job and c.status == 200) for job in jobs]
    result.requeued_once = sum(1 for n in counts if n == 1)
    result.requeued_more = sum(1 for n in counts if n > 1)
    if first_retry:
        last = max(first_retry.values())
        result.last_retry = last - start
        result.posts_before_last_retry = sum(1 for c in posts() if c.at <= last)

    # The endings (a second reply per thread, once the follow sees the job completed) share the channel's lane.
    await came_true(lambda: all(len(threads()[1].get(job, ())) >= 2 for job in jobs),
                    max(0.0, start + ONE_CHANNEL_CAP - time.monotonic()), 0.1)
    _, replies = threads()
    result.endings = sum(1 for job in jobs if len(replies.get(job, ())) >= 2)
    every = posts()
    result.posts_total = len(every)
    if result.endings == len(jobs) and every:
        result.all_after = max(c.at for c in every) - start
    result.slack_429 = sum(1 for h in slack.limit_hits[first_hit:]
                           if h.method == "chat.postMessage" and h.channel == ONE_CHANNEL)
    result.rejected = sum(1 for c in slack.calls[first_call:] if c.rejected)
    return result
