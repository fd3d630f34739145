"""The pacer (bot/slack/pacing.py): changes merged and spaced out; `written` waits for what was marked, at its pace."""

from __future__ import annotations

import asyncio

from bot.infra.tasks import Background
from bot.slack.pacing import Pacer
from bot.store import StoreUnavailable


async def test_written_waits_for_the_marked_parts_at_the_pacers_pace() -> None:
    written: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    async def write(part: str, _turn: float | None) -> None:
        written.append((part, loop.time()))

    pacer = Pacer(write, Background(), "a message", interval=0.2, wait_first=True)
    started = loop.time()
    pacer.mark("parent")
    pacer.mark("summary")
    await asyncio.wait_for(pacer.written(), 2.0)
    assert [part for part, _ in written] == ["parent", "summary"]
    assert written[0][1] - started >= 0.19 and written[1][1] - written[0][1] >= 0.19, "never faster than its pace"


async def test_a_change_made_while_its_part_is_written_is_waited_for_too() -> None:
    """The part was drawn before the change: `written` returns only once a write that covers it has finished."""
    written: list[str] = []
    drawing = asyncio.Event()
    go_on = asyncio.Event()

    async def write(part: str, _turn: float | None) -> None:
        written.append(part)
        if len(written) == 1:
            drawing.set()
            await go_on.wait()

    pacer = Pacer(write, Background(), "a message", interval=0.01)
    pacer.mark("parent")
    await drawing.wait()
    pacer.mark("parent")  # a job ended while the first write was drawing
    waiting = asyncio.create_task(pacer.written())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    go_on.set()
    await asyncio.wait_for(waiting, 1.0)
    assert written == ["parent", "parent"]


async def test_written_waits_through_a_database_outage_and_returns_after_a_write_that_failed_for_good() -> None:
    outcomes: list[Exception | None] = [StoreUnavailable("away"), StoreUnavailable("away"), None, ValueError("bug")]
    tried: list[str] = []

    async def write(part: str, _turn: float | None) -> None:
        tried.append(part)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    pacer = Pacer(write, Background(), "a message", interval=0.01)
    pacer.mark("parent")
    await asyncio.wait_for(pacer.written(), 1.0)
    assert tried == ["parent"] * 3, "tried again until the database took it"
    pacer.mark("summary")
    await asyncio.wait_for(pacer.written(), 1.0)  # the write failed for good (logged): nothing to wait for
    assert tried[-1] == "summary"


async def test_a_write_gets_the_earliest_turn_marked_since_the_last_write_once() -> None:
    """A late ending's turn reaches the one write that shows it (`Outbox.submit`); later writes go in line again."""
    turns: list[tuple[str, float | None]] = []

    async def write(part: str, turn: float | None) -> None:
        turns.append((part, turn))

    pacer = Pacer(write, Background(), "a message", interval=0.01)
    pacer.mark("parent", turn=20.0)
    pacer.mark("parent", turn=10.0)
    pacer.mark("parent")
    await asyncio.wait_for(pacer.written(), 1.0)
    pacer.mark("parent")
    await asyncio.wait_for(pacer.written(), 1.0)
    assert turns == [("parent", 10.0), ("parent", None)]
