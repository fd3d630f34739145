"""Pacing calls to a platform that limits us: a token bucket for Slack's per-second limits, and a sliding window for
RunPod's per-10-seconds ones. Both pause for a 429's Retry-After; the window also shrinks on a 429 and grows back
with each success (additive increase, multiplicative decrease).

aiolimiter's leaky bucket paces well but can neither pause for a Retry-After nor change its rate in flight; both
are the point here, so this is the few lines it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable


class Bucket:
    """At most `rate` calls a second on average, `burst` at once after a quiet spell."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Callable[[], float] | None = None):
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock or asyncio.get_running_loop().time
        self._tokens = self.burst
        self._stamp = self._clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()  # callers are served in arrival order

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until a call may go, without taking a token."""
        now = self._clock()
        self._refill(now)
        wait = max(0.0, self._paused_until - now)
        if self._tokens < 1.0:
            wait = max(wait, (1.0 - self._tokens) / self.rate)
        return wait

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self.delay()) > 0:  # noqa: ASYNC110 - the wait is computed; no event to await
                await asyncio.sleep(wait)
            self._tokens -= 1.0

    def pause(self, seconds: float) -> None:
        """The platform said stop (a 429): nothing goes for `seconds`, and the burst is spent."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._stamp = max(now, self._stamp)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


class Window:
    """At most `limit` calls in any `window` seconds and `concurrent` at once: RunPod's documented shape.

    The client counts the way the server does, so it can use the whole allowance without meeting a 429. When a 429
    comes anyway (the real limit is lower, or another client shares it), the allowance halves and the window pauses;
    each success gives one back, up to `limit`.
    """

    def __init__(self, limit: int, window: float, concurrent: int, *, clock: Callable[[], float] | None = None):
        self.limit = limit
        self.allowance = limit
        self.window = window
        self._clock = clock or asyncio.get_running_loop().time
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._slots = asyncio.Semaphore(concurrent)
        self._turn = asyncio.Lock()  # callers are served in arrival order

    @property
    def rate(self) -> float:
        """The allowance as calls per second (for metrics)."""
        return self.allowance / self.window

    def _wait(self) -> float:
        now = self._clock()
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        wait = self._paused_until - now
        if len(self._sent) >= self.allowance:
            wait = max(wait, self._sent[len(self._sent) - self.allowance] + self.window - now)
        return max(0.0, wait)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            async with self._turn:
                while (wait := self._wait()) > 0:  # noqa: ASYNC110 - the wait is computed; no event to await
                    await asyncio.sleep(wait)
                self._sent.append(self._clock())
            yield

    def success(self) -> None:
        self.allowance = min(self.limit, self.allowance + max(1, self.limit // 10))

    def throttled(self, wait: float) -> None:
        now = self._clock()
        # Calls in flight together meet the same 429: the allowance halves once per window, not once per call.
        if now - self._last_cut >= self.window:
            self.allowance = max(1, self.allowance // 2)
            self._last_cut = now
        self._paused_until = max(self._paused_until, now + wait)
