"""Where a Slack message went is recorded before the message is marked sent: a replica dying between the two (here:
the database never taking the "sent" mark) leaves a message sent twice at worst, never an alert whose place is lost
(one nobody could update again: not its retry, not its ending, not a retry policy's steps)."""

from __future__ import annotations

import asyncio
from typing import Any

from testkit.harness import message_text


async def test_an_alerts_place_is_recorded_even_when_its_sent_mark_never_lands(make_app) -> None:  # type: ignore[no-untyped-def]
    app = await make_app("http")
    stuck = asyncio.Event()

    async def never(message_id: int, result: str | None) -> Any:  # the process dies here, as far as it knows
        stuck.set()
        await asyncio.Event().wait()

    app.rt.store.sent = never
    app.runpod.add_job("ep1", "job-order", status="FAILED")
    status, _ = await app.webhook("ep1", {"id": "job-order", "status": "FAILED", "error": "CUDA out of memory"})
    assert status == 200
    await app.slack.wait_for(lambda s: [m for m in app.top_level("CALERTS") if "job-order" in message_text(m)])
    await asyncio.wait_for(stuck.wait(), 10)
    [posted] = [m for m in app.top_level("CALERTS") if "job-order" in message_text(m)]
    alert = await app.rt.desk.get("ep1", "job-order")
    assert alert is not None and alert.ts == posted["ts"]


async def test_a_stop_that_cuts_an_alerts_hook_short_does_not_post_the_alert_again(make_app) -> None:  # type: ignore[no-untyped-def]
    # Seen in a chaos run: a SIGTERM while the hook waited on a slow database left the call 'sending', and the
    # replica that adopted it posted the alert a second time, 28 s after the first.
    app = await make_app("http")
    hooked = asyncio.Event()

    async def slow_database(after: dict[str, Any], delivery: Any) -> None:
        hooked.set()
        await asyncio.Event().wait()

    app.rt.outbox._after["alert_posted"] = slow_database
    app.runpod.add_job("ep1", "job-cut", status="FAILED")
    status, _ = await app.webhook("ep1", {"id": "job-cut", "status": "FAILED", "error": "CUDA out of memory"})
    assert status == 200
    await asyncio.wait_for(hooked.wait(), 10)
    await app.restart()
    await app.settle()
    posts = [m for m in app.top_level("CALERTS") if "job-cut" in message_text(m)]
    assert len(posts) == 1, [m["ts"] for m in posts]
    alert = await app.rt.desk.get("ep1", "job-cut")
    assert alert is not None and alert.ts == posts[0]["ts"]  # the new process ran the hook with the kept answer
