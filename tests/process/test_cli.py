"""`python -m bot alert …` as a real subprocess against the loopback Slack, then the app retrying that alert."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from bot.core import actions
from testkit.env import BOT_TOKEN, process_env, time_scale_settings
from testkit.harness import buttons, message_text


async def run_cli(tmp_path: Path, slack, *args: str, **env: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Run `python -m bot alert …` in tmp_path with only the settings given (no .env, no inherited ones)."""
    base = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url,
            "RUNPOD_RETRY_DB": str(tmp_path / "runpod-retry.db"), **time_scale_settings(slack)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "alert", *args, cwd=tmp_path, env=process_env({**base, **env}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_cli_posts_the_alert_says_where_and_the_app_retries_it_on_click(tmp_path, slack, runpod, make_app,
                                                                             mode):
    runpod.add_job("ep1", "job-9", status="TIMED_OUT", error="worker lost")

    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--status", "TIMED_OUT", "--error", "worker lost",
                                   "--channel", "C9")

    assert code == 0, err
    [alert] = [m for (channel, _), m in slack.messages.items() if channel == "C9"]
    assert f"channel C9, message ts {alert['ts']}" in out
    text = message_text(alert)
    for fact in ("ep1", "job-9", "TIMED OUT", "timed out", "worker lost", "retried until"):
        assert fact in text, f"{fact!r} missing:\n{text}"
    assert buttons(alert)[actions.RETRY]["value"] == "ep1/job-9"
    assert BOT_TOKEN not in out + err
    assert not runpod.calls

    app = await make_app(mode)
    ack = await app.click(actions.RETRY, "ep1/job-9", message_ts=alert["ts"], channel="C9", user="U7")
    await app.settle()

    assert ack.status == 200
    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [("ep1", "job-9")]
    replies = app.thread("C9", alert["ts"])
    assert "IN_QUEUE" in message_text(replies[0]) and "completed" in message_text(replies[-1])
    final = message_text(slack.messages[("C9", alert["ts"])])
    assert "<@U7>" in final and "completed" in final.lower()
    # The CLI's alert was adopted, not replaced: its facts survive the retry.
    assert "worker lost" in final
    assert len([1 for (channel, _), m in slack.messages.items() if channel == "C9" and not m.get("thread_ts")]) == 1


async def test_cli_uses_the_alert_channel_setting_and_a_second_run_does_not_post_twice(tmp_path, slack):
    first = await run_cli(tmp_path, slack, "ep1", "job-10", RUNPOD_ALERT_CHANNEL="CALERTS")
    second = await run_cli(tmp_path, slack, "ep1", "job-10", RUNPOD_ALERT_CHANNEL="CALERTS")

    assert first[0] == 0 and "Alert posted to channel CALERTS" in first[1], first
    assert second[0] == 0 and "already has an alert" in second[1] and "CALERTS" in second[1], second
    assert len(slack.calls_to("chat.postMessage")) == 1


@pytest.mark.parametrize("args, words", [
    (("ep1", "job 9"), "job ID"),
    (("ep/1", "job-9"), "endpoint ID"),
    (("ep1", "j" * 200), "at most 128"),
], ids=["space-in-job", "slash-in-endpoint", "too-long"])
async def test_cli_refuses_an_invalid_id_with_exit_2_and_posts_nothing(tmp_path, slack, args, words):
    code, out, err = await run_cli(tmp_path, slack, *args, "--channel", "C9")

    assert code == 2 and not out
    assert "Not posted" in err and words in err and "not valid" in err
    assert not slack.calls_to("chat.postMessage")


async def test_cli_without_a_channel_exits_2_and_says_how_to_give_one(tmp_path, slack):
    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9")

    assert code == 2 and not out
    assert "--channel" in err and "RUNPOD_ALERT_CHANNEL" in err
    assert not slack.calls


async def test_cli_with_an_unknown_status_exits_2(tmp_path, slack):
    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--status", "COMPLETED", "--channel", "C9")

    assert code == 2 and not out and "FAILED" in err and "TIMED_OUT" in err
    assert not slack.calls


async def test_cli_without_a_bot_token_lists_what_is_missing(tmp_path, slack):
    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--channel", "C9", SLACK_BOT_TOKEN="")

    assert code == 2 and not out and "SLACK_BOT_TOKEN" in err and "Traceback" not in err
    assert not slack.calls


async def test_cli_with_a_wrong_token_says_so_and_posts_nothing(tmp_path, slack):
    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--channel", "C9",
                                   SLACK_BOT_TOKEN="xoxb-revoked")

    assert code == 2 and "SLACK_BOT_TOKEN" in err and "invalid_auth" in err
    assert "xoxb-revoked" not in out + err
    assert not slack.calls_to("chat.postMessage")


async def test_cli_in_a_channel_the_app_is_not_in_exits_1_says_to_invite_it_and_posts_once_invited(tmp_path, slack):
    slack.not_in_channel.add("C9")

    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--channel", "C9")

    assert code == 1 and "C9" in err and re.search(r"invite", err)
    assert "Traceback" not in err

    slack.not_in_channel.discard("C9")
    code, out, err = await run_cli(tmp_path, slack, "ep1", "job-9", "--channel", "C9")

    assert code == 0 and "Alert posted to channel C9" in out, err
