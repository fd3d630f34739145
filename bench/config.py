"""The figures the benchmark's sections use: sizes, RunPod's answer times, caps on every wait."""

from __future__ import annotations

import re
from pathlib import Path

from testkit.env import BOT_TOKEN, RUNPOD_KEY, SIGNING_SECRET, WEBHOOK_SECRET

__all__ = ["BOT_TOKEN", "RUNPOD_KEY", "SIGNING_SECRET", "WEBHOOK_SECRET"]

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "bench-ep"
CHANNEL = "CBENCH"             # the bulk run's channel
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
SECTIONS = ("burst", "channel", "bulk", "limits", "replicas", "policies", "breaker", "naive")
REPLICAS = 3               # issue 11: the burst spread over this many replicas on one PostgreSQL

# One busy channel (issue 17, defect 6): many commands into one channel at once, Slack's 1 post a second per channel
# enforced by the stand-in; each command's /retry must reach RunPod at once, not behind the channel's posts.
ONE_CHANNEL = "CONE"
ONE_CHANNEL_COMMANDS = 40
ONE_CHANNEL_ENDPOINTS = 4
ONE_CHANNEL_LATENCY = 0.5  # RunPod's answer time per call
ONE_CHANNEL_CAP = 240.0    # longest wait for every post (parents, results, endings) to reach Slack

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
REQUEUED = re.compile(r"was requeued")
# A bulk summary's headline (bot/core/messages/bulk.py, tally_headline): "30 of 42 jobs requeued · 12 not retried",
# or "All 300 jobs requeued" when nothing was left out.
NOT_RETRIED = re.compile(r"(\d+) not retried")
ALL_REQUEUED = re.compile(r"\bAll \d+ jobs requeued|\b1 job requeued")

# Retry policies at real limits (issue 20). Each scenario is its own app process on SQLite with a policy file it
# writes, RUNPOD_RETRY_TIME_SCALE=1, the Slack stand-in at Slack's limits and the RunPod stand-in at RunPod's.
AUTO_CHANNEL = "CAUTO"
AUTO_ENDPOINTS = 5
AUTO_STORM = 200            # transient failures (a CUDA out-of-memory), 40 per endpoint
AUTO_SPREAD = 1.5           # the webhooks are sent evenly over this many seconds
AUTO_DELAY = 5.0            # the policy's delay
AUTO_LATENCY = 0.5          # RunPod's answer time per call: 40 /retry on an endpoint are two rounds of 20 at once
AUTO_RETRY_CAP = 60.0       # longest wait for every retry to go out
AUTO_DONE_AFTER = 120.0     # how many alerts say their job completed is read this long after the first webhook
                            # (all 200 take Slack's 1 post a second in one channel: about 10 minutes)
FAILING_CHANNEL = "CFLAKY"
FAILING_ENDPOINT = "flaky-ep"
FAILING_JOBS = 40           # on one endpoint, every automatic retry failing again
FAILING_SPREAD = 20.0       # the webhooks are sent evenly over this many seconds (2 a second)
FAILING_DELAY = 2.0
FAILING_ATTEMPTS = 2
FAILING_LATER = 10          # a second wave of failures, sent once the breaker has tripped
FAILING_CAP = 240.0         # longest wait for the breaker's notice and a quiet app
