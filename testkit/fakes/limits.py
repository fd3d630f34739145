"""Rate limits of the stand-ins: what Slack and RunPod allow, and the small machines that enforce it.

`SlackLimits` / `RunPodLimits` are plain, mutable settings: assign a new one (`slack.limits = SlackLimits.off()`)
or change a field (`runpod.limits.window = 0.5`) in a test; the stand-ins read them on every request. The state
(tokens left, requests in the window, requests in flight) lives in `SlackLimiter` / `RunPodLimiter`, keyed by
channel, method, endpoint and operation. Every refusal is recorded as a `RateLimitHit`.

All times are `time.monotonic()` seconds. A stand-in's `time_scale` (`FakeSlack(time_scale=0.1)`) is the app's
`RUNPOD_RETRY_TIME_SCALE` (bot/infra/timing.py): real seconds per platform second, so every limit's period is
multiplied by it and every rate divided by it; a Retry-After is sent in the platform's (scaled) seconds, which the
app at the same scale multiplies back. `SlackLimits.time_scale` does the same for one test's limits, on top of
the stand-in's (1/60: a minute of Slack's limits passes in one real second; 1000: buckets do not refill during a
test); RunPod's window can also simply be set shorter (`RunPodLimits(window=0.5)`).

`SlackLimits()` / `RunPodLimits()` are the real limits. A fake built without `limits=` starts from
`.defaults()`: Slack's real limits, RunPod's off (see the *_RATE_LIMITS_BY_DEFAULT notes below).
"""

from __future__ import annotations

import math
import os
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

RetryAfter = int | Literal["auto", "random"] | None


@dataclass(frozen=True)
class Rate:
    """`limit` requests per `per` seconds, with bursts of up to `burst` requests (default: `limit`)."""

    limit: float
    per: float = 1.0
    burst: float | None = None

    @property
    def per_second(self) -> float:
        return self.limit / self.per

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else self.limit


@dataclass(frozen=True)
class RateLimitHit:
    """One 429 a stand-in answered because of its limits (scripted faults are not recorded here)."""

    method: str  # Slack Web API method, "response_url", or a RunPod op ("retry", "status", ...)
    at: float  # time.monotonic()
    scope: str  # Slack: "channel" | "workspace" | a tier name; RunPod: "window" | "concurrency"
    retry_after: int | None  # the Retry-After header sent, None when none was
    channel: str | None = None  # Slack chat.postMessage
    endpoint: str | None = None  # RunPod
    job: str | None = None  # RunPod


class TokenBucket:
    """Holds up to `rate.capacity` tokens, refilled at `rate.per_second` (times `scale`); one per request."""

    def __init__(self) -> None:
        self.tokens: float | None = None  # None: full, not yet used
        self.last = 0.0

    def wait(self, rate: Rate, now: float, scale: float = 1.0) -> float:
        """Refill; 0.0 if a token is available now, else the real seconds until one is. `scale`: real seconds per
        platform second."""
        per_second = rate.per_second / scale
        if self.tokens is None:
            self.tokens = rate.capacity
        else:
            self.tokens = min(rate.capacity, self.tokens + (now - self.last) * per_second)
        self.last = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / per_second

    def spend(self) -> None:
        assert self.tokens is not None
        self.tokens -= 1


class SlidingWindow:
    """At most `limit` accepted requests in any `window` seconds."""

    def __init__(self) -> None:
        self.hits: deque[float] = deque()

    def wait(self, limit: int, window: float, now: float) -> float:
        while self.hits and self.hits[0] <= now - window:
            self.hits.popleft()
        if len(self.hits) < limit:
            return 0.0
        return self.hits[-limit] + window - now if limit > 0 else window

    def spend(self, now: float, window: float) -> None:
        while self.hits and self.hits[0] <= now - window:
            self.hits.popleft()
        self.hits.append(now)


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most events that fall in any half-open interval of `window` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def retry_after_value(setting: RetryAfter, wait: float, rng: random.Random) -> int | None:
    """The Retry-After header to send: whole seconds (at least 1, as Slack sends), or None for no header."""
    if setting is None:
        return None
    if setting == "random":
        return None if rng.random() < 0.5 else max(1, math.ceil(wait))
    if setting == "auto":
        return max(1, math.ceil(wait))
    return int(setting)


# --------------------------------------------------------------------------------------------------------
# Slack
# --------------------------------------------------------------------------------------------------------

