"""Work that runs after the ack, tracked so shutdown can finish it instead of dropping it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    """A set of running tasks. Exceptions are logged (never lost silently); `drain` waits for the rest."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accepting = True

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109
        """Wait up to `timeout` for running work; cancel what is left. Returns how many were cancelled."""
        self.accepting = False
        # Work in flight may start more (a retry's audit line, its follow): wait for those too.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return len(pending)

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until no task runs (tests and the benchmark use it to know when work has settled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._tasks)} background tasks still running: "
                                   f"{sorted(t.get_name() for t in self._tasks)[:5]}")
            await asyncio.wait(set(self._tasks), timeout=remaining)


async def every(interval: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]], failed: str,
                expected: tuple[type[Exception], ...] = ()) -> None:
    """Run `step` every `interval` seconds until `stop`. A step that fails is tried again at the next round: an
    `expected` error (the database away) is one line, anything else a traceback, both starting with `failed`."""
    while not stop.is_set():
        try:
            await step()
        except expected as exc:
            log.warning("%s: %s", failed, exc)
        except Exception:
            log.exception(failed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
