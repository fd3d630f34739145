"""The pacer (bot/slack/pacing.py): changes merged and spaced out, and written at once when asked (`flush`)."""

from __future__ import annotations

import asyncio

from bot.infra.tasks import Background
from bot.slack.pacing import Pacer


async def test_flush_writes_what_changed_at_once_whatever_the_interval() -> None:
    written: list[str] = []

    async def write(part: str) -> None:
        written.append(part)

    pacer = Pacer(write, Background(), "a message", interval=60.0, wait_first=True)
    pacer.mark("parent")
    pacer.mark("summary")
    pacer.mark("parent")  # merged with the waiting one
    await asyncio.wait_for(pacer.flush(), 1.0)
    assert written == ["parent", "summary"]
    await asyncio.sleep(0.05)
    assert written == ["parent", "summary"], "the paced writer found nothing left to write"


async def test_a_change_made_while_flush_writes_its_part_is_written_again() -> None:
    """The part's state was drawn before the change: dropping the new mark would leave Slack showing the old one."""
    written: list[str] = []
    drawing = asyncio.Event()
    go_on = asyncio.Event()

    async def write(part: str) -> None:
        written.append(part)
        if len(written) == 1:
            drawing.set()
            await go_on.wait()

    pacer = Pacer(write, Background(), "a message", interval=0.01)
    pacer.mark("parent")
    flushing = asyncio.create_task(pacer.flush())
    await drawing.wait()
    pacer.mark("parent")  # a job ended while the first write was drawing
    go_on.set()
    await asyncio.wait_for(flushing, 1.0)
    await asyncio.sleep(0.1)
    assert written == ["parent", "parent"]


async def test_a_flush_that_fails_leaves_its_part_to_be_written() -> None:
    written: list[str] = []
    fail = [True]

    async def write(part: str) -> None:
        if fail.pop() if fail else False:
            raise ConnectionError("the database is away")
        written.append(part)

    pacer = Pacer(write, Background(), "a message", interval=0.01, wait_first=True)
    pacer.mark("parent")
    try:
        await pacer.flush()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the flush's caller is told")
    await asyncio.wait_for(pacer.flush(), 1.0)
    assert written == ["parent"]
