"""The breaker: automatic retries on an endpoint pause when they keep failing again. Pure."""

from __future__ import annotations

from collections.abc import Sequence

BREAKER_LAST = 10            # the endpoint's last 10 automatic retries
BREAKER_WINDOW = 600.0       # ... within 10 minutes
BREAKER_PAUSE = 1800.0       # trips for 30 minutes
BREAKER_FAILED = BREAKER_LAST // 2  # half or more of them failed again


def should_trip(results: Sequence[tuple[float, bool]], now: float) -> bool:
    """results: (finished_at, failed_again) of the endpoint's automatic retries, any order. Those within
    BREAKER_WINDOW of now, newest BREAKER_LAST of them: trip when half or more failed again."""
    inside = sorted((r for r in results if now - BREAKER_WINDOW <= r[0] <= now), key=lambda r: r[0], reverse=True)
    return sum(1 for _, failed in inside[:BREAKER_LAST] if failed) >= BREAKER_FAILED
