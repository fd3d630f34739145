"""The one way a listener hands work on: acknowledge Slack at once, then run the work in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot.core import messages
from bot.work.accepted import accept_in_time
from bot.work.runtime import Runtime
from bot.work.single import RETRY_REQUEST, RetryRequest
from bot.work.who import Who


async def ack_then_run(rt: Runtime, ack: AsyncAck, who: Who, what: str,
                       work: Callable[[], Awaitable[object]], *, ack_is_seen: bool = True) -> None:
    """Ack first (no RunPod I/O before it), then run `work` tracked, so shutdown finishes it and an error in it is
    told to `who` in words about `what`. While shutting down, or while the database is known to be unreachable,
    nothing is taken and the person is told: in the ack itself for a slash command (Slack shows its text); for a
    click or a shortcut (`ack_is_seen=False`: Slack drops an ack's text) privately right after it, without the
    outbox, which needs the database."""
    refusal = _refusal(rt)
    if refusal is not None:
        await _refuse(rt, ack, who, what, refusal, ack_is_seen)
        return
    await ack()
    rt.background.spawn(rt.guard(who, what, work()), name=what)


async def ack_accepted(rt: Runtime, ack: AsyncAck, who: Who, what: str, kind: str, payload: dict[str, Any],
                       work: Callable[[int], Awaitable[object]], *, ack_is_seen: bool = True,
                       unreachable: dict[str, Any] | None = None) -> None:
    """As `ack_then_run`, for work a replica's death must not lose once Slack was told it is taken: it is written
    down (an inbox row, `kind` and `payload`) before the ack, and `work` gets the row's id. A database that does not
    take it in time is a refusal like a database known to be away; `unreachable` says it in the request's words."""
    unreachable = unreachable or messages.database_unreachable()
    refusal = _refusal(rt, unreachable)
    work_id = None if refusal is not None else await accept_in_time(
        rt.store, rt.background, kind, payload, rt.timing.accept_within, rt.timing.accept_answer_grace)
    if work_id is None:
        if refusal is None:  # the database did not take it in time: taken for away until a renewal says otherwise
            rt.database_state(False)
        await _refuse(rt, ack, who, what, refusal or unreachable, ack_is_seen)
        return
    await ack()
    rt.background.spawn(rt.guard(who, what, work(work_id)), name=what)


async def ack_retry(rt: Runtime, ack: AsyncAck, request: RetryRequest, *, ack_is_seen: bool = True) -> None:
    """One job's retry asked for by a person, written down before the ack (bot/work/single.py)."""
    await ack_accepted(rt, ack, request.who, request.what, RETRY_REQUEST, request.to_json(),
                       lambda work_id: rt.single.carry_out(request, work_id), ack_is_seen=ack_is_seen)


def _refusal(rt: Runtime, unreachable: dict[str, Any] | None = None) -> dict[str, Any] | None:
    if not rt.background.accepting:
        return messages.shutting_down()
    if rt.database_lost:
        # Known to be away (a lease renewal or a request found it so): no waiting on a database that does not
        # answer.
        return unreachable or messages.database_unreachable()
    return None


async def _refuse(rt: Runtime, ack: AsyncAck, who: Who, what: str, refusal: dict[str, Any], ack_is_seen: bool) -> None:
    if ack_is_seen:
        await ack(**refusal)
    else:
        await ack()
        rt.background.spawn(rt.out.tell_now(who.channel, who.user, refusal, who.response_url),
                            name=f"refused {what}")
