"""One job's retry asked for by a person (`/runpod-retry <endpoint> <job>`, the retry form or the message shortcut with
one job, an alert's or the Home tab's Retry), written down before Slack is told it was taken: a replica killed between
the acknowledgement and the retry's own record (`RetryService.attempt` writes one before calling RunPod) would
otherwise lose a request the person was told is on its way.

The row covers that gap and is let go of once the retry is done with. Whoever adopts it after a death carries the
request out with the function the listener handed it to (`SingleRetries.carry_out`), unless the dead replica got as
far as sending the retry or telling the person something about it: then that retry's own record is settled, or the
person was answered, and the row is only let go of."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.infra.logs import ctx
from bot.store import Queued
from bot.work.accepted import let_go
from bot.work.home import HomeDesk
from bot.work.retry import RetryService
from bot.work.threads import retry_in_thread
from bot.work.who import Who

log = logging.getLogger(__name__)

# The inbox row of one job's retry asked for by a person ("retry" is the row `attempt` writes before calling RunPod).
RETRY_REQUEST = "retry_request"


class Way(StrEnum):
    """Where the request came from, which says where its answer goes."""

    COMMAND = "command"  # the command or the form: a message in the channel, the replies in its thread
    THREAD = "thread"    # the message shortcut: the replies in the picked message's thread
    BUTTON = "button"    # an alert's Retry: the alert updates, the replies in its thread
    HOME = "home"        # the Home tab's Retry: where that job's retry belongs (`HomeDesk.retry`)


@dataclass(frozen=True)
class RetryRequest:
    who: Who
    endpoint: str
    job: str
    way: Way
    channel: str = ""              # THREAD, BUTTON: where the message is
    message_ts: str = ""           # BUTTON: the alert clicked
    thread_ts: str | None = None   # THREAD: the picked message's thread; BUTTON: the thread the alert is in

    def to_json(self) -> dict[str, Any]:
        return {"who": self.who.to_json(), "endpoint": self.endpoint, "job": self.job, "way": self.way.value,
                "channel": self.channel, "message_ts": self.message_ts, "thread_ts": self.thread_ts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryRequest:
        thread_ts = data.get("thread_ts")
        return cls(Who.from_json(dict(data["who"])), str(data["endpoint"]), str(data["job"]), Way(data["way"]),
                   str(data.get("channel") or ""), str(data.get("message_ts") or ""),
                   None if thread_ts is None else str(thread_ts))

    @property
    def what(self) -> str:
        """The request in the words an error about it is told with."""
        return f"the retry of job `{self.job}`"


def _parent_key(work_id: int | None) -> str | None:
    """The message a request's replies thread under, posted once whichever replica carries the request out."""
    return None if work_id is None else f"retry-parent#{work_id}"


class SingleRetries:
    def __init__(self, service: RetryService, home: HomeDesk):
        self.service = service
        self.store = service.store
        self.home = home

    async def carry_out(self, request: RetryRequest, work_id: int | None = None) -> None:
        """The retry as its surface asks for it. `work_id`: the request's inbox row, let go of once the retry is done
        with, however it ended, except when the app is stopping: then the row stays, and whoever adopts it finishes
        the request (or finds the retry sent, and lets its own record be settled)."""
        try:
            await self._retry(request, _parent_key(work_id))
        except asyncio.CancelledError:
            raise
        except Exception:  # an error of the app's own (told to the person): not tried again at every start
            await let_go(self.store, work_id)
            raise
        await let_go(self.store, work_id)

    async def _retry(self, request: RetryRequest, once: str | None) -> None:
        who, endpoint, job = request.who, request.endpoint, request.job
        if request.way is Way.COMMAND:
            await self.service.retry_from_command(who, endpoint, job, once=once)
        elif request.way is Way.THREAD:
            assert request.thread_ts is not None
            await retry_in_thread(self.service, who, endpoint, job, request.channel, request.thread_ts, once=once)
        elif request.way is Way.BUTTON:
            await self.service.retry_from_button(who, endpoint, job, request.channel, request.message_ts,
                                                 request.thread_ts)
        else:
            await self.home.retry(who, endpoint, job, once=once)

    async def resume(self, row: Queued) -> None:
        """A request whose replica died (or stopped) before it was done with."""
        request = RetryRequest.from_json(row.payload)
        endpoint, job = request.endpoint, request.job
        if await self._got_going(request, row.created):
            log.info("a retry accepted before a restart had got going; its own record settles it",
                     extra=ctx(endpoint=endpoint, job=job))
            await let_go(self.store, row.id)
            return
        # The dead replica may hold the job's claim, taken but not used: it runs out with its lease.
        await self.service.claims.outlive_the_dead(endpoint, job)
        log.info("carrying out a retry accepted before a restart", extra=ctx(endpoint=endpoint, job=job))
        await self.carry_out(request, row.id)

    async def _got_going(self, request: RetryRequest, since: float) -> bool:
        """Whether the retry was sent for this request (its record, written before RunPod is called, is open still
        or was settled into the audit trail), or the person was told why not (refusals are recorded too)."""
        endpoint, job, user = request.endpoint, request.job, request.who.user
        for sent in await self.store.open_work("retry"):
            data = sent.payload
            if (data.get("endpoint"), data.get("job")) == (endpoint, job) and sent.created >= since \
                    and (data.get("who") or {}).get("user") == user:
                return True
        return await self.store.asked_since(endpoint, job, user, since)
