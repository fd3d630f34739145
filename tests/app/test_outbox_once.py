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


class SlowSlack:
    """A Web API client that takes every post at once and answers it `answer_after` seconds later."""

    def __init__(self, answer_after: float) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer_after = answer_after

    async def chat_postMessage(self, **payload: Any) -> dict[str, str]:
        self.received.append(payload)
        await asyncio.sleep(self.answer_after)
        return {"ts": f"1.{len(self.received)}"}


async def test_a_post_on_its_way_when_the_app_stops_is_marked_sent_and_not_posted_again_by_the_next_start(
        tmp_path: Any) -> None:
    """A SIGTERM while Slack is answering a post: cut off there, the post stayed 'sending' and the next start (or a
    replica adopting it) posted it a second time. The post is given a moment to be answered and marked sent."""
    store = open_store(str(tmp_path / "outbox.db"))
    await store.open()
    slack = SlowSlack(answer_after=0.5)
    outbox = Outbox(store, slack, Metrics(), timing=REAL.scaled(0.05))  # type: ignore[arg-type]
    try:
        _, future = await outbox.submit("post", {"channel": "C1", "text": "Retried job abc-123"})
        for _ in range(200):
            if slack.received:
                break
            await asyncio.sleep(0.01)
        assert slack.received, "the post reached Slack"
        await outbox.close(grace=0)  # shutdown begins while Slack has not answered yet
        assert future.done() and future.result() == Delivery(ok=True, ts="1.1")
        assert await store.queued() == [], "nothing is left for the next start to post again"
        restarted = Outbox(store, slack, Metrics(), timing=REAL.scaled(0.05))  # type: ignore[arg-type]
        restarted.resume(await store.queued())
        await restarted.idle(2)
        await restarted.close(0.1)
        assert [p["text"] for p in slack.received] == ["Retried job abc-123"]
    finally:
        await outbox.close(0.1)
        await store.close()
