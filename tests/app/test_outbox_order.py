"""The order a channel's messages leave in: at Slack's pace, what people wait for (a command's message, a retry's
result, how the job ended) goes two to one ahead of news nobody asked for (alerts in a storm), so neither waits behind
all of the other; order within a thread, and among each, is kept. With no news, strictly oldest first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.infra.metrics import Metrics
from bot.infra.timing import REAL
from bot.slack.outbox import Outbox
from bot.store import open_store
from testkit.polling import wait_until


class RecordingSlack:
    def __init__(self) -> None:
        self.posted: list[str] = []

    async def chat_postMessage(self, **payload: Any) -> dict[str, str]:
        self.posted.append(payload["text"])
        return {"ts": f"1.{len(self.posted)}"}

    async def chat_update(self, **payload: Any) -> dict[str, str]:
        self.posted.append(payload["text"])
        return {"ts": payload["ts"]}


@pytest.fixture
async def channel(tmp_path: Any) -> AsyncIterator[tuple[Outbox, RecordingSlack]]:
    """An outbox at 20x Slack's pace, posting to a Slack that records what it took, in order."""
    store = open_store(str(tmp_path / "outbox.db"))
    await store.open()
    slack = RecordingSlack()
    outbox = Outbox(store, slack, Metrics(), timing=REAL.scaled(0.05))  # type: ignore[arg-type]
    try:
        yield outbox, slack
    finally:
        await outbox.close(0.1)
        await store.close()


async def burst_gone(slack: RecordingSlack) -> None:
    await wait_until(lambda: len(slack.posted) >= 3, 10, "Slack's burst gone; the rest wait for the pace", step=0.005)


