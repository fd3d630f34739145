"""Benchmark: the app against loopback stand-ins for Slack and RunPod, beside the obvious implementation.

Run from the repository root: `python bench/run.py` (about 3 minutes; `--skip-naive` leaves out the slow
baseline; `--only SECTION` runs one of burst, bulk, limits, replicas, naive and writes nothing). Prints Markdown
tables and writes them to bench/RESULTS.md and between the `<!-- bench:start -->` / `<!-- bench:end -->` markers
in README.md.

Set-up, so the numbers mean what they say:
- The app runs as its own process (`python -m bot`, HTTP mode, exactly as deployed), so its event loop does not
  share a CPU slice with the load generator. The stand-ins (tests/fakes: FakeSlack, FakeRunPod) and the load
  generator run together in this process.
- Ack latency is measured by the load generator: from sending a signed slash command on a fresh connection to
  reading the whole answer. It includes connection set-up and this process's own scheduling, so it is an upper
  bound on what the app adds.
- "All results posted" is measured at the Slack stand-in: arrival of the last of the result replies (the first
  reply in each command's thread; parents do not count) minus the moment the burst started.
- Real limits (issue 10): a separate app process, with the Slack stand-in at Slack's limits and the RunPod stand-in
  at RunPod's documented ones; a 150-failure storm into one alert channel, then a 300-job bulk retry, each timed
  beside the floor the limits allow.
- Replicas (issue 11): the same burst once into one process on SQLite, then spread round-robin over 3 processes
  on one PostgreSQL (the embedded server the tests use).
- The baseline (bench/naive_app.py) gets the same burst, the same stand-ins and the same measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.fakes import FakeRunPod, FakeSlack, SlackCall  # noqa: E402
from testkit.fakes.limits import SLACK_POST_PER_CHANNEL, RunPodLimits, SlackLimits  # noqa: E402
from testkit.fakes.slack import form_encode, sign, slash_command_body  # noqa: E402
from testkit.harness import message_text  # noqa: E402

BOT_TOKEN = "xoxb-bench-bot-token"
RUNPOD_KEY = "rp-bench-key"
SIGNING_SECRET = "bench-signing-secret-0123456789"
ENDPOINT = "bench-ep"
CHANNEL = "CBENCH"             # the bulk run's channel
WEBHOOK_SECRET = "bench-webhook-secret-abcdef"
ALERT_CHANNEL = "CALERTS"

BURST = 200
# Both stand-ins enforce real limits, and the app paces itself by them: Slack about 1 post per second per channel,
# RunPod /retry 100 per 10 s and 20 at once per endpoint. Into one channel and one endpoint, 200 commands would
# measure those limits (~200 s of Slack posts, ~20 s of /retry), not the app. A big team's burst is spread:
# one channel per command, and the jobs over BURST_ENDPOINTS endpoints (20 each: within RunPod's 20 at once).
BURST_ENDPOINTS = 10
BURST_RUNS = 3             # the app gets the burst this many times (the baseline once: it takes minutes)
BURST_LATENCY = 2.0
BULK = 100                 # one window of the app's /retry limiter (100 per 10 s per endpoint), so this measures
BULK_LATENCY = 0.2         # the app's concurrency, not RunPod's limit (the real-limits section does that)
BULK_CONCURRENCY = 8       # the app's default RUNPOD_BULK_CONCURRENCY
ACK_LIMIT = 3.0            # Slack shows the user an error when an ack takes longer than this
ACK_CAP = 10.0             # the load generator gives up on an ack after this long (counted as lost)
REPLY_CAP = 60.0           # longest wait for the burst's thread replies
NAIVE_REPLY_CAP = 100.0    # the baseline is slow; its wait is bounded too
READY_CAP = 30.0
RESULTS = ROOT / "bench" / "RESULTS.md"
README = ROOT / "README.md"
SECTIONS = ("burst", "bulk", "limits", "replicas", "naive")
REPLICAS = 3               # issue 11: the burst spread over this many replicas on one PostgreSQL

# Real limits (issue 10, point 4)
STORM_ENDPOINTS = ("storm-a", "storm-b", "storm-c")
STORM_PER_ENDPOINT = 50
STORM_SPREAD = 2.0         # the 150 webhooks are sent evenly over this many seconds
STORM_CAP = 120.0          # longest wait for every failed job to be visible
LIMITS_BULK = 300
LIMITS_BULK_ENDPOINT = "bulk-ep"
LIMITS_BULK_CHANNEL = "CBULK"
LIMITS_BULK_CONCURRENCY = 20
LIMITS_BULK_LATENCY = 0.1  # RunPod's answer time per /retry
LIMITS_BULK_CAP = 90.0
QUIET = 3.0                # "settled": no Slack call for this long

PORT_LINE = re.compile(r"listening on port (\d+)")
REQUEUED = re.compile(r"is back in the queue|is running again")
NOT_RETRIED = re.compile(r"(\d+) (?:was|were) not retried")


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    spawned: float
    port: int = 0
    ready_after: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def stop(self, timeout: float = 15.0) -> float:  # noqa: ASYNC109
        """SIGTERM, then wait; returns seconds to exit (kills after `timeout`)."""
        if self.process.returncode is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        return time.monotonic() - started


async def spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        spawned = time.monotonic()
        process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=workdir, stdout=out,
                                                       stderr=subprocess.STDOUT)
    return Proc(name, process, log, spawned)


async def wait_ready(proc: Proc, http: aiohttp.ClientSession, *, need_200: bool) -> None:
    """Port from the log line, then the first answer on /healthz (200 for the app; any answer for the baseline,
    whose development server has no health route)."""
    deadline = proc.spawned + READY_CAP
    while not proc.port:
        if proc.process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.log_tail()}")
        match = PORT_LINE.search(proc.log.read_text(errors="replace"))
        if match:
            proc.port = int(match.group(1))
        else:
            await asyncio.sleep(0.005)
    while True:
        try:
            async with http.get(f"{proc.url}/healthz") as response:
                await response.read()
                if response.status == 200 or not need_200:
                    proc.ready_after = time.monotonic() - proc.spawned
                    return
        except aiohttp.ClientError:
            pass
        if proc.process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} never became ready:\n{proc.log_tail()}")
        await asyncio.sleep(0.005)


def base_env(slack: FakeSlack, runpod: FakeRunPod, workdir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "RUNPOD_API_KEY": RUNPOD_KEY,
        "SLACK_API_URL": slack.api_url,
        "RUNPOD_API_URL": runpod.url,
        "PORT": "0",
    }


async def idle(proc: Proc, http: aiohttp.ClientSession, timeout: float = 20.0) -> bool:  # noqa: ASYNC109
    """Wait until the app reports no background work (follows included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"{proc.url}/healthz") as response:
            if (await response.json()).get("in_flight") == 0:
                return True
        await asyncio.sleep(0.1)
    return False


