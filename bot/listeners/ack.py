"""The one way a listener hands work on: acknowledge Slack at once, then run the work in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncAck

from bot.core import messages
from bot.work.runtime import Runtime
from bot.work.who import Who


async def ack_then_run(rt: Runtime, ack: AsyncAck, who: Who, what: str,
                       work: Callable[[], Awaitable[object]], *, ack_is_seen: bool = True) -> None:
    """Ack first (no RunPod I/O before it), then run `work` tracked, so shutdown finishes it and an error in it is
    told to `who` in words about `what`. While shutting down, or while the database is known to be unreachable,
    nothing is taken and the person is told: in the ack itself for a slash command (Slack shows its text); for a
    click or a shortcut (`ack_is_seen=False`: Slack drops an ack's text) privately right after it, without the
    outbox, which needs the database."""
    refusal = None
    if not rt.background.accepting:
        refusal = messages.shutting_down()
    elif rt.database_lost:
        # Known to be away (a lease renewal or a request found it so): no waiting on a database that does not
        # answer.
        refusal = messages.database_unreachable()
    if refusal is not None:
        if ack_is_seen:
            await ack(**refusal)
        else:
            await ack()
            rt.background.spawn(rt.tell_directly(who, refusal), name=f"refused {what}")
        return
    await ack()
    rt.background.spawn(rt.guard(who, what, work()), name=what)
