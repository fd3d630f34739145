"""The one way a listener hands work on: acknowledge Slack at once, then run the work in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncAck

from bot.core import messages
from bot.work.retry import Who
from bot.work.runtime import Runtime


async def ack_then_run(rt: Runtime, ack: AsyncAck, who: Who, what: str,
                       work: Callable[[], Awaitable[object]]) -> None:
    """Ack first (no RunPod I/O before it), then run `work` tracked, so shutdown finishes it and an error in it is
    told to `who` in words about `what`. While shutting down, or while the database is known to be unreachable,
    nothing is taken and the person is told."""
    if not rt.background.accepting:
        await ack(**messages.shutting_down())
        return
    if rt.database_lost:
        # Known to be away (a lease renewal or a request found it so): say it in the ack itself, without waiting
        # on a database that does not answer.
        await ack(**messages.database_unreachable())
        return
    await ack()
    rt.background.spawn(rt.guard(who, what, work()), name=what)