# Per method, per app, per workspace ("Web API rate limits", api.slack.com/apis/rate-limits). Slack publishes
# the per-minute floor ("1+", "20+", "50+", "100+") and tolerates bursts; a minute's worth is the burst here.
SLACK_TIERS: dict[str, Rate] = {
    "tier1": Rate(1, per=60),
    "tier2": Rate(20, per=60),
    "tier3": Rate(50, per=60),
    "tier4": Rate(100, per=60),
}
SLACK_METHOD_TIERS: dict[str, str] = {
    "usergroups.users.list": "tier2",
    "chat.update": "tier3",
    "chat.delete": "tier3",
    "chat.postEphemeral": "tier4",
    "views.open": "tier4",
    "views.update": "tier4",
    "views.push": "tier4",
    "views.publish": "tier4",
    "files.getUploadURLExternal": "tier4",
    "files.completeUploadExternal": "tier4",
    # apps.connections.open is Tier 1 on Slack; left out so reconnect tests are not slowed by it.
    # auth.test is "special" (generous): not limited.
}
# chat.postMessage: "about 1 message per second per channel, short bursts allowed".
SLACK_POST_PER_CHANNEL = Rate(1, per=1, burst=5)


@dataclass
class SlackLimits:
    """What FakeSlack enforces. `SlackLimits()` is Slack's real limits; see `off()` and `defaults()`."""

    rate_limits: bool = True  # master switch for every 429 below
    post_per_channel: Rate | None = SLACK_POST_PER_CHANNEL  # chat.postMessage, one bucket per channel
    post_workspace: Rate | None = None  # chat.postMessage, one bucket for the workspace (Slack: unpublished)
    tiers: dict[str, Rate] = field(default_factory=lambda: dict(SLACK_TIERS))
    method_tiers: dict[str, str] = field(default_factory=lambda: dict(SLACK_METHOD_TIERS))
    response_url_uses: int | None = 5  # accepted posts per response_url; then 404 "used_url"
    response_url_ttl: float | None = 1800.0  # seconds a response_url lives; then 404 "expired_url"
    time_scale: float = 1.0  # real seconds per Slack second (rates, the response_url ttl), times the stand-in's
    retry_after: RetryAfter = "auto"  # "auto": whole seconds until a token; int: fixed; None: no header
    seed: int = 0  # for retry_after="random"

    @classmethod
    def off(cls) -> SlackLimits:
        """No 429s, no response_url cap or expiry."""
        return cls(rate_limits=False, response_url_uses=None, response_url_ttl=None)

    @classmethod
    def real(cls) -> SlackLimits:
        return cls()

    @classmethod
    def defaults(cls) -> SlackLimits:
        """What FakeSlack() starts with (see SLACK_RATE_LIMITS_BY_DEFAULT)."""
        return cls(rate_limits=SLACK_RATE_LIMITS_BY_DEFAULT)


# On by default: Slack's real limits. The whole suite passes with them since the app's paced Slack outbox
# (commit 985415d), and no existing test even reaches a limit. FAKE_SLACK_LIMITS=0 in the environment turns them
# off for a whole run; `slack.limits = SlackLimits.off()` (or `SlackLimits(rate_limits=False)`) for one test.
SLACK_RATE_LIMITS_BY_DEFAULT = os.environ.get("FAKE_SLACK_LIMITS", "1") == "1"


class SlackLimiter:
    """Token buckets per (scope, key). `check` before carrying a call out; `spend` once it succeeded: a call
    Slack refuses (invalid_blocks, channel_not_found, ...) does not use up the limit."""

    def __init__(self, limits: SlackLimits) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self.rng = random.Random(limits.seed)

    def _applicable(self, limits: SlackLimits, method: str, channel: str | None) -> list[tuple[str, TokenBucket, Rate]]:
        if not limits.rate_limits:
            return []
        wanted: list[tuple[tuple[str, str], Rate]] = []
        if method == "chat.postMessage":
            if limits.post_per_channel is not None and channel:
                wanted.append((("channel", channel), limits.post_per_channel))
            if limits.post_workspace is not None:
                wanted.append((("workspace", ""), limits.post_workspace))
        elif (tier := limits.method_tiers.get(method)) and (rate := limits.tiers.get(tier)):
            wanted.append(((tier, method), rate))
        return [(key[0], self._buckets.setdefault(key, TokenBucket()), rate) for key, rate in wanted]

    def check(self, limits: SlackLimits, method: str, channel: str | None, now: float,
              scale: float = 1.0) -> tuple[str, float] | None:
        """None: within the limits. Else (scope, real seconds until the call would be allowed). `scale`: the
        stand-in's time scale."""
        waits = [(scope, bucket.wait(rate, now, limits.time_scale * scale))
                 for scope, bucket, rate in self._applicable(limits, method, channel)]
        refused = [(scope, wait) for scope, wait in waits if wait > 0]
        return max(refused, key=lambda sw: sw[1]) if refused else None

    def spend(self, limits: SlackLimits, method: str, channel: str | None) -> None:
        """Count one carried-out call (right after a `check` that returned None)."""
        for _, bucket, _ in self._applicable(limits, method, channel):
            bucket.spend()


