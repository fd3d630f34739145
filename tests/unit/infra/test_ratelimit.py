"""The RunPod window counts a call from when its answer lands: RunPod counted it somewhere between send and answer."""

from __future__ import annotations

import asyncio

from bot.infra.ratelimit import Window


async def _call(window: Window, hold: float, started: list[float]) -> None:
    loop = asyncio.get_running_loop()
    async with window.slot():
        started.append(loop.time())
        await asyncio.sleep(hold)


async def test_a_slow_call_holds_its_place_until_its_answer_lands_then_for_a_whole_window():
    loop = asyncio.get_running_loop()
    window = Window(limit=2, window=0.3, concurrent=10)
    began = loop.time()
    started: list[float] = []
    # Two slow calls use the allowance; the third may only go a whole window after the first of them lands.
    await asyncio.gather(*(_call(window, 0.2, started) for _ in range(3)))
    first_landed = began + 0.2
    assert started[2] - first_landed >= 0.3 - 0.01, "counted from when it was sent, as RunPod may not"


async def test_fast_calls_use_the_whole_allowance_without_waiting():
    loop = asyncio.get_running_loop()
    window = Window(limit=5, window=5.0, concurrent=5)
    began = loop.time()
    started: list[float] = []
    await asyncio.gather(*(_call(window, 0.0, started) for _ in range(5)))
    assert max(started) - began < 0.1


async def test_a_429_halves_the_allowance_and_pauses():
    loop = asyncio.get_running_loop()
    window = Window(limit=10, window=5.0, concurrent=5)
    window.throttled(0.2)
    assert window.allowance == 5
    began = loop.time()
    started: list[float] = []
    await _call(window, 0.0, started)
    assert started[0] - began >= 0.2 - 0.01
