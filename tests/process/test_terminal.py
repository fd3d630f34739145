"""Issue 12, item 5: `python -m bot retry …` and `python -m bot status …` as real subprocesses against the RunPod (and
Slack) stand-ins: the same ID checks, endpoint allowlist, budget and audit as in Slack, RunPod's JSON printed, exit
codes 0 (all requeued), 1 (any refused), 2 (usage or configuration)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bot.store import SqliteStore
from testkit.env import BOT_TOKEN, RUNPOD_KEY, process_env, time_scale_settings
from testkit.harness import message_text

EP = "ep1"


async def run_bot(tmp_path: Path, runpod, *args: str, **env: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """`python -m bot <args>` in tmp_path with only the settings given (no .env, nothing inherited)."""
    base = {"USER": "dana", "LOGNAME": "dana", "RUNPOD_API_KEY": RUNPOD_KEY, "RUNPOD_API_URL": runpod.url,
            "RUNPOD_RETRY_DB": str(tmp_path / "runpod-retry.db"), "RUNPOD_TIMEOUT": "2", **time_scale_settings(runpod)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp_path, env=process_env({**base, **env}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def audit_rows(tmp_path: Path) -> list[dict]:
    store = SqliteStore(str(tmp_path / "runpod-retry.db"))
    await store.open()
    try:
        return await store.history(50)
    finally:
        await store.close()


async def test_retry_requeues_prints_runpods_json_exits_0_and_is_audited_as_the_login_name(tmp_path, runpod):
    runpod.add_job(EP, "job-1")

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1")

    assert code == 0, err
    assert "requeued: Job job-1 on endpoint ep1 was requeued: it is waiting in the queue" in out
    assert "RunPod's answer (HTTP 200):" in out and '"status": "IN_QUEUE"' in out
    [call] = runpod.calls_to("retry")
    assert (call.endpoint, call.job, call.authorization) == (EP, "job-1", f"Bearer {RUNPOD_KEY}")
    [row] = await audit_rows(tmp_path)
    assert (row["user"], row["source"], row["channel"], row["outcome"], row["called"]) == (
        "cli:dana", "cli", "", "requeued", 1)
    assert RUNPOD_KEY not in out + err


async def test_several_jobs_one_refused_exits_1_and_prints_each_answer_as_json(tmp_path, runpod):
    runpod.add_job(EP, "job-a")
    runpod.add_job(EP, "job-b", status="COMPLETED", error=None)

    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-a,job-b", "job-c", "job-a", "--json")

    assert code == 1, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["job"], d["outcome"]) for d in lines] == [("job-a", "requeued"), ("job-b", "not_retryable"),
                                                         ("job-c", "not_found")]
    assert lines[0]["body"] == {"id": "job-a", "status": "IN_QUEUE"} and lines[2]["http_status"] == 404
    assert [c.job for c in runpod.calls_to("retry")] == ["job-a", "job-b", "job-c"], "duplicates dropped"


@pytest.mark.parametrize(("args", "says"), [
    (("retry", EP, "job!1"), "it contains '!'"),
    (("retry", "e p", "job-1"), "endpoint ID"),
    (("retry", EP, "https://api.runpod.ai/v2/ep2/status/job-1"), "one endpoint"),
    (("status", EP, "job-1", "job-2"), "unrecognized arguments"),
    (("retry", EP), "the following arguments are required"),
], ids=["bad-job", "bad-endpoint", "two-endpoints", "status-two-jobs", "no-job"])
async def test_bad_input_exits_2_and_reaches_nothing(tmp_path, runpod, args, says):
    code, out, err = await run_bot(tmp_path, runpod, *args)

    assert code == 2 and not out and says in err, err
    assert runpod.calls == []


async def test_an_endpoint_outside_the_allowlist_exits_2_and_reaches_nothing(tmp_path, runpod):
    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_ENDPOINTS="ep2,ep3")

    assert code == 2 and not out and "not set up to call endpoint ep1" in err and "RUNPOD_RETRY_ENDPOINTS" in err
    assert runpod.calls == []


async def test_without_an_api_key_it_says_which_setting_and_exits_2(tmp_path, runpod):
    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_API_KEY="")

    assert code == 2 and not out and "RUNPOD_API_KEY" in err and "Traceback" not in err
    assert runpod.calls == []


async def test_the_hourly_budget_applies_across_runs(tmp_path, runpod):
    runpod.add_job(EP, "job-1")

    first = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.job(EP, "job-1").status = "FAILED"  # it failed again
    second = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_MAX_PER_JOB="1")

    assert first[0] == 0 and second[0] == 1
    assert "refused:budget" in second[1] and "already retried once in the last hour" in second[1]
    assert len(runpod.calls_to("retry")) == 1
    assert [r["outcome"] for r in await audit_rows(tmp_path)] == ["refused:budget", "requeued"]


async def test_a_retry_runpod_refused_does_not_use_up_the_budget(tmp_path, runpod):
    runpod.add_job(EP, "job-1", status="IN_PROGRESS")  # still running: RunPod refuses the retry

    first = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.job(EP, "job-1").status = "FAILED"  # now it failed
    second = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_RETRY_MAX_PER_JOB="1")

    assert first[0] == 1 and second[0] == 0, (first, second)
    assert len(runpod.requeued(EP)) == 1


async def test_status_prints_the_json_changes_nothing_and_exits_0_or_1(tmp_path, runpod):
    runpod.add_job(EP, "job-1", error="CUDA out of memory")

    code, out, err = await run_bot(tmp_path, runpod, "status", EP, "job-1")
    missing = await run_bot(tmp_path, runpod, "status", EP, "job-x", "--json")

    assert code == 0, err
    assert "Job job-1 on endpoint ep1 failed: CUDA out of memory" in out and '"status": "FAILED"' in out
    assert runpod.calls_to("retry") == [] and runpod.job(EP, "job-1").status == "FAILED"
    assert missing[0] == 1 and json.loads(missing[1])["outcome"] == "not_found"
    assert await audit_rows(tmp_path) == [], "a status check is not an attempt"


async def test_runpod_unreachable_exits_3_in_words(tmp_path, runpod):
    code, out, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", RUNPOD_API_URL="http://127.0.0.1:9/v2")

    # Issue 18: whether a retry whose connection failed reached RunPod is unknown: exit 3, not 1.
    assert code == 3 and "Could not reach RunPod" in out and "Traceback" not in err


async def test_the_audit_channel_gets_the_line_and_the_app_shows_it_in_history(tmp_path, runpod, slack, make_app):
    runpod.add_job(EP, "job-1")

    code, _, err = await run_bot(tmp_path, runpod, "retry", EP, "job-1", SLACK_BOT_TOKEN=BOT_TOKEN,
                                 SLACK_API_URL=slack.api_url, RUNPOD_AUDIT_CHANNEL="CAUDIT")

    assert code == 0, err
    [line] = [m for (channel, _), m in slack.messages.items() if channel == "CAUDIT"]
    assert "`cli:dana` from a terminal outside Slack" in message_text(line)
    app = await make_app("http")  # the app on the same database
    ack = await app.command("history", channel="C1")
    await app.settle()
    shown = message_text(app.responses(ack.response_url)[0])
    assert "`cli:dana`" in shown and "outside Slack, from a terminal" in shown and "<@cli" not in shown
