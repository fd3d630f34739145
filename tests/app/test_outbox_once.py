"""A message queued once under a key (a run's summary) reaches Slack once, however many callers queue it: the first
one's call goes out, and every later caller (another replica finishing the same run) is told where it went."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.infra.metrics import Metrics
from bot.infra.timing import REAL
from bot.slack.outbox import Delivery, Outbox
from bot.store import open_store


class HeldSlack:
    """A Web API client that holds every post until `answer` is set."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.answer = asyncio.Event()

    async def chat_postMessage(self, **payload: Any) -> dict[str, str]:
        await self.answer.wait()
        self.posted.append(payload)
        return {"ts": f"1.{len(self.posted)}"}


async def test_a_message_queued_once_under_a_key_is_posted_once_and_a_later_caller_gets_where_it_went(
        tmp_path: Any) -> None:
    store = open_store(str(tmp_path / "outbox.db"))
    await store.open()
    client = HeldSlack()
    timing = REAL.scaled(0.05)
    first, second = (Outbox(store, client, Metrics(), timing=timing) for _ in range(2))  # type: ignore[arg-type]
    try:
        _, sending = await first.submit("post", {"channel": "C1", "text": "summary"}, once="summary:run-1")
        _, waiting = await second.submit("post", {"channel": "C1", "text": "summary, again"}, once="summary:run-1")
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second caller waits for the first one's post"
        client.answer.set()
        assert await asyncio.wait_for(sending, 10) == Delivery(ok=True, ts="1.1")
        assert await asyncio.wait_for(waiting, 10) == Delivery(ok=True, ts="1.1", again=True)
        # Long after, a third caller (a replica taking the run over the next day) is told at once.
        assert await asyncio.wait_for(second.send("post", {"channel": "C1", "text": "x"}, once="summary:run-1"),
                                      10) == Delivery(ok=True, ts="1.1", again=True)
        assert [p["text"] for p in client.posted] == ["summary"]
        # Another key is another message.
        assert (await asyncio.wait_for(second.send("post", {"channel": "C1", "text": "other"}, once="summary:run-2"),
                                       10)).ts == "1.2"
    finally:
        for outbox in (first, second):
            await outbox.close(0.1)
        await store.close()
