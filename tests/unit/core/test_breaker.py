"""The breaker's rule (bot/core/breaker.py): half or more of an endpoint's last 10 automatic retries failed again
within 10 minutes trips it; older results and results beyond the last 10 do not count."""

from __future__ import annotations

import random

from bot.core.breaker import BREAKER_LAST, BREAKER_PAUSE, BREAKER_WINDOW, should_trip

NOW = 1_700_000_000.0


def ended(*failed_again: bool, every: float = 10.0, start: float = NOW) -> list[tuple[float, bool]]:
    """Results one `every` seconds apart, newest first, ending at `start`."""
    return [(start - i * every, f) for i, f in enumerate(failed_again)]


def test_the_specs_numbers():
    assert (BREAKER_LAST, BREAKER_WINDOW, BREAKER_PAUSE) == (10, 600.0, 1800.0)


def test_half_of_the_last_ten_failing_again_trips_it():
    assert should_trip(ended(*[True] * 5, *[False] * 5), NOW)
    assert not should_trip(ended(*[True] * 4, *[False] * 6), NOW)
    assert should_trip(ended(*[True] * 10), NOW)


def test_a_few_results_trip_it_once_five_failed_again():
    assert not should_trip([], NOW)
    assert not should_trip(ended(True, True, True, True), NOW)
    assert should_trip(ended(*[True] * 5), NOW)


def test_only_results_within_the_window_count():
    old = ended(*[True] * 5, start=NOW - BREAKER_WINDOW - 1)
    assert not should_trip(old, NOW)
    edge = ended(*[True] * 5, every=0.0, start=NOW - BREAKER_WINDOW)
    assert should_trip(edge, NOW)
    assert not should_trip(ended(*[True] * 4) + old, NOW)


def test_only_the_newest_ten_count():
    # Ten newest all completed; five older failures (still inside the window) are beyond the last ten.
    results = ended(*[False] * 10, *[True] * 5)
    assert not should_trip(results, NOW)
    # The same, with the newest ones failing: trips.
    assert should_trip(ended(*[True] * 5, *[False] * 10), NOW)


def test_the_order_given_does_not_matter():
    results = ended(*[False] * 10, *[True] * 5) + ended(True, True, start=NOW - 500)
    shuffled = results[:]
    random.Random(7).shuffle(shuffled)
    assert should_trip(shuffled, NOW) == should_trip(sorted(results), NOW) == should_trip(results, NOW)
