"""The one way tests, stand-ins and the benchmark wait for something to become true: poll it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
WAIT = 15.0  # how long the stand-ins wait by default: long enough for a busy machine; a pass never waits it out
STEP = 0.05  # as the replica tests always polled: some look at the app right after what they waited for


async def wait_until(predicate: Callable[[], T | None], timeout: float, what: str | Callable[[], str] = "",  # noqa: ASYNC109
                     step: float = STEP) -> T:
    """Poll `predicate()` until it returns something truthy, and return that. After `timeout` seconds,
    AssertionError naming `what` (a text, or a function giving one, called only then: a stand-in's record)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {described}")
        await asyncio.sleep(step)


async def came_true(predicate: Callable[[], Any], timeout: float, step: float = STEP) -> bool:  # noqa: ASYNC109
    """As wait_until, for a measurement that records a miss instead of failing: whether it came true in time."""
    try:
        await wait_until(predicate, timeout, step=step)
    except AssertionError:
        return False
    return True
