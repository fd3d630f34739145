"""Retry policies (RUNPOD_RETRY_POLICIES): a matched failure is retried without waking anyone, shown on its alert at
each step, and handed to people (Retry back, a message that notifies) when the policy is spent, stopped or skipped.
The app runs its workflows on the durable-work engine (SQLite here; PostgreSQL and replicas in tests/process)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.core import actions
from testkit.harness import Harness, message_text

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


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


@pytest.fixture
async def auto_app(make_app, tmp_path: Path) -> Harness:  # type: ignore[no-untyped-def]
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    return await make_app("http", RUNPOD_RETRY_POLICIES=str(path))


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


async def test_the_hourly_budget_counts_automatic_retries(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    app = await make_app("http", RUNPOD_RETRY_POLICIES=str(path), RUNPOD_RETRY_MAX_PER_JOB="1")
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
