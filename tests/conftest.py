"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeRunPod, FakeSlack

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
