"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import TEST_TIME_SCALE
from tests.fakes import FakeRunPod, FakeSlack

pytest_plugins = ["tests.pg"]  # pg_server (session), pg_url (a fresh database per test)

# ---- stand-in fixtures (tests/fakes): real aiohttp servers on 127.0.0.1 --------------------------------

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
RUNPOD_KEY = "rp-test-key"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_time: the stand-ins (and the app started against them) run on real time, "
                            "not TEST_TIME_SCALE: for tests of the platforms' real limits")
    config.addinivalue_line("markers", "time_scale(factor): the stand-ins (and the app) run on this clock instead of "
                            "TEST_TIME_SCALE, for a test that waits on pacing it does not test")


@pytest.fixture
def time_scale(request: pytest.FixtureRequest) -> float:
    """The stand-ins' clock, which every app started against them follows (tests.harness.time_scale_env)."""
    if request.node.get_closest_marker("real_time"):
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


# ---- end of stand-in fixtures --------------------------------------------------------------------------


# ---- the app under test ---------------------------------------------------------------------------------

@pytest.fixture
async def make_app(slack: FakeSlack, runpod: FakeRunPod, tmp_path):  # type: ignore[no-untyped-def]
    """Start the real app against the stand-ins: `app = await make_app(mode="socket", RUNPOD_X="…")`."""
    from tests.harness import Harness

    started: list[Harness] = []

    async def factory(mode: str = "http", **env: str) -> Harness:
        harness = Harness(slack, runpod, tmp_path, mode, **env)
        started.append(harness)
        return await harness.start()

    yield factory
    for harness in started:
        await harness.stop()


@pytest.fixture(params=["http", "socket"])
async def app(request, make_app):  # type: ignore[no-untyped-def]
    """The app in each Slack mode."""
    return await make_app(request.param)
