"""Pacing calls to a platform that limits us: a token bucket that can be paused (a 429's Retry-After) and whose rate
can be lowered and raised while it runs (additive increase, multiplicative decrease).

aiolimiter's leaky bucket paces well but can neither pause for a Retry-After nor change its rate in flight; both
are the point here, so this is the few lines it takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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


class Aimd:
    """A rate that finds the platform's real limit: halves on a 429, creeps back up by `step` per success."""

    def __init__(self, bucket: Bucket, ceiling: float, *, floor: float = 0.2, step: float | None = None):
        self.bucket = bucket
        self.ceiling = ceiling
        self.floor = floor
        self.step = step if step is not None else ceiling / 50

    def success(self) -> None:
        self.bucket.rate = min(self.ceiling, self.bucket.rate + self.step)

    def throttled(self, retry_after: float | None, backoff: float) -> float:
        """Lower the rate, pause the bucket; returns how long the caller waits before trying again."""
        self.bucket.rate = max(self.floor, self.bucket.rate / 2)
        wait = retry_after if retry_after is not None else backoff
        self.bucket.pause(wait)
        return wait
