"""The pytest fixtures every tier shares (loaded by tests/conftest.py as a plugin): the stand-ins, and the app.

    time_scale        the stand-ins' clock: TEST_TIME_SCALE; 1 in the limits tier and for `real_time` tests;
                      `@pytest.mark.time_scale(f)` for one test (the apps started against them follow it)
    slack, runpod     the loopback stand-ins (real aiohttp servers on 127.0.0.1), fresh for each test
    make_app          starts the real app in-process against them: `await make_app("socket", RUNPOD_X="…")`
    mode              "http" and "socket": a test that takes it runs once in each Slack mode
    app               the app in the test's mode, with the test settings (testkit/env.py)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from testkit.env import APP_TOKEN, BOT_TOKEN, RUNPOD_KEY, TEST_TIME_SCALE
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.harness import Harness

MakeApp = Callable[..., Awaitable[Harness]]


@pytest.fixture
def time_scale(request: pytest.FixtureRequest) -> float:
    """The stand-ins' clock, which every app started against them follows (testkit.env.app_settings)."""
    if request.node.get_closest_marker("limits") or request.node.get_closest_marker("real_time"):
        return 1.0
    marker = request.node.get_closest_marker("time_scale")
    return float(marker.args[0]) if marker else TEST_TIME_SCALE


@pytest.fixture
async def slack(time_scale: float) -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(valid_tokens={BOT_TOKEN}, valid_app_tokens={APP_TOKEN}, time_scale=time_scale)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def runpod(time_scale: float) -> AsyncIterator[FakeRunPod]:
    fake = FakeRunPod(default_key=RUNPOD_KEY, time_scale=time_scale)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_app(slack: FakeSlack, runpod: FakeRunPod, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """Start the real app against the stand-ins: `app = await make_app(mode="socket", RUNPOD_X="…")`."""
    started: list[Harness] = []

    async def factory(mode: str = "http", **env: str) -> Harness:
        harness = Harness(slack, runpod, tmp_path, mode, **env)
        started.append(harness)
        return await harness.start()

    yield factory
    for harness in started:
        await harness.stop()


@pytest.fixture(params=["http", "socket"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each Slack mode: signed HTTP requests into /slack/events, and Socket Mode envelopes."""
    return str(request.param)


@pytest.fixture
async def app(mode: str, make_app: MakeApp) -> Harness:
    """The app in each Slack mode."""
    return await make_app(mode)
