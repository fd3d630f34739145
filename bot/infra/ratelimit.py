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


class Window:
    """At most `limit` calls in any `window` seconds and `concurrent` at once: RunPod's documented shape.

    The client counts the way the server does, so it can use the whole allowance without meeting a 429. When a 429
    comes anyway (the real limit is lower, or another client shares it), the allowance halves and the window pauses;
    each success gives one back, up to `limit`.

    A call is counted from when its answer lands, not from when it was sent: RunPod counts it on arrival, which is
    somewhere in between, and a loaded process can take longer than any fixed margin to get it there (2000 polls at
    once arrived 0.5 s after they were stamped, and the next 2000 met 429s). Until it lands, a call holds its place.
    """

    def __init__(self, limit: int, window: float, concurrent: int, *, clock: Callable[[], float] | None = None):
        self.limit = limit
        self.allowance = limit
        self.window = window
        self._clock = clock or asyncio.get_running_loop().time
        self._landed: deque[float] = deque()
        self._in_flight = 0
        self._one_landed = asyncio.Event()
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._slots = asyncio.Semaphore(concurrent)
        self._turn = asyncio.Lock()  # callers are served in arrival order

    @property
    def rate(self) -> float:
        """The allowance as calls per second (for metrics)."""
        return self.allowance / self.window

    def _wait(self) -> float | None:
        """Seconds until the next call may go; None while that depends on a call still in flight."""
        now = self._clock()
        while self._landed and self._landed[0] <= now - self.window:
            self._landed.popleft()
        wait = max(0.0, self._paused_until - now)
        over = len(self._landed) + self._in_flight - self.allowance
        if over < 0:
            return wait
        if over < len(self._landed):
            return max(wait, self._landed[over] + self.window - now)
        return None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            async with self._turn:
                while (wait := self._wait()) != 0:
                    if wait is None:
                        self._one_landed.clear()
                        await self._one_landed.wait()
                    else:
                        await asyncio.sleep(wait)
                self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
                self._landed.append(self._clock())
                self._one_landed.set()

    def success(self) -> None:
        self.allowance = min(self.limit, self.allowance + max(1, self.limit // 10))

    def throttled(self, wait: float) -> None:
        now = self._clock()
        # Calls in flight together meet the same 429: the allowance halves once per window, not once per call.
        if now - self._last_cut >= self.window:
            self.allowance = max(1, self.allowance // 2)
            self._last_cut = now
        self._paused_until = max(self._paused_until, now + wait)