async def poll(predicate: Callable[[], Any], timeout: float, step: float = 0.005) -> bool:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


# ---------------------------------------------------------------- scenarios


def raw_post(port: int, path: str, body: str, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 request, one per connection, as Slack sends them."""
    data = body.encode()
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", f"Content-Length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@dataclass
class Burst:
    latencies: list[float]  # per command; ACK_CAP for acks that never came
    lost: int               # no 200 within ACK_CAP
    answered: int           # threads with a result reply
    requeued: int           # result replies saying the job is back in the queue
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
        # Raw streams, not an HTTP client library: a client's own per-request overhead, paid 200 times on this
        # process's single event loop, would be counted as the app's latency.
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(ACK_CAP):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                latency = time.perf_counter() - sent
                writer.close()
            return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), latency
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False, ACK_CAP

    start = time.monotonic()
    acks = await asyncio.gather(*(one(port, request) for port, request in zip(targets, requests, strict=True)))
    await poll(lambda: len(result_replies(slack, first_call)) >= n, max(0.0, start + reply_cap - time.monotonic()),
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
        # Issue 14's words: a requeued job "is back in the queue" (or "is running again" if RunPod is quick).
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
    await poll(lambda: len(retries()) >= BULK, ideal * 3 + 10)
    retried_after = time.monotonic() - start
    await poll(summary, 10.0)
    posted = summary()
    arrivals = sorted(retries())
    # Calls in flight at each arrival: those that arrived less than one RunPod latency earlier.
    window = [bisect.bisect_right(arrivals, t) - bisect.bisect_right(arrivals, t - BULK_LATENCY * 0.999)
              for t in arrivals]
    return Bulk(retried=len(arrivals), retried_after=retried_after,
                summary_after=posted.at - start if posted is not None else None, ack=ack,
                retry_concurrency=max(window, default=0),
                rejected=sum(1 for c in slack.calls[first_call:] if c.rejected))


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
    await poll(lambda: len({c.job for c in requeued_calls()}) >= LIMITS_BULK and summary() is not None,
               LIMITS_BULK_CAP, 0.02)
    done = requeued_calls()
    counts = {job: sum(1 for c in done if c.job == job) for job in {c.job for c in done}}
    if len(counts) >= LIMITS_BULK:
        result.requeued_after = max(c.at for c in done) - start
    posted = summary()
    if posted is not None:
        result.summary_after = posted.at - start
        text = call_text(posted)
        match = NOT_RETRIED.search(text)
        result.not_retried = int(match.group(1)) if match else None
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


@dataclass
class Limits:
    storm: Storm
    bulk: LimitsBulk


async def run_limits(workdir: Path) -> Limits:
    """One app process; Slack's and RunPod's real limits enforced by the stand-ins."""
    async with (FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits()) as slack,
                FakeRunPod(default_key=RUNPOD_KEY, limits=RunPodLimits()) as runpod):
        env = base_env(slack, runpod, workdir) | {
            "RUNPOD_RETRY_DB": str(workdir / "limits.db"), "LOG_FORMAT": "json",
            "RUNPOD_WEBHOOK_SECRET": WEBHOOK_SECRET, "RUNPOD_ALERT_CHANNEL": ALERT_CHANNEL,
            "RUNPOD_BULK_CONCURRENCY": str(LIMITS_BULK_CONCURRENCY),
        }
        proc = await spawn("limits", [sys.executable, "-m", "bot"], env, workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                print(f"  real limits: storm of {len(STORM_ENDPOINTS) * STORM_PER_ENDPOINT} failures…",
                      file=sys.stderr)
                storm_result = await storm(proc.port, slack, runpod, http)
                print(f"  real limits: {LIMITS_BULK}-job bulk retry…", file=sys.stderr)
                bulk_result = await limits_bulk(proc.port, slack, runpod)
            await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return Limits(storm_result, bulk_result)


# ---------------------------------------------------------------- several replicas (issue 11)


@dataclass
class Setup:
    name: str
    burst: Burst
    requeued_once: int   # jobs of the burst RunPod requeued exactly once
    requeued_more: int   # ... more than once (must be 0)
    ready: float         # slowest replica: start -> ready


async def run_setup(workdir: Path, name: str, db: str, replicas: int) -> Setup:
    """`replicas` app processes on one database; the burst spread over them round-robin."""
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        env = base_env(slack, runpod, workdir) | {"RUNPOD_RETRY_DB": db, "LOG_FORMAT": "json"}
        procs = [await spawn(f"{name}-{i}", [sys.executable, "-m", "bot"], env, workdir) for i in range(replicas)]
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(*(wait_ready(proc, http, need_200=True) for proc in procs))
                await asyncio.sleep(1.0)
                print(f"  {name}: {replicas} ready; burst…", file=sys.stderr)
                result = await burst([proc.port for proc in procs], slack, runpod, BURST, REPLY_CAP, name)
                runpod.latency = 0.0
                for proc in procs:
                    await idle(proc, http)
            await asyncio.gather(*(proc.stop() for proc in procs))
        finally:
            for proc in procs:
                if proc.process.returncode is None:
                    proc.process.kill()
                    await proc.process.wait()
        counts = runpod.requeued()
        mine = [n for (_, job), n in counts.items() if job.startswith(name)]
    return Setup(name, result, sum(1 for n in mine if n == 1), sum(1 for n in mine if n > 1),
                 max(proc.ready_after for proc in procs))


async def run_replicas(workdir: Path) -> list[Setup]:
    """One replica on SQLite, then REPLICAS on one PostgreSQL (the embedded server the tests use)."""
    from testkit.pg import PostgresServer

    setups = [await run_setup(workdir, "sqlite", str(workdir / "one.db"), 1)]
    with PostgresServer() as server:
        setups.append(await run_setup(workdir, "postgres", server.create_database("bench"), REPLICAS))
    return setups


# ---------------------------------------------------------------- the two implementations


@dataclass
class Row:
    name: str
    runs: list[Burst]
    ready: float
    idle_rss: float
    peak_rss: float
    stop: float | None
    bulk: Bulk | None = None

    @property
    def burst(self) -> Burst | None:
        return Burst.combined(self.runs) if self.runs else None


async def run_app(workdir: Path, sections: set[str]) -> Row:
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        env = base_env(slack, runpod, workdir) | {"RUNPOD_RETRY_DB": str(workdir / "bench.db"), "LOG_FORMAT": "json"}
        proc = await spawn("app", [sys.executable, "-m", "bot"], env, workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                await asyncio.sleep(1.0)
                idle_rss = proc.rss_mb()
                print(f"  app ready in {proc.ready_after:.2f} s, idle RSS {idle_rss:.1f} MB; burst…", file=sys.stderr)
                runs = []
                for run in range(BURST_RUNS if "burst" in sections else 0):
                    runs.append(await burst([proc.port], slack, runpod, BURST, REPLY_CAP, f"burst{run}"))
                    runpod.latency = 0.0  # let the follows finish quickly; they are not measured
                    await idle(proc, http)
                bulk_result = None
                if "bulk" in sections:
                    print("  bulk…", file=sys.stderr)
                    bulk_result = await bulk(proc.port, slack, runpod)
                    runpod.latency = 0.0
                    await idle(proc, http)
                peak = proc.rss_mb("VmHWM")
            stopped = await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return Row("runpod-retry (`python -m bot`: aiohttp + Bolt AsyncApp)", runs, proc.ready_after, idle_rss, peak,
               stopped, bulk_result)


async def run_naive(workdir: Path) -> Row:
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        proc = await spawn("naive", [sys.executable, str(ROOT / "bench" / "naive_app.py")],
                           base_env(slack, runpod, workdir), workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=False)
            await asyncio.sleep(1.0)
            idle_rss = proc.rss_mb()
            print(f"  baseline ready in {proc.ready_after:.2f} s; burst (slow, bounded at {NAIVE_REPLY_CAP:.0f} s)…",
                  file=sys.stderr)
            result = await burst([proc.port], slack, runpod, BURST, NAIVE_REPLY_CAP, "naive")
            peak = proc.rss_mb("VmHWM")
        finally:
            proc.process.kill()  # the development server has no graceful shutdown worth measuring
            await proc.process.wait()
    return Row("naive: Bolt sync `App` + `app.start()` dev server", [result], proc.ready_after, idle_rss, peak, None)


# ---------------------------------------------------------------- the report


def ms(seconds: float) -> str:
    if seconds >= ACK_CAP:
        return f"≥ {ACK_CAP:.0f} s (lost)"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def replies_cell(b: Burst, cap: float) -> str:
    if b.all_answered is not None:
        return f"{b.all_answered:.2f} s"
    return f"not all within {cap:.0f} s ({b.answered}/{BURST} answered)"


def check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(rows: list[Row], limits: Limits | None, elapsed: float, sections: set[str],
           setups: list[Setup] | None = None) -> str:
    """The whole Markdown report; `###` headings (the README demotes them one level)."""
    lines = [
        "# Benchmark results",
        "",
        f"`python bench/run.py` on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"whole run {elapsed:.0f} s. The machine is shared (2 cores, other engineers' test runs): figures move by a "
        "few tenths of a second from run to run, more under load.",
        "",
    ]
    app = rows[0] if rows else None
    if app is not None and app.runs:
        lines += burst_section(rows)
    if app is not None and "bulk" in sections:
        lines += bulk_section(app)
    if limits is not None:
        lines += limits_section(limits)
    if setups:
        lines += replicas_section(setups)
    if app is not None:
        lines += goals_section(app)
        lines += details_section(rows)
    lines += [
        "How it is measured: the app runs as its own process (`python -m bot`, HTTP mode, JSON logs) so its event "
        "loop never shares a time slice with the load generator; the Slack and RunPod stand-ins (tests/fakes) and "
        "the load generator share the benchmark process. The Slack stand-in enforces Slack's real limits in every "
        "section (chat.postMessage about 1 per second per channel with a burst of 5, chat.update Tier 3, "
        "ephemeral and views Tier 4); the RunPod stand-in enforces RunPod's only in the real-limits section, but "
        "the app paces itself by RunPod's documented limits everywhere (its own limiter, per endpoint). Ack "
        "latency is timed by the load generator from sending a signed command on a fresh connection to reading "
        "the whole answer, so it includes connection set-up and the generator's own scheduling. Reply times are "
        "arrival times at the Slack stand-in, from the moment the load started. The baseline (bench/naive_app.py) "
        "is Bolt's sync `App` on its built-in development server, acking then calling RunPod with httpx and "
        "posting with the sync `WebClient`; it gets the same burst and stand-ins. Everything is on 127.0.0.1.",
        "",
        "Reproduce from the repository root: `. .venv/bin/activate && python bench/run.py` (about 3 minutes; "
        "`--skip-naive` leaves out the baseline, about 1.5 minutes; `--only limits` (or burst, bulk, replicas, "
        "naive) runs one section and prints it without writing files). The tables are written to bench/RESULTS.md and "
        "between the bench markers in README.md.",
    ]
    return "\n".join(lines) + "\n"


def burst_section(rows: list[Row]) -> list[str]:
    app = rows[0]
    lines = [
        f"### Burst: {BURST} simultaneous signed `/runpod-retry` commands, RunPod answering each call in "
        f"{BURST_LATENCY:.0f} s",
        "",
        f"One channel per command (as a big team's burst looks: into one channel, Slack's ~1 post per second would "
        f"make the last reply wait minutes, by Slack's limit, not the app's), and the jobs spread over "
        f"{BURST_ENDPOINTS} endpoints, {BURST // BURST_ENDPOINTS} each (RunPod allows 20 /retry at once per "
        f"endpoint, and the app keeps to it: on one endpoint the 200 results would take at least 20 s). "
        f"The app gets the burst {BURST_RUNS} times in a row (the baseline once; it takes minutes): ack figures "
        f"cover all {BURST_RUNS * BURST} acks, the reply time is the slowest run's.",
        "",
        "| implementation | ack p50 | ack p99 | ack max | acks over 3 s | all 200 result replies posted | "
        "idle RSS | start → ready |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        b = row.burst
        if b is None:
            continue
        lost = f" ({b.lost} never acked within {ACK_CAP:.0f} s)" if b.lost else ""
        cap = REPLY_CAP if row is app else NAIVE_REPLY_CAP
        lines.append(f"| {row.name} | {ms(statistics.median(b.latencies))} | {ms(b.pct(0.99))} | "
                     f"{ms(max(b.latencies))} | {b.over(ACK_LIMIT)}{lost} | {replies_cell(b, cap)} | "
                     f"{row.idle_rss:.0f} MB | {row.ready:.2f} s |")
    return [*lines, ""]


def bulk_section(app: Row) -> list[str]:
    lines = [f"### Bulk: one `/runpod-retry` command with {BULK} jobs, RunPod at {BULK_LATENCY} s per call", "",
             f"{BULK} jobs: one window of RunPod's `/retry` limit (100 per 10 s), which the app keeps to, so this "
             "measures the app's own concurrency; the real-limits section below has 300 jobs against the limit.", ""]
    bk = app.bulk
    if bk is None:
        return [*lines, "Not run.", ""]
    ratio = bk.total / bk.ideal
    summary = f"{bk.summary_after:.2f} s" if bk.summary_after is not None else "not posted within 10 s"
    return [
        *lines,
        "| implementation | concurrency | ack | last /retry answered | summary reply posted | jobs/s | "
        f"ideal ({BULK} / concurrency × {BULK_LATENCY} s) | × ideal | /retry calls in flight (max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {app.name} | {BULK_CONCURRENCY} | {ms(bk.ack)} | {bk.retried_after:.2f} s ({bk.retried}/{BULK}) | "
        f"{summary} | {bk.retried / bk.total:.1f} | {bk.ideal:.2f} s | {ratio:.2f} | {bk.retry_concurrency} |",
        "",
        f"The baseline has no bulk retry. Slack messages refused during the bulk run: {bk.rejected}.",
        "",
    ]


def limits_section(lim: Limits) -> list[str]:
    st, bk = lim.storm, lim.bulk
    per = SLACK_POST_PER_CHANNEL
    window = RunPodLimits().window
    retry = RunPodLimits().ops["retry"]
    visible = f"{st.visible_after:.1f} s" if st.visible_after is not None else \
        f"not within {STORM_CAP:.0f} s ({st.visible}/{st.failures} visible)"
    storm_ratio = f"{st.visible_after / st.floor:.2f}" if st.visible_after is not None and st.floor > 0 else "–"
    total = f"{bk.total:.1f} s" if bk.total is not None else f"not within {LIMITS_BULK_CAP:.0f} s"
    bulk_ratio = bk.total / bk.floor if bk.total is not None else None
    requeued = f"{bk.requeued_after:.1f} s" if bk.requeued_after is not None else f"{bk.requeued}/{bk.jobs}"
    summary = f"{bk.summary_after:.1f} s" if bk.summary_after is not None else "not posted"
    not_retried = "summary not posted" if bk.summary_after is None else \
        ("not stated" if bk.not_retried is None else str(bk.not_retried))
    goal_storm_time = st.visible_after is not None and st.visible_after <= 30.0
    goal_bulk = bulk_ratio is not None and bulk_ratio <= 1.3
    return [
        "### Real limits: one app process, both stand-ins enforcing the platforms' limits",
        "",
        f"Slack: chat.postMessage {per.per_second:g} per second per channel with a burst of {per.capacity:g}, "
        f"chat.update Tier 3 (50 per minute), ephemeral and views Tier 4. RunPod: `/retry` {retry.requests} per "
        f"{window:g} s and {retry.concurrent} at once per endpoint, 429s without Retry-After. The app runs with "
        f"its defaults and RUNPOD_BULK_CONCURRENCY={LIMITS_BULK_CONCURRENCY}.",
        "",
        f"**Storm:** {st.failures} failure webhooks on {len(STORM_ENDPOINTS)} endpoints, sent evenly over "
        f"{STORM_SPREAD:g} s, into one alert channel. Floor: the chat.postMessage calls the app needed in that "
        f"channel until every job was visible, less Slack's burst of {per.capacity:g}, at 1 per second.",
        "",
        "| webhooks answered 200 | every failed job's ID visible in Slack | floor (posts needed) | × floor | "
        "429s from Slack (chat.postMessage in the channel) | messages dropped | top-level messages / posts / "
        "updates |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {st.webhooks_ok}/{st.failures} in {st.webhooks_sent_in:.1f} s | {visible} | {st.floor:.0f} s "
        f"({st.posts_needed} posts) | {storm_ratio} | {st.slack_429} ({st.slack_429_post}) | {st.dropped} "
        f"({st.failures - st.visible} jobs not visible, {st.refused} calls refused) | {st.top_level} / "
        f"{st.posts_total} / {st.updates} |",
        "",
        f"**Bulk:** one `/runpod-retry` with {bk.jobs} jobs on one endpoint, RunPod answering each `/retry` in "
        f"{LIMITS_BULK_LATENCY:g} s. Floor: 100 at once, then 100 more every {window:g} s, the last hundred "
        f"{retry.concurrent} at a time.",
        "",
        "| all requeued | summary posted | done (the later) | floor | × floor | 429s from RunPod | "
        "requeued exactly once | reported not retried | /retry in any 10 s (max) / in flight (max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {requeued} | {summary} | {total} | {bk.floor:.1f} s | "
        f"{f'{bulk_ratio:.2f}' if bulk_ratio is not None else '–'} | {bk.runpod_429} | "
        f"{bk.requeued_once}/{bk.jobs} | {not_retried} | {bk.peak_window} / {bk.peak_in_flight} |",
        "",
        "Goals (issue 10):",
        "",
        f"- storm: every failed job visible within 30 s: {visible} — {check(goal_storm_time)}",
        f"- storm: zero messages dropped: {st.dropped} — {check(st.dropped == 0)}",
        f"- bulk: all {bk.jobs} requeued, each exactly once: {bk.requeued_once}/{bk.jobs} — "
        f"{check(bk.requeued_once == bk.jobs and bk.requeued == bk.jobs)}",
        f"- bulk: within 1.3 × floor: {f'{bulk_ratio:.2f} ×' if bulk_ratio is not None else total} — "
        f"{check(goal_bulk)}",
        f"- bulk: none reported not retried (nor rate limited): {not_retried}"
        f"{', the summary mentions rate limiting' if bk.rate_limited_words else ''} — "
        f"{check(bk.not_retried == 0 and not bk.rate_limited_words)}",
        "",
        f"Also seen: {st.runpod_429} RunPod 429s during the storm; during the bulk run, {bk.slack_429} Slack 429s "
        f"and {bk.refused} Slack calls refused.",
        "",
    ]


def replicas_section(setups: list[Setup]) -> list[str]:
    lines = [
        f"### Replicas: the same {BURST}-command burst, one replica on SQLite beside {REPLICAS} on PostgreSQL",
        "",
        f"As in the burst section (one channel per command, {BURST_ENDPOINTS} endpoints, RunPod answering in "
        f"{BURST_LATENCY:.0f} s), once each. With several replicas, command i goes to replica i mod "
        f"{REPLICAS}, as a round-robin load balancer sends them; every replica claims each job in the shared "
        "database before calling RunPod, and stores every Slack message in the shared outbox before sending it. "
        "PostgreSQL is the embedded server the tests use (fsync off, on the same 2 cores as everything else).",
        "",
        "| setup | ack p50 | ack p99 | ack max | acks over 3 s | all result replies posted | "
        "jobs requeued once / more than once | slowest start → ready |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setup in setups:
        b = setup.burst
        label = "1 replica, SQLite" if setup.name == "sqlite" else f"{REPLICAS} replicas, PostgreSQL"
        lines.append(f"| {label} | {ms(statistics.median(b.latencies))} | {ms(b.pct(0.99))} | "
                     f"{ms(max(b.latencies))} | {b.over(ACK_LIMIT)} | {replies_cell(b, REPLY_CAP)} | "
                     f"{setup.requeued_once}/{BURST} / {setup.requeued_more} | {setup.ready:.2f} s |")
    return [*lines, ""]


def goals_section(app: Row) -> list[str]:
    b, bk = app.burst, app.bulk
    lines = ["### Goals (burst and bulk)", ""]
    if b is not None:
        goal_replies = 1.5 * BURST_LATENCY
        lines += [
            f"- zero acks over 3 s: {b.over(ACK_LIMIT)} — {check(b.over(ACK_LIMIT) == 0)}",
            f"- p99 ack under 300 ms: {ms(b.pct(0.99))} — {check(b.pct(0.99) < 0.3)}",
            f"- all {BURST} answered within 1.5 × {BURST_LATENCY:.0f} s = {goal_replies:.1f} s: "
            f"{replies_cell(b, REPLY_CAP)} — {check(b.all_answered is not None and b.all_answered <= goal_replies)}",
            f"- every result says the job is back in the queue: {b.requeued}/{BURST} — {check(b.requeued == BURST)}",
        ]
    if bk is not None:
        lines.append(f"- {BULK} bulk jobs within 1.3 × ideal: {bk.total / bk.ideal:.2f} × — "
                     f"{check(bk.total <= 1.3 * bk.ideal)}")
    return [*lines, ""]


def details_section(rows: list[Row]) -> list[str]:
    app = rows[0]
    lines = ["### Details", ""]
    for row in rows:
        b = row.burst
        stop = f"; SIGTERM → exit {row.stop:.2f} s" if row.stop is not None else ""
        if b is None:
            lines.append(f"- {row.name}: peak RSS {row.peak_rss:.0f} MB{stop}.")
            continue
        each = ", ".join(replies_cell(r, REPLY_CAP if row is app else NAIVE_REPLY_CAP) for r in row.runs)
        lines.append(f"- {row.name}: all results posted per run: {each}; "
                     f"{b.requeued}/{BURST} result replies say the job is back in the queue; "
                     f"{b.rejected} messages refused by the Slack stand-in; at most {b.runpod_max_in_flight} RunPod "
                     f"calls in flight; the last command's message posted {b.parents_by:.2f} s and its /retry at "
                     f"RunPod {b.retries_by:.2f} s after the burst began (slowest run); peak RSS "
                     f"{row.peak_rss:.0f} MB{stop}.")
    if len(rows) > 1:
        lines += [
            "",
            "Why the baseline falls over: Bolt's development server is one `http.server.HTTPServer` thread with a "
            "listen backlog of 5, and Bolt's sync runner holds that thread polling for `ack()` (up to 3 s) while "
            "its 5-thread listener pool is busy with 2 s RunPod calls. Commands queue behind each other, most "
            "connections are not even accepted in time, and every job is retried at most 5 at a time. The app "
            "acks on the event loop before any I/O and runs the work as tasks over pooled connections.",
        ]
    return [*lines, ""]


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def write_readme(text: str) -> bool:
    """The report between the README's bench markers, headings one level down, the title line dropped."""
    readme = README.read_text()
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        print("README.md has no bench markers; not updated", file=sys.stderr)
        return False
    body = text.split("\n", 2)[2]  # without "# Benchmark results" and its blank line
    body = re.sub(r"(?m)^### ", "#### ", body)
    block = (f"{README_START}\nMeasured with `bench/run.py` (below, the machine and date). The script starts the "
             "Slack and RunPod stand-ins and the real app (`python -m bot`, HTTP mode) and drives them over "
             "loopback, beside the obvious implementation: Bolt's sync `App` on its built-in server, calling RunPod "
             "after `ack()` (`bench/naive_app.py`). The tables are also in [`bench/RESULTS.md`](bench/RESULTS.md)."
             f"\n\n{body.rstrip()}\n{README_END}")
    README.write_text(readme[:start] + block + readme[end + len(README_END):])
    return True


async def main(sections: set[str], write: bool) -> int:
    started = time.monotonic()
    print(f"runpod-retry benchmark: {', '.join(s for s in SECTIONS if s in sections)}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="runpod-retry-bench-") as tmp:
        workdir = Path(tmp)
        rows: list[Row] = []
        limits = None
        if sections & {"burst", "bulk"}:
            rows.append(await run_app(workdir, sections))
        if "limits" in sections:
            limits = await run_limits(workdir)
        setups = await run_replicas(workdir) if "replicas" in sections else None
        if "naive" in sections:
            if not rows:
                print("  (the baseline is shown beside the app's burst: add `burst`)", file=sys.stderr)
            else:
                rows.append(await run_naive(workdir))
    text = report(rows, limits, time.monotonic() - started, sections, setups)
    print(text)
    if write:
        RESULTS.write_text(text)
        write_readme(text)
        print(f"(written to {RESULTS.relative_to(ROOT)} and {README.relative_to(ROOT)})", file=sys.stderr)
    else:
        print("(one section only: nothing written; the files keep the last full run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow baseline")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section ({', '.join(SECTIONS)}); may be given more than once. "
                             "Prints the report but does not write RESULTS.md or README.md")
    args = parser.parse_args()
    chosen = set(args.only or SECTIONS)
    if args.skip_naive:
        chosen.discard("naive")
    sys.exit(asyncio.run(main(chosen, write=not args.only)))
