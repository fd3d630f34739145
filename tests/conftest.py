"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from testkit.fakes import FakeRunPod, FakeSlack

pytest_plugins = ["testkit.pg"]  # pg_server (session), pg_url (a fresh database per test)

# ---- stand-in fixtures (tests/fakes): real aiohttp servers on 127.0.0.1 --------------------------------

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
RUNPOD_KEY = "rp-test-key"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(valid_tokens={BOT_TOKEN}, valid_app_tokens={APP_TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunPod]:
    fake = FakeRunPod(default_key=RUNPOD_KEY)
    await fake.start()
    yield fake
    await fake.stop()


# ---- end of stand-in fixtures --------------------------------------------------------------------------


# ---- the app under test ---------------------------------------------------------------------------------

@pytest.fixture
async def make_app(slack: FakeSlack, runpod: FakeRunPod, tmp_path):  # type: ignore[no-untyped-def]
    """Start the real app against the stand-ins: `app = await make_app(mode="socket", RUNPOD_X="…")`."""
    from testkit.harness import Harness

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
