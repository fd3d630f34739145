"""Retry policies (RUNPOD_RETRY_POLICIES): a matched failure is retried without waking anyone, shown on its alert at
each step, and handed to people (Retry back, a message that notifies) when the policy is spent, stopped or skipped.
The app runs its workflows on the durable-work engine (SQLite here; PostgreSQL and replicas in tests/process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.core import actions
from testkit.env import TEST_TIME_SCALE
from testkit.harness import Harness, buttons, message_text

EP = "ep1"
ALERTS = "CALERTS"
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"

POLICIES = """
[[policy]]
name = "oom-twice"
endpoints = ["ep1"]
errors = ["CUDA out of memory"]
max_attempts = 2
delay = "10s"
mode = "on"

[[policy]]
name = "anything-dry"
endpoints = ["*"]
errors = ["re:Worker .* (died|lost)"]
max_attempts = 1
delay = "10s"
mode = "dry-run"
"""


@pytest.fixture
def auto_env(tmp_path: Path) -> dict[str, str]:
    """The policy file; tests/process/test_auto_retry_postgres.py adds a PostgreSQL database to it."""
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    return {"RUNPOD_RETRY_POLICIES": str(path)}


@pytest.fixture
async def auto_app(make_app, auto_env: dict[str, str]) -> Harness:  # type: ignore[no-untyped-def]
    return await make_app("http", **auto_env)


async def fail(app: Harness, job: str, error: str = OOM, **job_options: Any) -> dict[str, Any]:
    """RunPod fails `job` and calls the webhook; returns the alert as first posted."""
    app.runpod.add_job(EP, job, status="FAILED", error=error, **job_options)
    status, answer = await app.webhook(EP, {"id": job, "status": "FAILED", "error": error})
    assert status == 200, answer
    await app.slack.wait_for(lambda s: [m for m in app.top_level(ALERTS) if job in message_text(m)])
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


def now_of(app: Harness, alert: dict[str, Any]) -> dict[str, Any]:
    return app.slack.messages[(ALERTS, alert["ts"])]


async def until(app: Harness, alert: dict[str, Any], words: str, timeout: float = 15.0) -> dict[str, Any]:  # noqa: ASYNC109
    await app.slack.wait_for(lambda s: words in message_text(now_of(app, alert)), timeout=timeout)
    return now_of(app, alert)


async def test_a_matched_failure_is_retried_automatically_and_nobody_is_asked(auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-oom", after_retry=("IN_PROGRESS", "COMPLETED"))
    first = message_text(alert)
    assert "Auto-retrying (1 of 2)" in first and "policy `oom-twice`" in first
    assert "Auto-retrying (1 of 2)" in alert["text"]  # what a phone shows: no action needed
    assert set(buttons(alert)) == {actions.AUTO_STOP, actions.STATUS}  # Stop, and no Retry to race the policy
    assert not auto_app.runpod.calls_to("retry")  # the delay first

    done = await until(auto_app, alert, "Completed after automatic retry 1 of 2")
    assert [c.job for c in auto_app.runpod.calls_to("retry")] == ["job-oom"]
    assert actions.RETRY not in buttons(done)
    # The result RunPod returned is in the alert's thread, as for a click.
    thread = auto_app.thread_text(ALERTS, alert["ts"])
    assert "IN_QUEUE" in thread or "requeued" in thread.lower()
    # Nothing asked for a person: no broadcast message.
    assert not [c for c in auto_app.slack.calls_to("chat.postMessage") if c.args.get("reply_broadcast")]

    ack = await auto_app.command("history 5")
    said = auto_app.everything_sent_to_slack() + ack.text
    assert "policy `oom-twice`" in said or "policy:oom-twice" in said


async def test_every_attempt_failing_again_hands_the_alert_to_people_with_one_notifying_message(
        auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-bad", after_retry=("IN_PROGRESS", "FAILED"))
    await until(auto_app, alert, "Auto-retrying (2 of 2)")
    handed = await until(auto_app, alert, "Over to you", timeout=20)
    assert len(auto_app.runpod.calls_to("retry")) == 2  # max_attempts, not one more
    assert actions.RETRY in buttons(handed) and actions.AUTO_STOP not in buttons(handed)
    assert "All 2 automatic retries failed again" in message_text(handed)
    await auto_app.slack.wait_for(lambda s: [c for c in s.calls_to("chat.postMessage")
                                             if c.args.get("reply_broadcast")])
    [wake] = [c for c in auto_app.slack.calls_to("chat.postMessage") if c.args.get("reply_broadcast")]
    assert wake.args["thread_ts"] == alert["ts"] and "needs a person" in message_text(wake.args)
    await asyncio.sleep(1.0)
    assert len(auto_app.runpod.calls_to("retry")) == 2


async def test_stop_during_the_delay_sends_nothing_and_gives_retry_back(auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-stop")
    ack = await auto_app.click(actions.AUTO_STOP, buttons(alert)[actions.AUTO_STOP]["value"],
                               message_ts=alert["ts"], user="U7")
    assert ack.status == 200
    stopped = await until(auto_app, alert, "Stopped by <@U7>")
    assert actions.RETRY in buttons(stopped)
    await asyncio.sleep(2.0)  # past the policy's delay (1 s on the tests' clock)
    assert not auto_app.runpod.calls_to("retry")


async def test_a_dry_run_policy_says_what_it_would_do_and_does_nothing(auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-dry", error="Worker 7 died unexpectedly")
    text = message_text(alert)
    assert "Dry run: policy `anything-dry` would retry this automatically" in text
    assert actions.RETRY in buttons(alert)
    await asyncio.sleep(2.0)
    assert not auto_app.runpod.calls_to("retry")


async def test_a_failure_no_policy_matches_is_todays_alert(auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-plain", error="ValueError: bad input")
    assert "Auto-retrying" not in message_text(alert) and actions.RETRY in buttons(alert)
    await asyncio.sleep(2.0)
    assert not auto_app.runpod.calls_to("retry")


async def test_a_webhook_delivered_twice_gives_one_automatic_retry(auto_app: Harness) -> None:
    auto_app.runpod.add_job(EP, "job-twice", status="FAILED", error=OOM, after_retry=("IN_PROGRESS", "COMPLETED"))
    body = {"id": "job-twice", "status": "FAILED", "error": OOM}
    answers = await asyncio.gather(auto_app.webhook(EP, body), auto_app.webhook(EP, body))
    assert [status for status, _ in answers] == [200, 200]
    await auto_app.slack.wait_for(lambda s: [m for m in auto_app.top_level(ALERTS) if "job-twice" in message_text(m)])
    [alert] = [m for m in auto_app.top_level(ALERTS) if "job-twice" in message_text(m)]
    await until(auto_app, alert, "Completed after automatic retry")
    await asyncio.sleep(1.0)
    assert len(auto_app.runpod.calls_to("retry")) == 1


async def test_the_hourly_budget_counts_automatic_retries(make_app, auto_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    app = await make_app("http", **auto_env, RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await fail(app, "job-budget", after_retry=("IN_PROGRESS", "FAILED"))
    handed = await until(app, alert, "Over to you", timeout=20)
    assert len(app.runpod.calls_to("retry")) == 1  # the second attempt would break the budget
    assert "already retried" in message_text(handed).lower() or "retry limit" in message_text(handed).lower() \
        or "1 retry" in message_text(handed).lower()


async def test_a_restart_during_the_delay_retries_once_after_it(auto_app: Harness) -> None:
    alert = await fail(auto_app, "job-restart", after_retry=("IN_PROGRESS", "COMPLETED"))
    await auto_app.restart()
    await until(auto_app, alert, "Completed after automatic retry", timeout=20)
    await asyncio.sleep(1.0)
    assert len(auto_app.runpod.calls_to("retry")) == 1


async def test_a_restart_during_the_delay_keeps_the_time_the_alert_promised(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The wait survives the restart as a time, not as seconds: the restarted app waits out what is left of it."""
    path = tmp_path / "slow.toml"
    path.write_text(POLICIES.replace('delay = "10s"', 'delay = "40s"', 1))
    app = await make_app("http", RUNPOD_RETRY_POLICIES=str(path))
    delay = 40 * TEST_TIME_SCALE
    failed = time.monotonic()
    alert = await fail(app, "job-later", after_retry=("IN_PROGRESS", "COMPLETED"))
    await app.restart()
    assert time.monotonic() < failed + delay  # still in the delay (else this proves nothing)
    await until(app, alert, "Completed after automatic retry", timeout=20)
    [retry] = app.runpod.calls_to("retry")
    assert failed + delay <= retry.at <= failed + delay + 1.0


