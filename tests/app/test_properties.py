"""Property-based tests (hypothesis) against one real app (HTTP mode) and its loopback stand-ins: arbitrary webhook
bodies, webhook URLs and command text never escape as an exception and never send an invalid ID to RunPod.

The app is started once for this module on an event loop in a background thread, so hypothesis can drive it
synchronously. The same properties of the core alone are in tests/unit/core/test_properties.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.env import APP_TOKEN, BOT_TOKEN, RUNPOD_KEY, TEST_TIME_SCALE
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.limits import SlackLimits
from testkit.harness import Harness
from tests.strategies import (
    ID_RE,
    any_ids,
    assert_postable,
    command_texts,
    huge_texts,
    json_values,
    numbers,
    statuses,
    texts,
)

T = TypeVar("T")
LIVE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- a live app: the webhook and the command


class LiveApp:
    """The real app (HTTP mode) and its stand-ins on an event loop in a background thread."""

    def __init__(self, tmp: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live app", daemon=True)
        self.thread.start()
        # Hundreds of generated commands into one channel: these properties are about what is accepted and said,
        # not pacing (tests/test_limits.py covers that), so Slack's per-channel rate is left out here.
        self.slack = FakeSlack(valid_tokens={BOT_TOKEN}, valid_app_tokens={APP_TOKEN}, limits=SlackLimits.off(),
                               time_scale=TEST_TIME_SCALE)
        self.runpod = FakeRunPod(default_key=RUNPOD_KEY, time_scale=TEST_TIME_SCALE)
        self.run(self.slack.start())
        self.run(self.runpod.start())
        self.runpod.add_job("ep1", "job-1", status="FAILED", after_retry=("COMPLETED",))
        self.app = self.run(Harness(self.slack, self.runpod, tmp, "http").start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.app.stop())
            self.run(self.runpod.stop())
            self.run(self.slack.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    def invalid_ids_at_runpod(self) -> list[tuple[str, str | None]]:
        return [(c.endpoint, c.job) for c in self.runpod.calls
                if not ID_RE.match(c.endpoint) or (c.job is not None and not ID_RE.match(c.job))]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    app = LiveApp(tmp_path_factory.mktemp("live"))
    yield app
    app.close()


job_like = st.fixed_dictionaries(
    {"id": any_ids | texts | st.integers() | st.none(), "status": statuses | st.integers() | st.none()},
    optional={"error": json_values, "delayTime": numbers, "executionTime": numbers, "output": json_values,
              "retries": st.integers()},
)
failures = st.fixed_dictionaries(
    {"id": any_ids, "status": st.sampled_from(["FAILED", "TIMED_OUT", "failed"])},
    optional={"error": huge_texts | json_values, "delayTime": numbers, "executionTime": numbers,
              "workerId": texts},
)
webhook_bodies = (failures.map(json.dumps) | json_values.map(json.dumps) | job_like.map(json.dumps)
                  | st.binary(max_size=300) | texts.map(lambda t: t.encode("utf-8")))


@LIVE
@given(webhook_bodies)
def test_any_webhook_body_is_answered_200_or_400_and_never_reaches_runpod_with_a_bad_id(live: LiveApp,
                                                                                      body: str | bytes) -> None:
    status, answer = live.run(live.app.webhook("ep1", body))
    assert status in (200, 400), (status, answer)
    assert live.invalid_ids_at_runpod() == []


@LIVE
@given(st.text(min_size=1, max_size=150), job_like.map(json.dumps))
def test_any_endpoint_in_the_webhook_url_is_refused_or_valid(live: LiveApp, endpoint: str, body: str) -> None:
    status, answer = live.run(live.app.webhook(quote(endpoint, safe=""), body))
    if ID_RE.match(endpoint):
        assert status in (200, 400), (status, answer)
    else:
        # Not an ID: refused as malformed, or not found when the path is not this route at all (".", "a/b").
        assert status in (400, 404), (status, answer)
    assert live.invalid_ids_at_runpod() == []


@LIVE
@given(command_texts)
def test_any_command_text_is_acked_and_only_valid_ids_reach_runpod(live: LiveApp, text: str) -> None:
    ack = live.run(live.app.command(text))
    assert ack.status == 200, ack
    if ack.body:  # answered in the ack itself: help or a usage error
        assert_postable({"text": ack.body.get("text", ""), "blocks": ack.body.get("blocks", [])})
    assert live.invalid_ids_at_runpod() == []


def test_the_live_app_posted_nothing_slack_refused_and_is_still_healthy(live: LiveApp) -> None:
    # Runs after the live properties above (same module, same app): whatever they threw at it, it is healthy.
    live.run(live.app.settle(timeout=60), timeout=90)
    status, _ = live.run(live.app.get("/healthz"))
    assert status == 200
    assert live.slack.rejected() == [], live.slack.describe()
    assert live.invalid_ids_at_runpod() == []
