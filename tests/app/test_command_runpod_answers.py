"""Every answer RunPod gives a `/runpod-retry` is explained in the command's thread and the app keeps serving:
refusals, HTML error pages, 429s (the client's back-off on its own), and a lost answer to a retry that went
through."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.fakes import FakeRunPod
from testkit.harness import ACK_DEADLINE, message_text
from tests.app.commanding import (
    HTML_500,
    HTML_502,
    TAG,
    assert_still_serving,
    first_reply,
    slack_messages_text,
)


def _unauthorized(runpod: FakeRunPod) -> None:
    runpod.api_keys["ep1"] = "rp-some-other-account-key"  # our key is not valid for this endpoint


def _forbidden(runpod: FakeRunPod) -> None:
    runpod.fault("retry", status=403, body={"error": "API key does not have access to this endpoint"})


def _rate_limited_twice(runpod: FakeRunPod) -> None:
    runpod.fault("retry", status=429, body={"error": "too many requests"}, headers={"Retry-After": "0"}, times=2)


FAULT_CASES: list[tuple[str, Any, dict[str, str], list[str], int]] = [
    # (id, setup, env, phrases the thread must contain, RunPod /retry calls)
    ("401", _unauthorized, {}, ["HTTP 401", "RUNPOD_API_KEY", "refused the API key"], 1),
    ("403", _forbidden, {}, ["HTTP 403", "RUNPOD_API_KEY", "refused the API key"], 1),
    ("404", lambda rp: rp.expire("ep1", "job-x"), {}, ["HTTP 404", "expired", "30 minutes", "does not know"], 1),
    ("429-then-ok", _rate_limited_twice, {}, ["throttling", "queued", "HTTP 200", "was requeued",
                                              '"status": "IN_QUEUE"'], 3),
    ("500-html", lambda rp: rp.fault("retry", status=500, body=HTML_500), {},
     ["HTTP 500", "server error", "500 Internal Server Error upstream worker crashed"], 1),
    ("502-html", lambda rp: rp.fault("retry", status=502, body=HTML_502), {},
     ["HTTP 502", "server error", "502 Bad Gateway"], 1),
    ("timeout", lambda rp: rp.fault("retry", delay=1.0), {"RUNPOD_TIMEOUT": "0.3"},
     ["did not answer in time", "/runpod-retry status ep1 job-x"], 1),
    ("reset", lambda rp: rp.fault("retry", reset=True), {},
     ["Could not reach RunPod", "still shows the job as failed", "status ep1 job-x"], 1),
    ("garbage-2xx", lambda rp: rp.fault("retry", garbage=True), {}, ["HTTP 200", "not with JSON", "oops"], 1),
]


@pytest.mark.parametrize(("setup", "env", "phrases", "retry_calls"), [c[1:] for c in FAULT_CASES],
                         ids=[c[0] for c in FAULT_CASES])
async def test_each_runpod_answer_is_explained_in_the_thread_and_the_app_keeps_serving(
        make_app, runpod, slack, setup, env, phrases, retry_calls):
    app = await make_app("http", **env)
    runpod.add_job("ep1", "job-x", status="FAILED")
    setup(runpod)

    ack = await app.command("ep1 job-x")

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    await app.settle()
    assert len(runpod.calls_to("retry")) == retry_calls, runpod.describe()
    parent, replies = first_reply(app)
    result = "\n".join(message_text(reply) for reply in replies)
    for phrase in phrases:
        assert phrase in result, f"{phrase!r} not in:\n{result}"
    assert "job-x" in message_text(parent) and "ep1" in result
    everything = slack_messages_text(slack)
    assert not TAG.search(everything) and "&lt;html" not in everything and "&lt;h1" not in everything
    assert not slack.rejected()
    await assert_still_serving(app, runpod)


async def test_429s_until_the_jobs_retry_window_closes_say_rate_limited_and_the_app_keeps_serving(
        make_app, runpod, slack):
    app = await make_app("http", RUNPOD_MAX_ATTEMPTS="3")
    app.rt.service.retry_window = 6.0 * app.rt.timing.scale  # RunPod keeps a job 30 minutes; six (scaled) seconds
    runpod.add_job("ep1", "job-x", status="FAILED")
    # No Retry-After: the app backs off 0.5 s, 1 s, 2 s, 4 s (scaled): four tries fit in the window on an idle
    # machine, and at least three on a busy one. RunPod throttles until the window has closed.
    runpod.fault("retry", status=429, body="Too Many Requests", times=50)

    ack = await app.command("ep1 job-x")
    await app.settle(timeout=20)

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    assert len(runpod.calls_to("retry")) >= 3, "429s are waited out, not given up on after a few tries"
    _parent, replies = first_reply(app)
    texts = [message_text(r) for r in replies]
    assert "throttling" in texts[0] and "queued" in texts[0]
    # The window has closed: waiting would not help, and the reply says so instead of "wait and try again".
    assert "HTTP 429" in texts[-1] and "rate-limiting" in texts[-1] and "can no longer be retried" in texts[-1]
    assert "Wait" not in texts[-1]
    assert not slack.rejected()
    runpod.heal()
    await assert_still_serving(app, runpod)


async def test_a_refused_retry_of_a_completed_job_says_it_completed(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-done", status="COMPLETED", output={"images": 2})

    await app.command("ep1 job-done")
    await app.settle()

    assert [c.status for c in runpod.calls_to("retry")] == [400]
    assert [c.job for c in runpod.calls_to("status")] == ["job-done"]  # asked why, did not retry again
    _parent, [reply] = first_reply(app)
    text = message_text(reply)
    assert "HTTP 400" in text and "COMPLETED" in text and "nothing to retry" in text
    assert "only a failed or timed-out job can be retried" in text
    assert runpod.job("ep1", "job-done").retries == 0
    await assert_still_serving(app, runpod)


async def test_a_refused_retry_of_a_running_job_says_it_is_running(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-run", status="IN_PROGRESS", after_retry=())

    await app.command("ep1 job-run")
    await app.settle()

    _parent, [reply] = first_reply(app)
    text = message_text(reply)
    assert "HTTP 400" in text and "IN_PROGRESS" in text and "running" in text


async def test_429_without_retry_after_backs_off_exponentially_and_retry_after_is_capped(runpod):
    from bot.infra.timing import REAL
    from bot.runpod import RunPodClient, RunPodRateLimited
    from bot.runpod.limits import RunPodLimits

    waits: list[float] = []
    slept = [1000.0]

    async def record(seconds: float) -> None:
        waits.append(seconds)
        slept[0] += seconds

    # The limiter's own pause after a 429 runs on a clock that the recorded waits move forward.
    limits = RunPodLimits(clock=lambda: slept[0])
    client = RunPodClient(runpod.url, "rp-test-key", max_attempts=4, backoff_base=0.5, sleep=record,
                          rate_limits=limits)
    runpod.add_job("ep1", "job-1", status="FAILED")
    try:
        runpod.fault("retry", status=429, times=4)
        with pytest.raises(RunPodRateLimited) as caught:
            await client.retry("ep1", "job-1")
        assert caught.value.status == 429
        assert len(runpod.calls_to("retry")) == 4 and len(waits) == 3
        for wait, base in zip(waits, (0.5, 1.0, 2.0), strict=True):
            assert base <= wait <= base * 1.25

        waits.clear()
        slept[0] += 10  # the pause RunPod asked for after the last 429 has passed
        runpod.fault("retry", status=429, headers={"Retry-After": "3600"})
        runpod.fault("retry", status=429, headers={"Retry-After": "soon"})
        reply = await client.retry("ep1", "job-1")
        assert reply.http_status == 200 and reply.job_status == "IN_QUEUE"
        assert waits[0] == REAL.runpod_max_retry_after and 1.0 <= waits[1] <= 1.25
    finally:
        await client.aclose()


LOST_ANSWERS = [{"reset": True}, {"garbage": True}, {"status": 502, "body": "<html>Bad Gateway</html>"}]


@pytest.mark.parametrize("fault", LOST_ANSWERS, ids=["reset", "garbage", "502"])
async def test_a_lost_answer_to_a_retry_that_went_through_is_settled_by_a_status_check(make_app, runpod, fault):
    """RunPod requeued the job but its answer never arrived intact: the app checks /status, says the retry
    went through, and follows the job instead of inviting a second retry."""
    app = await make_app("http")
    runpod.add_job("ep1", "job-lost", status="FAILED")
    runpod.fault("retry", applied=True, **fault)

    await app.command("ep1 job-lost")
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1
    [parent] = app.top_level("C1")
    thread = app.thread_text("C1", parent["ts"])
    assert "the retry went through" in thread and "is now running" in thread
    assert "The retry worked" in thread and "completed" in thread
    assert runpod.job("ep1", "job-lost").status == "COMPLETED"

