"""RunPod's rate limits, per endpoint and operation, shared by everything that calls RunPod in this process.

Documented per user, per endpoint, per operation (shared/runpod-serverless-api.md): `/run` 1000 per 10 s and 200 at
once; `/runsync`, `/status`, `/stream` 2000 and 400; `/cancel` 100 and 20. `/retry` and `/health` have no documented
limit: they are assumed to be as tight as `/cancel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.infra.ratelimit import Window
from bot.infra.timing import REAL, Timing


@dataclass(frozen=True)
class OpLimit:
    per_window: int
    concurrent: int


DOCUMENTED: dict[str, OpLimit] = {
    "run": OpLimit(1000, 200),
    "runsync": OpLimit(2000, 400),
    "status": OpLimit(2000, 400),
    "stream": OpLimit(2000, 400),
    "cancel": OpLimit(100, 20),
    "retry": OpLimit(100, 20),   # assumed: undocumented
    "health": OpLimit(100, 20),  # assumed: undocumented
}


class RunPodLimits:
    """One `Window` per (endpoint, operation), made on first use, `timing.runpod_window` wide (and a margin: the
    window counts a call from when its answer lands, never earlier than RunPod counted it, and the margin covers what
    that cannot, a call sent after another arriving before it by a few milliseconds)."""

    def __init__(self, limits: dict[str, OpLimit] | None = None, timing: Timing = REAL,
                 observe: Callable[[str, str, float], None] | None = None, clock: Callable[[], float] | None = None):
        self._clock = clock
        self._limits = {**DOCUMENTED, **(limits or {})}
        self._window = timing.runpod_window + timing.runpod_window_margin
        self._observe = observe
        self._windows: dict[tuple[str, str], Window] = {}

    def __call__(self, endpoint: str, op: str) -> Window:
        key = (endpoint, op)
        window = self._windows.get(key)
        if window is None:
            limit = self._limits.get(op, DOCUMENTED["cancel"])
            window = self._windows[key] = Window(limit.per_window, self._window, limit.concurrent, clock=self._clock)
        return window

    def changed(self, endpoint: str, op: str) -> None:
        if self._observe is not None:
            self._observe(endpoint, op, self(endpoint, op).rate)
