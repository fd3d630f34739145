"""The load: a burst of commands, one bulk retry; each measured at the stand-ins."""

from __future__ import annotations

import asyncio
import bisect
import math
import re
import time
from dataclasses import dataclass

from bench.config import (
    ACK_CAP,
    BULK,
    BULK_CONCURRENCY,
    BULK_LATENCY,
    BURST_ENDPOINTS,
    BURST_LATENCY,
    CHANNEL,
    ENDPOINT,
    REQUEUED,
    SIGNING_SECRET,
)
from testkit.fakes import FakeRunPod, FakeSlack, SlackCall
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import message_text
from testkit.polling import came_true


def raw_post(port: int, path: str, body: str, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 request, one per connection, as Slack sends them."""
    data = body.encode()
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", f"Content-Length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def signed_request(port: int, request: bytes) -> tuple[bool, float, float]:
    """Send one raw HTTP request and read the app's answer: (answered 200, sent, answer read), on the monotonic clock
    the stand-ins stamp their calls with. Raw streams, not an HTTP client library: a client's own per-request
    overhead, paid hundreds of times on this process's single event loop, would be counted as the app's latency.
    A request unanswered within ACK_CAP counts as answered at the cap."""
    sent = time.monotonic()
    try:
        async with asyncio.timeout(ACK_CAP):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            acked = time.monotonic()
            writer.close()
        return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), sent, acked
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False, sent, sent + ACK_CAP


@dataclass
class Burst:
    latencies: list[float]  # per command; ACK_CAP for acks that never came
    lost: int               # no 200 within ACK_CAP
    answered: int           # threads with a result reply
    requeued: int           # result replies saying the job was requeued
    all_answered: float | None  # burst start -> last result reply, when all arrived
    last_reply: float | None    # burst start -> last result reply seen (even if not all arrived)
    rejected: int           # messages the Slack stand-in refused (Block Kit etc.)
    runpod_max_in_flight: int
    parents_by: float = 0.0  # burst start -> the last command's parent message posted
    retries_by: float = 0.0  # burst start -> the last /retry call reached RunPod

    @classmethod
    def combined(cls, runs: list[Burst]) -> Burst:
        """Every ack of every run; the slowest run's reply time (None if any run missed replies)."""
        done = [r.all_answered for r in runs]
        return cls(
            latencies=[x for r in runs for x in r.latencies], lost=sum(r.lost for r in runs),
            answered=min(r.answered for r in runs), requeued=min(r.requeued for r in runs),
            all_answered=None if None in done else max(d for d in done if d is not None),
            last_reply=max((r.last_reply for r in runs if r.last_reply is not None), default=None),
            rejected=sum(r.rejected for r in runs), runpod_max_in_flight=max(r.runpod_max_in_flight for r in runs),
            parents_by=max(r.parents_by for r in runs), retries_by=max(r.retries_by for r in runs),
        )

    def over(self, limit: float) -> int:
        return sum(1 for latency in self.latencies if latency > limit)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def burst_channel(i: int) -> str:
    return f"CB{i:04d}"


def burst_endpoint(i: int) -> str:
    return f"{ENDPOINT}-{i % BURST_ENDPOINTS}"


def call_text(call: SlackCall) -> str:
    """What a person reads in a posted message: fallback text and every text in its blocks."""
    return message_text({"text": call.args.get("text"), "blocks": call.args.get("blocks")})


def result_replies(slack: FakeSlack, since: int = 0) -> dict[tuple[str, str], SlackCall]:
    """The first accepted thread reply per parent in the burst's channels (from call `since` on): each result."""
    first: dict[tuple[str, str], SlackCall] = {}
    for call in slack.calls[since:]:
        channel = str(call.args.get("channel") or "")
        if call.method == "chat.postMessage" and call.ok and channel.startswith("CB0"):
            thread = call.args.get("thread_ts")
            if thread:
                first.setdefault((channel, str(thread)), call)
    return first


async def burst(ports: list[int], slack: FakeSlack, runpod: FakeRunPod, n: int, reply_cap: float,
                tag: str) -> Burst:
    """The burst; command i goes to ports[i % len(ports)] (several replicas behind a round-robin balancer)."""
    runpod.latency = BURST_LATENCY
    runpod.max_in_flight = 0
    first_call = len(slack.calls)
    jobs = [f"{tag}-{i:04d}" for i in range(n)]
    for i, job in enumerate(jobs):
        runpod.add_job(burst_endpoint(i), job, status="FAILED", after_retry=("COMPLETED",))
    bodies = [form_encode(slash_command_body(f"{burst_endpoint(i)} {job}", user_id=f"U{i % 7}",
                                             channel_id=burst_channel(i), response_url=slack.new_response_url(),
                                             trigger_id=f"T.{i}"))
              for i, job in enumerate(jobs)]
    targets = [ports[i % len(ports)] for i in range(n)]
    requests = [raw_post(port, "/slack/events", body, sign(body, SIGNING_SECRET))
                for port, body in zip(targets, bodies, strict=True)]

    async def one(port: int, request: bytes) -> tuple[bool, float]:
        ok, sent, acked = await signed_request(port, request)
        return ok, acked - sent

    start = time.monotonic()
    acks = await asyncio.gather(*(one(port, request) for port, request in zip(targets, requests, strict=True)))
    await came_true(lambda: len(result_replies(slack, first_call)) >= n, max(0.0, start + reply_cap - time.monotonic()),
               0.01)
    replies = result_replies(slack, first_call)
    last = max((c.at for c in replies.values()), default=None)
    wanted = set(jobs)
    parents = [c.at for c in slack.calls[first_call:] if c.method == "chat.postMessage" and c.ok
               and str(c.channel).startswith("CB0") and not c.args.get("thread_ts")]
    retries = [c.at for c in runpod.calls if c.op == "retry" and c.job in wanted]
    return Burst(
        latencies=[latency if ok else ACK_CAP for ok, latency in acks],
        lost=sum(1 for ok, _ in acks if not ok),
        answered=len(replies),
        # The vocabulary's word (bot/core/words.py): a job RunPod accepted the retry of "was requeued".
        requeued=sum(1 for c in replies.values() if REQUEUED.search(call_text(c))),
        all_answered=last - start if last is not None and len(replies) >= n else None,
        last_reply=last - start if last is not None else None,
        rejected=sum(1 for c in slack.calls[first_call:] if c.rejected),
        runpod_max_in_flight=runpod.max_in_flight,
        parents_by=max(parents, default=start) - start, retries_by=max(retries, default=start) - start,
    )


@dataclass
class Bulk:
    skipped: str | None = None
    retried: int = 0             # /retry calls RunPod answered for the bulk's jobs
    retried_after: float = 0.0   # command sent -> the last of them answered
    summary_after: float | None = None  # command sent -> the summary reply posted in the bulk's thread
    ack: float = 0.0
    retry_concurrency: int = 0   # most /retry calls in flight at once
    rejected: int = 0            # messages the Slack stand-in refused during the bulk run

    @property
    def ideal(self) -> float:
        return math.ceil(BULK / BULK_CONCURRENCY) * BULK_LATENCY

    @property
    def total(self) -> float:
        """What the user waits for: the summary reply (or, without one, the last RunPod answer)."""
        return self.summary_after if self.summary_after is not None else self.retried_after


async def bulk(port: int, slack: FakeSlack, runpod: FakeRunPod) -> Bulk:
    runpod.latency = BULK_LATENCY
    jobs = [f"bulk-{i:04d}" for i in range(BULK)]
    for job in jobs:
        runpod.add_job(ENDPOINT, job, status="FAILED", after_retry=("COMPLETED",))
    wanted = set(jobs)
    body = form_encode(slash_command_body(f"{ENDPOINT} " + " ".join(jobs), user_id="UBULK", channel_id=CHANNEL,
                                          response_url=slack.new_response_url(), trigger_id="T.bulk"))
    first_call = len(slack.calls)

    def retries() -> list[float]:
        return [c.at for c in runpod.calls if c.op == "retry" and c.job in wanted and c.status is not None]

    def summary() -> SlackCall | None:
        # Burst follows have ended (the app was idle), and bulk follows are quiet: the only thread reply now
        # is the bulk's summary.
        return next((c for c in slack.calls[first_call:]
                     if c.method == "chat.postMessage" and c.ok and c.args.get("thread_ts")
                     and c.args.get("channel") == CHANNEL), None)

    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw_post(port, "/slack/events", body, sign(body, SIGNING_SECRET)))
    await reader.read()  # Connection: close
    ack = time.monotonic() - start
    writer.close()
    ideal = math.ceil(BULK / BULK_CONCURRENCY) * BULK_LATENCY
    await came_true(lambda: len(retries()) >= BULK, ideal * 3 + 10)
    retried_after = time.monotonic() - start
    await came_true(summary, 10.0)
    posted = summary()
    arrivals = sorted(retries())
    # Calls in flight at each arrival: those that arrived less than one RunPod latency earlier.
    window = [bisect.bisect_right(arrivals, t) - bisect.bisect_right(arrivals, t - BULK_LATENCY * 0.999)
              for t in arrivals]
    return Bulk(retried=len(arrivals), retried_after=retried_after,
                summary_after=posted.at - start if posted is not None else None, ack=ack,
                retry_concurrency=max(window, default=0),
                rejected=sum(1 for c in slack.calls[first_call:] if c.rejected))