async def test_paused_by_on_call_a_matched_failure_is_alerted_for_people_and_resumed_it_is_retried_again(
        auto_app: Harness) -> None:
    ack = await auto_app.command("auto pause ep1 1h", user="U7")
    assert ack.status == 200
    await auto_app.settle()
    alert = await fail(auto_app, "job-paused")
    text = message_text(alert)
    assert "Auto-retrying" not in text and "paused" in text and "<@U7>" in text
    assert actions.RETRY in buttons(alert)
    await asyncio.sleep(2.0)
    assert not auto_app.runpod.calls_to("retry")

    await auto_app.command("auto resume ep1", user="U7")
    await auto_app.settle()
    again = await fail(auto_app, "job-resumed", after_retry=("IN_PROGRESS", "COMPLETED"))
    assert "Auto-retrying (1 of 2)" in message_text(again)
    await until(auto_app, again, "Completed after automatic retry")
    assert [c.job for c in auto_app.runpod.calls_to("retry")] == ["job-resumed"]


async def test_retries_that_keep_failing_trip_the_breaker_once_and_no_more_automatic_retries_go_out(
        auto_app: Harness) -> None:
    jobs = [f"job-brk-{i}" for i in range(6)]
    alerts = [await fail(auto_app, job, after_retry=("IN_PROGRESS", "FAILED")) for job in jobs]
    # Each job may be retried twice; the fifth failure again of the endpoint's automatic retries trips the breaker,
    # before the second attempts' delay is over.
    await auto_app.slack.wait_for(lambda s: [m for m in auto_app.top_level(ALERTS)
                                             if "paused" in message_text(m) and "Auto-retrying" not in
                                             message_text(m) and m["ts"] not in {a["ts"] for a in alerts}],
                                  timeout=30)
    at_notice = len(auto_app.runpod.calls_to("retry"))
    for alert in alerts:
        await until(auto_app, alert, "Over to you", timeout=30)
    sent = len(auto_app.runpod.calls_to("retry"))
    assert sent == at_notice  # nothing left for RunPod once the breaker had tripped, not even a waiting attempt
    assert len(jobs) <= sent < 2 * len(jobs)  # the first attempts went; second ones stopped at the trip
    [notice] = [m for m in auto_app.top_level(ALERTS) if m["ts"] not in {a["ts"] for a in alerts}]
    assert ("failed again" in message_text(notice) and actions.AUTO_RESUME in message_text(notice)) \
        or any(el.get("action_id") == actions.AUTO_RESUME for b in notice.get("blocks") or []
               for el in ([b.get("accessory")] if b.get("accessory") else []))

    later = await fail(auto_app, "job-after-trip")
    assert "paused" in message_text(later) and "breaker" in message_text(later)
    await asyncio.sleep(2.0)
    assert len(auto_app.runpod.calls_to("retry")) == sent


