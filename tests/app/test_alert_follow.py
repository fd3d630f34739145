"""A retried alert follows its job to the end through RunPod's and Slack's faults, and stays current: past its
deadline, after an unexpected failure, a redelivered original failure, or an ending seen outside the app."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.core import actions
from testkit.fakes.slack import SlackFault
from testkit.harness import alert_completed, buttons, job_calls, message_text
from tests.app.alerting import (
    ALERTS,
    EP,
    FAILED_BODY,
    alert_via_webhook,
    click_retry,
    current,
    private_texts,
)


async def test_following_survives_5xx_429_and_timeouts_on_status_and_still_reports_completed(
        make_app, mode, slack, runpod):
    app = await make_app(mode, RUNPOD_TIMEOUT="0.3", RUNPOD_MAX_ATTEMPTS="1", RUNPOD_FOLLOW_INTERVAL="0.01")
    alert = await alert_via_webhook(app, runpod, "job-p1", after_retry=("IN_PROGRESS", "IN_PROGRESS", "COMPLETED"))
    runpod.fault("status", status=500)
    runpod.fault("status", status=503)
    runpod.fault("status", status=429, headers={"Retry-After": "0"})
    runpod.fault("status", delay=1.0)

    await click_retry(app, alert)
    await app.settle(timeout=15)

    statuses = [c.status for c in runpod.calls_to("status")]
    assert statuses[:3] == [500, 503, 429] and statuses[-1] == 200, runpod.describe()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "completed" in thread.splitlines()[-1] or "completed" in message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "stopped following" not in thread
    assert alert_completed(current(app, alert))


async def test_status_checks_that_keep_failing_are_mentioned_once_and_following_goes_on(make_app, slack, runpod):
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.01")
    alert = await alert_via_webhook(app, runpod, "job-p4", after_retry=("COMPLETED",))
    runpod.fault("status", status=502, times=5)  # the fifth failure in a row is the one worth a word

    await click_retry(app, alert)
    await app.settle(timeout=15)

    texts = [message_text(m) for m in app.thread(ALERTS, alert["ts"])]
    trouble = [t for t in texts if "keeps failing" in t]
    assert len(trouble) == 1 and "job-p4" in trouble[0] and "keep trying" in trouble[0], texts
    assert "completed" in texts[-1]
    assert alert_completed(current(app, alert))


async def test_a_job_that_never_ends_is_given_up_on_and_the_thread_says_how_to_check(make_app, mode, slack, runpod):
    app = await make_app(mode, RUNPOD_FOLLOW_MAX="0.5")
    alert = await alert_via_webhook(app, runpod, "job-p2", after_retry=("IN_PROGRESS",) * 1000)

    await click_retry(app, alert)
    await app.settle()

    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "stopped following" in last and "Last known state: running" in last
    assert "/runpod-retry status ep1 job-p2" in last
    assert "1 minutes" not in last
    final = current(app, alert)
    assert "Running" in message_text(final) and actions.STATUS in buttons(final)
    assert app.rt.follower.following(EP, "job-p2") is None


async def test_a_retried_job_that_gets_cancelled_is_not_called_a_failure_and_is_not_offered_again(app, runpod):
    alert = await alert_via_webhook(app, runpod, "job-p3", after_retry=("IN_PROGRESS", "CANCELLED"))

    await click_retry(app, alert, user="U7")
    await app.settle()

    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "cancelled" in last and "<@U7>" in last and "again" not in last
    assert "can still be retried" not in last
    final = current(app, alert)
    assert "was cancelled" in message_text(final) and actions.RETRY not in buttons(final)


async def test_slack_refusing_chat_update_does_not_stop_the_retry_or_its_report(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-u1")
    slack.script("chat.update", *[SlackFault(error="cant_update_message")] * 20)

    ack = await click_retry(app, alert)
    await app.settle()

    assert ack.status == 200
    assert len(runpod.calls_to("retry")) == 1
    replies = app.thread(ALERTS, alert["ts"])
    assert "IN_QUEUE" in message_text(replies[0]) and "completed" in message_text(replies[-1])
    assert all(c.error == "cant_update_message" for c in slack.calls_to("chat.update"))
    # The app keeps serving: a new failure still gets its alert.
    await alert_via_webhook(app, runpod, "job-u2")
    assert (await app.get("/healthz"))[0] == 200


@pytest.mark.parametrize("status, expect", [("COMPLETED", "completed in 4.3 s"), ("FAILED", "again")])
async def test_webhook_for_a_followed_job_updates_the_same_alert_and_ends_the_follow(
        make_app, mode, slack, runpod, status, expect):
    app = await make_app(mode, RUNPOD_FOLLOW_INTERVAL="0.2")
    alert = await alert_via_webhook(app, runpod, "job-w1", after_retry=("IN_PROGRESS",) * 1000)
    await click_retry(app, alert, user="U7")
    await runpod.wait_calls("status", 1)
    job = runpod.job(EP, "job-w1")
    job.pending.clear()
    job.status = status
    body: dict[str, Any] = {"id": "job-w1", "status": status, "delayTime": 10, "executionTime": 4321}
    body |= {"output": {"ok": True}} if status == "COMPLETED" else {"error": "worker lost"}

    code, answer = await app.webhook(EP, body)

    assert code == 200 and answer["result"] == "followed"
    await app.settle(timeout=3)
    assert len(app.top_level(ALERTS)) == 1, slack.describe()
    assert app.rt.follower.following(EP, "job-w1") is None
    final = message_text(current(app, alert))
    assert expect in final
    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert status in last or status.lower() in last
    if status == "FAILED":
        assert "worker lost" in last and "<@U7>" in last
        assert actions.RETRY in buttons(current(app, alert))


async def test_an_alert_past_its_retry_deadline_is_redrawn_without_retry(make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-old")
    assert actions.RETRY in buttons(current(app, alert))

    later = time.time() + 31 * 60
    app.rt.desk.clock = lambda: later
    assert await app.rt.desk.sweep_expired() == 1
    assert await app.rt.desk.sweep_expired() == 0  # once is enough
    await app.settle()

    now_shown = current(app, alert)
    assert actions.RETRY not in buttons(now_shown) and actions.STATUS in buttons(now_shown)
    assert "cannot be retried" in message_text(now_shown)
    assert runpod.calls_to("retry") == []


async def test_an_unexpected_failure_mid_retry_never_leaves_the_alert_saying_retrying(make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-bug")

    async def broken(endpoint: str, job: str) -> None:
        raise RuntimeError("a bug")

    app.rt.service.call_retry = broken
    ack = await click_retry(app, alert)
    await app.settle()

    shown = message_text(current(app, alert))
    assert "Retrying" not in shown and "unexpected error" in shown and "Status" in shown
    assert actions.RETRY in buttons(current(app, alert))
    assert "Something went wrong" in private_texts(app, ack)
    # The app keeps serving: the next click (with the bug gone) retries.
    del app.rt.service.call_retry
    await click_retry(app, alert, user="U8")
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1


async def test_the_original_failure_redelivered_after_a_successful_retry_does_not_say_failed_again(
        make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-late")
    await click_retry(app, alert)
    await app.settle()
    assert "completed" in message_text(current(app, alert))

    # RunPod's last delivery of the original failure arrives late (it retries up to twice, 10 s apart).
    status, answer = await app.webhook(EP, {"id": "job-late", **FAILED_BODY})
    await app.settle()

    assert status == 200, answer
    assert "completed" in message_text(current(app, alert))
    assert "again" not in message_text(current(app, alert))
    assert len(app.top_level(ALERTS)) == 1


@pytest.mark.parametrize(("status", "shown"), [("COMPLETED", "Retried outside this app; completed"),
                                               ("CANCELLED", "Outside this app, it was cancelled")])
async def test_a_job_that_ends_outside_the_app_settles_its_alert(make_app, slack, runpod, status, shown):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-elsewhere")
    assert actions.RETRY in buttons(current(app, alert))

    # Someone retried it with RunPod's API directly; RunPod's webhook reports the end.
    code, answer = await app.webhook(EP, {"id": "job-elsewhere", "status": status, "executionTime": 900})
    await app.settle()

    assert code == 200, answer
    assert shown in message_text(current(app, alert))
    assert actions.RETRY not in buttons(current(app, alert))
    assert len(app.top_level(ALERTS)) == 1 and job_calls(runpod) == []

