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
