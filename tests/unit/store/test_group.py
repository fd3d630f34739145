"""Group commit: requests acknowledged together are written down in one transaction, each with its own answer."""

from __future__ import annotations

import asyncio

import pytest

from bot.store.group import GroupCommit


async def test_writes_that_arrive_together_go_as_one_batch_and_each_gets_its_own_result() -> None:
    batches: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    first = await asyncio.gather(*(group(n) for n in range(50)))
    assert first == [n * 10 for n in range(50)]
    assert batches == [list(range(50))]

    # Those arriving while a batch is being written wait for the next one, all together.
    head = asyncio.ensure_future(group(100))
    await asyncio.sleep(0.001)
    later = await asyncio.gather(*(group(n) for n in range(101, 111)))
    assert (await head, later) == (1000, [n * 10 for n in range(101, 111)])
    assert batches[1:] == [[100], list(range(101, 111))]


async def test_a_failed_batch_fails_each_of_its_writers_and_the_next_batch_is_written() -> None:
    failing = True

    async def write(items: list[str]) -> list[str]:
        if failing:
            raise ConnectionError("the database went away")
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(write)
    results = await asyncio.gather(group("a"), group("b"), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    failing = False
    assert await asyncio.gather(group("c"), group("d")) == ["C", "D"]


async def test_a_batch_answering_the_wrong_number_of_results_is_an_error_for_its_writers() -> None:
    async def write(items: list[int]) -> list[int]:
        return items[:1]

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(ValueError):
        await asyncio.gather(group(1), group(2))