async def test_posts_people_wait_for_go_two_to_one_ahead_of_a_storms_waiting_alerts_and_keep_their_order(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    outbox, slack = channel
    alerts = [await outbox.submit("post", {"channel": "C1", "text": f"alert {n}"}, news=True) for n in range(8)]
    await burst_gone(slack)
    replies = [await outbox.submit("post", {"channel": "C1", "thread_ts": f"1.{n}", "text": text})
               for n, text in [(1, "result of job-1"), (1, "job-1 completed"), (2, "result of job-2"),
                               (2, "job-2 completed")]]
    other = await outbox.submit("post", {"channel": "C2", "text": "elsewhere"})
    await asyncio.wait_for(asyncio.gather(*(f for _, f in [*alerts, *replies, other])), 20)
    in_c1 = [t for t in slack.posted if t != "elsewhere"]
    assert in_c1 == ["alert 0", "alert 1", "alert 2", "result of job-1", "job-1 completed", "alert 3",
                     "result of job-2", "job-2 completed", "alert 4", "alert 5", "alert 6", "alert 7"]


async def test_a_burst_of_commands_in_one_channel_leaves_oldest_first_so_endings_do_not_hold_back_parents(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    outbox, slack = channel
    parents = [await outbox.submit("post", {"channel": "C1", "text": f"retry {n}"}) for n in range(6)]
    await burst_gone(slack)
    result = await outbox.submit("post", {"channel": "C1", "thread_ts": "1.1", "text": "result of job-0"})
    ending = await outbox.submit("post", {"channel": "C1", "thread_ts": "1.1", "text": "job-0 completed"})
    alert = await outbox.submit("post", {"channel": "C1", "text": "alert"}, news=True)
    await asyncio.wait_for(asyncio.gather(*(f for _, f in [*parents, result, ending, alert])), 20)
    # The alert takes its turn; the result and the ending, queued after the last parents, do not go ahead of them.
    assert slack.posted == ["retry 0", "retry 1", "retry 2", "alert", "retry 3", "retry 4", "retry 5",
                            "result of job-0", "job-0 completed"]


async def test_a_run_summary_edited_with_a_jobs_ending_goes_ahead_of_alerts_waiting_to_be_redrawn(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    """chat.update is one lane for every channel (Slack's Tier 3): a storm's alert redraws must not hold back the
    edit that shows a person how the jobs they retried ended."""
    outbox, slack = channel
    redraws = [await outbox.submit("update", {"channel": "C1", "ts": f"2.{n}", "text": f"alert {n} redrawn"},
                                   news=True) for n in range(10)]
    await wait_until(lambda: len(slack.posted) >= 5, 10, "Slack's burst of edits gone", step=0.005)
    summary = await outbox.submit("update", {"channel": "C1", "ts": "3.1", "text": "summary: job-1 completed"})
    await asyncio.wait_for(asyncio.gather(*(f for _, f in [*redraws, summary])), 20)
    assert slack.posted.index("summary: job-1 completed") <= slack.posted.index("alert 6 redrawn"), slack.posted


async def test_calls_resumed_after_a_restart_keep_their_kind_so_a_handed_over_summary_still_goes_first(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    """A replica stopped with SIGTERM hands its queued calls over; the one resuming them must not take a run's
    summary, which someone waits on, for news: it would wait behind every alert redraw."""
    outbox, slack = channel
    now = outbox.clock()
    for n in range(10):
        await outbox.store.enqueue("update", "update", {"channel": "C1", "ts": f"2.{n}", "text": f"alert {n} redrawn"},
                                   now + n * 0.001, news=True)
    await outbox.store.enqueue("update", "update", {"channel": "C1", "ts": "3.1", "text": "summary: job-1 completed"},
                               now + 0.1)
    outbox.resume(await outbox.store.queued())
    await wait_until(lambda: len(slack.posted) == 11, 20, "every resumed call sent", step=0.005)
    assert slack.posted.index("summary: job-1 completed") <= slack.posted.index("alert 6 redrawn"), slack.posted


async def test_a_call_adopted_from_a_dead_replica_takes_its_place_by_when_it_was_queued(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    """Chaos seed 207735: a dead replica's reply, adopted here, used to wait behind everything this replica had queued
    in the channel since; the job's ending came after it, 45 s after the job ended."""
    outbox, slack = channel
    before = outbox.clock()
    mine = [await outbox.submit("post", {"channel": "C1", "text": f"retry {n}"}) for n in range(6)]
    await burst_gone(slack)
    await outbox.store.enqueue("post", "channel:C1", {"channel": "C1", "text": "dead replica's reply"}, before)
    outbox.resume(await outbox.store.queued())
    await asyncio.wait_for(asyncio.gather(*(f for _, f in mine)), 20)
    await wait_until(lambda: len(slack.posted) == 7, 10, "the adopted reply sent", step=0.005)
    assert slack.posted.index("dead replica's reply") == 3, slack.posted


async def test_a_post_with_an_earlier_turn_goes_ahead_of_what_was_queued_after_that_turn_only(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    outbox, slack = channel
    first = [await outbox.submit("post", {"channel": "C1", "text": f"retry {n}"}) for n in range(4)]
    turn = outbox.clock()
    later = [await outbox.submit("post", {"channel": "C1", "text": f"later {n}"}) for n in range(3)]
    await burst_gone(slack)
    ending = await outbox.submit("post", {"channel": "C1", "thread_ts": "1.1", "text": "job-0 completed"}, turn=turn)
    await asyncio.wait_for(asyncio.gather(*(f for _, f in [*first, *later, ending])), 20)
    assert slack.posted == ["retry 0", "retry 1", "retry 2", "retry 3", "job-0 completed", "later 0", "later 1",
                            "later 2"]


async def test_a_late_edit_merged_into_a_waiting_one_moves_it_up_to_the_earlier_turn(
        channel: tuple[Outbox, RecordingSlack]) -> None:
    """A run's tally queued at a takeover, then a job's ending told late merged into it: the merged edit goes at the
    ending's turn, not at the place the first edit took behind what was queued before it."""
    outbox, slack = channel
    turn = outbox.clock()
    others = [await outbox.submit("update", {"channel": "C1", "ts": f"2.{n}", "text": f"edit {n}"}) for n in range(8)]
    await outbox.submit("update", {"channel": "C1", "ts": "3.1", "text": "tally: 0 ended"}, coalesce="update:C1:3.1")
    await wait_until(lambda: len(slack.posted) >= 5, 10, "Slack's burst of edits gone", step=0.005)
    _, tally = await outbox.submit("update", {"channel": "C1", "ts": "3.1", "text": "tally: 4 completed"},
                                   coalesce="update:C1:3.1", turn=turn)
    await asyncio.wait_for(asyncio.gather(tally, *(f for _, f in others)), 20)
    assert "tally: 0 ended" not in slack.posted, "merged: one edit, with the newer text"
    assert slack.posted.index("tally: 4 completed") == 5, slack.posted
