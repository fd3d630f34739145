"""The breaker: when automatic retries on an endpoint keep failing again, they pause there for a while."""

from __future__ import annotations

from collections.abc import Sequence

# Who paused an endpoint when the breaker did (`Pause.by`, and the user of its audit entries), not a person.
BREAKER = "breaker"
BREAKER_LAST = 10            # the endpoint's last 10 automatic retries
BREAKER_WINDOW = 600.0       # ... that ended within the last 10 minutes
BREAKER_TRIP = BREAKER_LAST // 2   # half or more of them failed again: trip
BREAKER_PAUSE = 1800.0       # automatic retries on the endpoint then pause for 30 minutes


def should_trip(results: Sequence[tuple[float, bool]], now: float) -> bool:
    """Whether half or more of an endpoint's last BREAKER_LAST automatic retries that ended within BREAKER_WINDOW
    of `now` failed again. `results`: (finished_at, failed_again) of its automatic retries, in any order."""
    recent = sorted((r for r in results if now - r[0] <= BREAKER_WINDOW), key=lambda r: r[0], reverse=True)
    return sum(1 for _, failed_again in recent[:BREAKER_LAST] if failed_again) >= BREAKER_TRIP
