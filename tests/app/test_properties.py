"""Property-based tests (hypothesis): arbitrary input never escapes as an exception, never sends an invalid ID
to RunPod, and never produces a message Slack would refuse.

The webhook and command properties run against one real app (HTTP mode) and its loopback stand-ins, started
once for this module on an event loop in a background thread, so hypothesis can drive it synchronously.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.core import messages
from bot.core.alerts import Alert, Phase
from bot.core.commands import CheckHealth, Help, History, Retry, RetryFailed, Status, UsageError, parse_command
from bot.core.ids import MAX_ID_LENGTH
from bot.core.outcome import Kind, Outcome
from testkit.env import APP_TOKEN, BOT_TOKEN, RUNPOD_KEY, TEST_TIME_SCALE
from testkit.fakes import FakeRunPod, FakeSlack, block_problems
from testkit.fakes.limits import SlackLimits
from testkit.harness import Harness

T = TypeVar("T")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIVE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- strategies

ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_ID_LENGTH)
longest_ids = st.text(alphabet=ID_CHARS, min_size=MAX_ID_LENGTH, max_size=MAX_ID_LENGTH)
any_ids = ids | longest_ids


def repeated(pieces: st.SearchStrategy[str], most: int) -> st.SearchStrategy[str]:
    """Long text cheaply: a short piece repeated up to `most` times (Slack limits are in the thousands)."""
    return st.tuples(pieces, st.integers(1, most)).map(lambda t: t[0] * t[1])


# Characters that matter to Slack (mrkdwn escapes, code fences, mentions) and to the parser (separators, links).
TRICKY = ["&", "<", ">", "```", "`", "*", "_", "~", "<!channel>", "<@U1>", "\n", "\t", " ", ",", "/", "|",
          "&amp;", "é", "🙂", "\u200b", "\\", '"', "'", "{", "}"]
texts = st.text(max_size=300) | st.lists(st.sampled_from(TRICKY) | st.text(max_size=8), max_size=40).map("".join)
huge_texts = texts | repeated(st.sampled_from(TRICKY) | st.text(min_size=1, max_size=10), 6000)

WORDS = ["status", "history", "failed", "help", "health", "STATUS", "-h", "?", "30m", "2h", "90s", "0", "50", "51",
         "https://api.runpod.ai/v2/ep1/status/job-1", "<https://api.runpod.ai/v2/ep1/retry/job-2|link>",
         "http://example.com/x", "ep1 job-1", "ep1/job-3", "ep1/", "/job", "ep2/job-4", "<ep1>", "a" * 129]
command_texts = texts | st.lists(st.sampled_from(WORDS) | any_ids | st.text(max_size=12),
                                 max_size=12).map(lambda words: " ".join(words))

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | texts)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=20), inner, max_size=6), max_leaves=30)
long_bodies = st.builds(lambda job, piece, n, extra: {"id": job, "status": "COMPLETED", "output": piece * n,
                                                      **extra},
                        ids, st.text(min_size=1, max_size=10), st.integers(1, 20_000),
                        st.dictionaries(st.text(max_size=10), json_scalars, max_size=5))
many_keys = st.integers(1, 3000).map(lambda n: {f"key{i}": "value & <tag>" for i in range(n)})
bodies = json_values | long_bodies | many_keys
statuses = st.sampled_from(["FAILED", "TIMED_OUT", "COMPLETED", "CANCELLED", "IN_QUEUE", "IN_PROGRESS"]) | texts
times = st.floats(min_value=0, max_value=4_000_000_000)
numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**12, 10**12)

alerts = st.builds(
    Alert, endpoint=any_ids, job=any_ids, channel=ids, status=st.sampled_from(["FAILED", "TIMED_OUT"]) | texts,
    ended_at=times, error=st.none() | huge_texts, delay_ms=numbers, execution_ms=numbers, ts=st.none() | ids,
    thread_ts=st.none() | ids, phase=st.sampled_from(list(Phase)), actor=st.none() | any_ids,
    acted_at=st.none() | times, job_status=st.none() | statuses, note=st.none() | huge_texts,
    retry_offered=st.booleans(), retries=st.integers(0, 1000),
)
outcomes = st.builds(
    Outcome, kind=st.sampled_from(list(Kind)), endpoint=any_ids, job=any_ids, summary=huge_texts,
    advice=huge_texts, http_status=st.none() | st.integers(100, 599), job_status=st.none() | statuses,
    body=st.none() | bodies, excerpt=huge_texts,
)
history_rows = st.lists(st.fixed_dictionaries({
    "at": times, "user": any_ids, "channel": ids, "endpoint": any_ids, "job": any_ids,
    "source": st.sampled_from(["command", "button", "bulk", "retry_all"]), "outcome": texts,
    "called": st.integers(0, 1), "http_status": st.none() | st.integers(100, 599),
    "job_status": st.none() | statuses, "detail": st.none() | huge_texts,
}), max_size=50)


# ---------------------------------------------------------------- what Slack accepts


def assert_postable(msg: dict[str, Any]) -> None:
    """Slack would take this message: slack_sdk's Block Kit validation, the stand-in's limits, ≤ 50 blocks."""
    assert isinstance(msg["text"], str) and msg["text"].strip()
    assert len(msg["text"]) <= 40_000
    blocks = msg["blocks"]
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert block_problems(blocks) == []
    json.dumps(msg)  # it can be sent at all


# ---------------------------------------------------------------- the parser


@PROPS
@given(command_texts)
def test_any_text_is_a_command_with_valid_ids_or_a_usage_error(text: str) -> None:
    try:
        command = parse_command(text)
    except UsageError as exc:
        assert exc.problem
        assert_postable(messages.usage_error(exc.problem))
        return
    assert isinstance(command, Help | Retry | Status | History | RetryFailed | CheckHealth)
    if isinstance(command, Retry):
        assert command.jobs and all(ID_RE.match(job) for job in command.jobs)
        assert len(set(command.jobs)) == len(command.jobs)
    if isinstance(command, Retry | Status | RetryFailed | CheckHealth):
        assert ID_RE.match(command.endpoint)
    if isinstance(command, Status):
        assert ID_RE.match(command.job)


@PROPS
@given(any_ids, st.lists(any_ids, min_size=1, max_size=20), st.sampled_from([" ", ",", "\n", " , "]))
def test_valid_ids_always_parse_to_exactly_those_ids(endpoint: str, jobs: list[str], sep: str) -> None:
    if endpoint.lower() in ("help", "retry", "status", "history", "failed", "health") or endpoint in ("-h",):
        return  # reserved words are commands, not endpoints
    command = parse_command(endpoint + " " + sep.join(jobs))
    assert command == Retry(endpoint, tuple(dict.fromkeys(jobs)))


# ---------------------------------------------------------------- every message the app would post


@PROPS
@given(huge_texts)
def test_usage_error_messages_are_postable_whatever_the_problem_text(problem: str) -> None:
    assert_postable(messages.usage_error(problem or "empty"))


@PROPS
@given(alerts, times)
def test_alert_messages_are_postable_for_any_field_values(alert: Alert, now: float) -> None:
    msg = messages.alert_message(alert, now)
    assert_postable(msg)
    assert alert.job[:100] in json.dumps(msg)  # the job is named, even a 128-character one


@PROPS
@given(outcomes, st.sampled_from(["", "Retry 3/5: "]), st.none() | huge_texts)
def test_outcome_messages_are_postable_for_any_runpod_answer(outcome: Outcome, prefix: str,
                                                              note: str | None) -> None:
    assert_postable(messages.outcome_message(outcome, prefix=prefix, attach_note=note))


@PROPS
@given(any_ids, any_ids, st.dictionaries(st.text(max_size=20), json_values, max_size=6), statuses,
       st.none() | json_values, st.none() | any_ids)
def test_follow_outcome_messages_are_postable_for_any_final_json(endpoint: str, job: str, extra: dict[str, Any],
                                                                  status: str, error: Any, actor: str | None) -> None:
    body = {**extra, "id": job, "status": status}
    if error is not None:
        body["error"] = error
    assert_postable(messages.follow_outcome(endpoint, job, body, actor))


@PROPS
@given(long_bodies | many_keys, any_ids, any_ids)
def test_follow_outcome_messages_are_postable_for_very_long_json(body: dict[str, Any], endpoint: str,
                                                                 job: str) -> None:
    assert_postable(messages.follow_outcome(endpoint, job, body, "U1"))


@PROPS
@given(history_rows, st.integers(1, 50))
def test_history_messages_are_postable_for_any_rows(rows: list[dict[str, Any]], limit: int) -> None:
    assert_postable(messages.history_message(rows, limit))


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
