"""Replicas sharing a PostgreSQL database share Slack's pace: three replicas posting into one channel together keep
to Slack's one post a second there, instead of each keeping to it (three times too fast: 429s, and every replica's
lane paused for the Retry-After)."""

from __future__ import annotations

import asyncio
import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.infra.metrics import Metrics
from bot.infra.timing import REAL
from bot.slack.outbox import Outbox
from bot.store.postgres import PostgresStore
from testkit.env import BOT_TOKEN, TEST_TIME_SCALE
from testkit.fakes.slack import FakeSlack

POSTS_EACH = 8


async def test_three_replicas_posting_into_one_channel_meet_no_429_and_keep_slacks_pace(
        slack: FakeSlack, pg_url: str) -> None:
    timing = REAL.scaled(TEST_TIME_SCALE)
    stores = [PostgresStore(pg_url, timeout=5.0) for _ in range(3)]
    outboxes = []
    for store in stores:
        await store.open()
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
        outboxes.append(Outbox(store, client, Metrics(), timing=timing))
    try:
        started = time.monotonic()
        sends = [outbox.send("post", {"channel": "C1", "text": f"Job {r}-{n} failed"})
                 for n in range(POSTS_EACH) for r, outbox in enumerate(outboxes)]
        deliveries = await asyncio.wait_for(asyncio.gather(*sends), 60)
        took = time.monotonic() - started
    finally:
        for outbox in outboxes:
            await outbox.close(0.1)
        for store in stores:
            await store.close()
    assert all(d.ok for d in deliveries)
    throttled = [c for c in slack.calls_to("chat.postMessage") if c.status == 429]
    assert not throttled, f"{len(throttled)} posts met Slack's 429: the replicas did not share the channel's pace"
    assert len(slack.accepted("chat.postMessage", "C1")) == 3 * POSTS_EACH
    # Slack's floor for 24 posts at one a second after a burst of five: 19 s; the pace is kept, not beaten by much.
    floor = (3 * POSTS_EACH - 5) * TEST_TIME_SCALE
    assert took < 1.6 * floor + 1.0, f"24 posts took {took:.1f} s against a floor of {floor:.1f} s"
