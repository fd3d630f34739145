"""Keeping a Slack message current without flooding Slack: changes are merged, writes are spaced out.

Slack tolerates about one update per second per message; a storm of hundreds of webhooks, or a bulk retry of
hundreds of jobs, must not turn into hundreds of chat.update calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.infra.tasks import Background
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)


class Pacer:
    """Writes the changed parts of one subject (a message, its thread pages) one Slack call at a time, at most
    one call per `interval` seconds (`Timing.pacer_interval`). Marking a part that is already waiting costs nothing."""

    def __init__(self, write: Callable[[str, float | None], Awaitable[object]], background: Background, name: str,
                 interval: float, *, wait_first: bool = False):
        """`write(part, turn)` makes one Slack call; `turn` is the earliest turn a mark since the last write asked
        for (see `mark`), None for most writes."""
        self._write = write
        self._background = background
        self._name = name
        self._interval = interval
        self._dirty: dict[str, None] = {}  # an ordered set: parts are written in the order they first changed
        self._turns: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._next = asyncio.get_running_loop().time() + interval if wait_first else 0.0
        # For `written`: each mark's number, the number each part's last finished write covered, and an event set
        # (and replaced) whenever a write finishes.
        self._marks = 0
        self._marked: dict[str, int] = {}
        self._covered: dict[str, int] = {}
        self._wrote = asyncio.Event()

    def mark(self, part: str, *, turn: float | None = None) -> None:
        """`turn`: the change is late already (a followed job's ending told after a restart or a takeover), so its
        write takes its place among Slack's calls from that moment (`Outbox.submit`), not behind what was queued
        since."""
        if turn is not None:
            self._turns[part] = min(self._turns.get(part, turn), turn)
        self._marks += 1
        self._marked[part] = self._marks
        self._dirty.setdefault(part, None)
        if self._task is None or self._task.done():
            self._task = self._background.spawn(self._drain(), name=self._name)

    async def written(self) -> None:
        """Until what was marked so far has been written, at the pacer's pace (queued for Slack: the outbox keeps
        it): for a change that must be on its way before what caused it is let go of. While the database is away
        that takes until it is back."""
        wanted = dict(self._marked)
        while any(self._covered.get(part, 0) < mark for part, mark in wanted.items()):
            if not self._dirty and (self._task is None or self._task.done()):
                return  # a write that failed for good: nothing more will come
            wrote = self._wrote
            await wrote.wait()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            delay = self._next - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            part = next(iter(self._dirty))
            del self._dirty[part]
            covers = self._marked.get(part, 0)
            turn = self._turns.pop(part, None)
            self._next = loop.time() + self._interval
            try:
                await self._write(part, turn)
            except StoreUnavailable as exc:  # the database is away: written again at the next turn, once it is back
                log.warning("could not bring %s (%s) up to date yet: %s", self._name, part, exc)
                self._dirty.setdefault(part, None)
                if turn is not None:
                    self._turns[part] = min(self._turns.get(part, turn), turn)
                continue
            except Exception:  # one failed write must not stop the later ones
                log.exception("could not bring %s (%s) up to date in Slack", self._name, part)
            self._covered[part] = max(self._covered.get(part, 0), covers)
            self._wrote.set()
            self._wrote = asyncio.Event()