# --------------------------------------------------------------------------------------------------------
# RunPod
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpLimit:
    """Per endpoint, per operation: `requests` per window, `concurrent` in flight (None: unlimited)."""

    requests: int | None
    concurrent: int | None = None


# The documented table (per user, per endpoint, per operation, per 10 s). /retry and /health are not
# documented: assumed as tight as /cancel.
RUNPOD_OP_LIMITS: dict[str, OpLimit] = {
    "run": OpLimit(1000, 200),
    "runsync": OpLimit(2000, 400),
    "status": OpLimit(2000, 400),
    "stream": OpLimit(2000, 400),
    "cancel": OpLimit(100, 20),
    "retry": OpLimit(100, 20),
    "health": OpLimit(100, 20),
    "purge-queue": OpLimit(2, None),
}


@dataclass
class RunPodLimits:
    """What FakeRunPod enforces. `RunPodLimits()` is the documented table over a 10 s sliding window."""

    rate_limits: bool = True
    window: float = 10.0  # RunPod's seconds (times the stand-in's time_scale); shorten for fast tests
    ops: dict[str, OpLimit] = field(default_factory=lambda: dict(RUNPOD_OP_LIMITS))
    retry_after: RetryAfter = None  # not promised by RunPod: no header. "auto" | "random" | int
    seed: int = 0  # for retry_after="random"
    body: dict[str, object] | str | None = None  # the 429 body; None: a JSON {"error": ...} naming the limit

    @classmethod
    def off(cls) -> RunPodLimits:
        return cls(rate_limits=False)

    @classmethod
    def real(cls) -> RunPodLimits:
        return cls()

    @classmethod
    def defaults(cls) -> RunPodLimits:
        """What FakeRunPod() starts with (see RUNPOD_RATE_LIMITS_BY_DEFAULT)."""
        return cls(rate_limits=RUNPOD_RATE_LIMITS_BY_DEFAULT)


# Off by default: with the documented limits on, one test fails,
# test_bulk.py::test_three_hundred_jobs_progress_is_paced_and_the_json_results_come_as_a_file. Before the app's
# RunPod limiter (183bb2b) it sent ~300 /retry in a second (~320 answered 429) and did not settle in 20 s; since,
# it paces /retry (the test takes ~30 s) but two retries at window edges still get 429 and are retried last, so
# the test's job-order assertion fails. Turn the limits on per test with `runpod.limits = RunPodLimits(...)`, or
# for a whole run with FAKE_RUNPOD_LIMITS=1.
RUNPOD_RATE_LIMITS_BY_DEFAULT = os.environ.get("FAKE_RUNPOD_LIMITS", "0") == "1"


class RunPodLimiter:
    """A sliding window and an in-flight count per (endpoint, op)."""

    def __init__(self, limits: RunPodLimits) -> None:
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self.in_flight: dict[tuple[str, str], int] = {}
        self.peak_in_flight: dict[tuple[str, str], int] = {}  # accepted requests only
        self.rng = random.Random(limits.seed)

    def admit(self, limits: RunPodLimits, endpoint: str, op: str, now: float,
              scale: float = 1.0) -> tuple[str, float] | None:
        """None: admitted (counted in the window and in flight until `release`). Else (scope, real seconds).
        `scale`: the stand-in's time scale (the window is `limits.window * scale` real seconds)."""
        key = (endpoint, op)
        limit = limits.ops.get(op) if limits.rate_limits else None
        window = self._windows.setdefault(key, SlidingWindow())
        width = limits.window * scale
        if limit is not None:
            if limit.concurrent is not None and self.in_flight.get(key, 0) >= limit.concurrent:
                return "concurrency", 1.0 * scale
            if limit.requests is not None and (wait := window.wait(limit.requests, width, now)) > 0:
                return "window", wait
        window.spend(now, width)
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), self.in_flight[key])
        return None

    def release(self, endpoint: str, op: str) -> None:
        self.in_flight[(endpoint, op)] -= 1


__all__ = [
    "RUNPOD_OP_LIMITS", "SLACK_METHOD_TIERS", "SLACK_POST_PER_CHANNEL", "SLACK_TIERS", "OpLimit", "Rate",
    "RateLimitHit", "RunPodLimiter", "RunPodLimits", "SlackLimiter", "SlackLimits", "SlidingWindow",
    "TokenBucket", "max_in_window",
]
