"""Issue 18, the terminal command: `python -m bot retry` as a real process against the stand-ins. It follows a job
only with --follow (and then prints how it ended; Ctrl-C stops following cleanly), says plainly otherwise how to check
later, gives advice in terminal terms, names people instead of Slack user IDs, exits 3 when a retry's outcome is
unknown, and --json keeps every reason, a refusal's too."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from bot.store import SqliteStore
from testkit.env import BOT_TOKEN, RUNPOD_KEY, process_env, time_scale_settings

EP = "ep1"
HTML_502 = "<html><body><h1>502 Bad Gateway</h1></body></html>"


def environment(tmp_path: Path, runpod, **env: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Only the settings given (no .env, none inherited), on the RunPod stand-in's clock."""
    return process_env({"USER": "dana", "LOGNAME": "dana", "RUNPOD_API_KEY": RUNPOD_KEY, "RUNPOD_API_URL": runpod.url,
                        "RUNPOD_FOLLOW_INTERVAL": "0.05", "RUNPOD_RETRY_DB": str(tmp_path / "runpod-retry.db"),
                        "RUNPOD_TIMEOUT": "2", **time_scale_settings(runpod), **env})


async def run_bot(tmp_path: Path, runpod, *args: str, **env: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp_path, env=environment(tmp_path, runpod, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_without_follow_it_says_it_will_not_follow_and_how_to_check_later(tmp_path, runpod):
    runpod.add_job(EP, "job-1")

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1")

    assert code == 0, err
    assert "I'll follow" not in out and "post here" not in out
    assert "It is not followed from here: check how it ends with python -m bot status ep1 job-1" in out
    assert "/runpod-retry" not in out, "advice in terminal terms"
    assert runpod.calls_to("status") == [], "nothing waits on the job"


async def test_follow_prints_the_ending_and_exits_0_when_it_completed_1_when_it_failed_again(tmp_path, runpod):
    runpod.add_job(EP, "job-ok", after_retry=("IN_QUEUE", "IN_PROGRESS", "COMPLETED"))
    runpod.add_job(EP, "job-bad", after_retry=("IN_PROGRESS", "FAILED"),
                   final_error="Traceback (most recent call last):\n  File \"h.py\"\nValueError: width must be even")

    ok = await run_bot(tmp_path, runpod, "retry", EP, "job-ok", "--follow")
    bad = await run_bot(tmp_path, runpod, "retry", EP, "job-bad", "--follow")

    assert ok[0] == 0, ok
    assert "Following it until it ends" in ok[1] and "job job-ok is running" in ok[1]
    assert "completed: the retry worked: job job-ok on endpoint ep1 completed in 1.2 s." in ok[1]
    assert bad[0] == 1, bad
    assert "failed again: job job-bad on endpoint ep1 failed again: ValueError: width must be even" in bad[1]
    assert "python -m bot status ep1 job-bad" in bad[1]


async def test_ctrl_c_stops_following_cleanly_and_the_retry_stays(tmp_path, runpod):
    runpod.add_job(EP, "job-slow", after_retry=("IN_PROGRESS",) * 10_000 + ("COMPLETED",))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "retry", EP, "job-slow", "--follow", cwd=tmp_path,
        env=environment(tmp_path, runpod), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    seen = b""
    started = time.monotonic()
    while b"is running" not in seen and time.monotonic() - started < 30:
        seen += await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert b"is running" in seen, seen

    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)

    shown = (seen + out).decode()
    assert process.returncode == 0, err.decode()
    assert "Stopped following job job-slow on endpoint ep1: you stopped it (Ctrl-C)." in shown
    assert "It was last running. The retry stays requeued; check how it ends with python -m bot status ep1 job-slow" \
        in shown
    assert "Traceback" not in err.decode() and "KeyboardInterrupt" not in err.decode()
    assert runpod.job(EP, "job-slow").retries == 1


async def test_a_502_on_retry_is_outcome_unknown_exit_3_with_a_status_command_to_check(tmp_path, runpod):
    runpod.add_job(EP, "job-1")
    runpod.fault("retry", status=502, body=HTML_502, applied=True)  # it went through; the answer was lost
    runpod.fault("status", status=502, body=HTML_502)               # and the check after it failed too

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1")
    again = await run_bot(tmp_path, runpod, "retry", EP, "job-1", "--json")

    assert code == 3, (out, err)
    assert out.startswith("unknown, may have gone through: RunPod had a server error about job job-1")
    assert "check with python -m bot status ep1 job-1 before trying again" in out
    assert again[0] == 1, "the second try: RunPod says it is running now, so it is not retried"
    assert json.loads(again[1])["outcome"] == "not_retryable"


async def test_json_keeps_every_reason_refusals_too(tmp_path, runpod):
    runpod.add_job(EP, "job-1")
    await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.job(EP, "job-1").status = "FAILED"

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", "--json", RUNPOD_RETRY_MAX_PER_JOB="1")

    assert code == 1, err
    [line] = [json.loads(row) for row in out.splitlines()]
    assert line["outcome"] == "refused:budget" and line["may_have_gone_through"] is False
    assert "Retry limit reached (1 retry per job per hour); next allowed at" in line["reason"]
    assert "`" not in line["reason"] and "<!date" not in line["reason"] and "UTC" in line["reason"]


async def test_a_retry_under_way_in_slack_names_the_person_not_their_user_id(tmp_path, runpod, slack):
    runpod.add_job(EP, "job-1")
    slack.users["U0DANA42"] = {"real_name": "Dana Scully", "profile": {"display_name": "dana.s"}}
    store = SqliteStore(str(tmp_path / "runpod-retry.db"))
    await store.open()
    try:
        assert await store.claim(EP, "job-1", "U0DANA42", time.time()) is None  # being retried from Slack
    finally:
        await store.close()

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", SLACK_BOT_TOKEN=BOT_TOKEN,
                                   SLACK_API_URL=slack.api_url)

    assert code == 1, err
    assert "is being retried already (by dana.s (in Slack))" in out and "U0DANA42" not in out
    assert runpod.calls_to("retry") == []
