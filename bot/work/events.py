"""What happens to a job while the app works on it, told to whoever keeps a view of it or acts on it: the one way
a job's life travels.

The retry service and the follower announce; the alert desk, the Home tab, bulk runs and grouped alerts (their
tallies) and the job's claim listen, in the order they subscribed. Retrying a job therefore knows nothing of alert
messages or runs, and a listener's trouble (Slack down, a bug) never breaks the retry itself: each listener's error
is logged and the others still hear the event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.core.outcome import Outcome
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageRef:
    """The Slack message a retry was asked from (a button's message): a subscriber may adopt it."""

    channel: str
    ts: str
    thread_ts: str | None = None


@dataclass(frozen=True)
class Ending:
    """How a followed job ended: `final` is RunPod's last answer (None: following stopped for `reason`); `user` asked
    for the retry, and `run` names the bulk run or grouped alert the job belongs to ("bulk:…", "storm:…"), if any."""

    endpoint: str
    job: str
    final: dict[str, Any] | None
    reason: str = ""
    user: str = ""
    run: str = ""
    claim_at: float = 0.0  # when the follow's claim was taken (0: saved by an older version, whichever claim)
    # Told late (its follow resumed after a restart or taken over after a death): the retry's moment, from which a
    # tally redrawn with this ending takes its place among Slack's calls, ahead of what was queued since.
    turn: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.endpoint, self.job)


class JobListener:
    """A subscriber hears every event; it answers those it cares about (the others do nothing)."""

    async def retrying(self, user: str, endpoint: str, job: str, origin: MessageRef | None) -> None:
        """Someone's retry of the job is about to be sent."""

    async def retried(self, user: str, endpoint: str, job: str, outcome: Outcome,
                      report: MessageRef | None = None) -> None:
        """RunPod answered the retry (requeued, or refused and why). `report` is the message whose thread reports
        it (its `ts` is empty when replies go through a command's response_url instead)."""

    async def retry_interrupted(self, endpoint: str, job: str) -> None:
        """The retry stopped before an answer was recorded (an error in the app, or shutdown)."""

    async def settled(self, sent: dict[str, Any], outcome: Outcome) -> None:
        """After a restart, a retry whose answer was lost was settled by /status (`sent` is its record, written
        before RunPod was called): told before the outcome is recorded, so a run's line shows the answer."""

    async def progressed(self, endpoint: str, job: str, status: str) -> None:
        """A followed job moved on (IN_QUEUE to IN_PROGRESS)."""

    async def ended(self, ending: Ending) -> None:
        """A followed job ended, or following it stopped. Told again when the database failed the listener
        (`JobEvents.ended`), and again by whoever resumes a follow cut off by a kill: taking it twice is as once."""


class JobEvents:
    """Fans each event out to every subscriber, in the order they subscribed."""

    def __init__(self) -> None:
        self._listeners: list[JobListener] = []

    def subscribe(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    async def _tell(self, what: str, call: Callable[[JobListener], Awaitable[None]],
                    only: list[JobListener] | None = None) -> list[JobListener]:
        """Tells `only` those (default: every subscriber); answers the ones the database failed."""
        failed: list[JobListener] = []
        for listener in self._listeners if only is None else only:
            try:
                await call(listener)
            except StoreUnavailable as exc:  # expected while the database is away: one line, not a traceback
                log.warning("%s could not handle the %s event: %s", type(listener).__name__, what, exc)
                failed.append(listener)
            except Exception:
                log.exception("%s could not handle the %s event", type(listener).__name__, what)
        return failed

    async def retrying(self, user: str, endpoint: str, job: str, origin: MessageRef | None = None) -> None:
        await self._tell("retrying", lambda s: s.retrying(user, endpoint, job, origin))

    async def retried(self, user: str, endpoint: str, job: str, outcome: Outcome,
                      report: MessageRef | None = None) -> None:
        await self._tell("retried", lambda s: s.retried(user, endpoint, job, outcome, report))

    async def retry_interrupted(self, endpoint: str, job: str) -> None:
        await self._tell("retry_interrupted", lambda s: s.retry_interrupted(endpoint, job))

    async def settled(self, sent: dict[str, Any], outcome: Outcome) -> None:
        await self._tell("settled", lambda s: s.settled(sent, outcome))

    async def progressed(self, endpoint: str, job: str, status: str) -> None:
        await self._tell("progressed", lambda s: s.progressed(endpoint, job, status))

    async def ended(self, ending: Ending, only: list[JobListener] | None = None) -> list[JobListener]:
        """As every event, and answers the listeners the database failed: a job's ending is told once for good, so
        the follower tells those again when the database is back (`Follower._finish`)."""
        return await self._tell("ended", lambda s: s.ended(ending), only)