async def test_an_endpoint_whose_health_warns_is_not_retried_automatically(auto_app: Harness) -> None:
    auto_app.runpod.set_health(EP, "throttled")
    alert = await fail(auto_app, "job-sick")
    handed = await until(auto_app, alert, "Over to you")
    assert "health warns" in message_text(handed)
    assert not auto_app.runpod.calls_to("retry")


async def test_the_retry_goes_while_slack_still_holds_back_the_alert_and_its_result_lands_in_the_alerts_thread(
        auto_app: Harness) -> None:
    from testkit.fakes.slack import SlackFault

    auto_app.slack.script("chat.postMessage", *[SlackFault(503)] * 7)  # the alert waits out Slack's trouble
    auto_app.runpod.add_job(EP, "job-slow-slack", status="FAILED", error=OOM, after_retry=("IN_PROGRESS", "COMPLETED"))
    status, _ = await auto_app.webhook(EP, {"id": "job-slow-slack", "status": "FAILED", "error": OOM})
    assert status == 200
    await auto_app.runpod.wait_calls("retry", 1, timeout=15)
    assert not auto_app.top_level(ALERTS)  # RunPod was not kept waiting for Slack
    await auto_app.slack.wait_for(lambda s: auto_app.top_level(ALERTS), timeout=30)
    [alert] = auto_app.top_level(ALERTS)
    await until(auto_app, alert, "Completed after automatic retry", timeout=30)
    await auto_app.settle()
    assert len(auto_app.top_level(ALERTS)) == 1  # the result went in the alert's thread, not beside it
    assert "job-slow-slack" in auto_app.thread_text(ALERTS, alert["ts"])
