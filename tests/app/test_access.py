"""Who may retry, the retry budget, the audit trail and history, several RunPod accounts.

The access settings a real process refuses at start are in tests/process/test_access_settings_at_start.py.

Everything over real loopback HTTP against the Slack and RunPod stand-ins.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from itertools import pairwise
from typing import Any

import pytest

from bot.core import actions
from testkit.env import SECRETS
from testkit.fakes.slack import SlackFault
from testkit.harness import button_value, job_calls, message_text


def history_rows(app: Any, url: str) -> list[str]:
    """The attempts `history` showed through the response_url: two cells each (when, who, where | what, which)."""
    [reply] = app.responses(url)
    cells = [f["text"] for block in reply["blocks"] for f in block.get("fields") or []]
    return [cells[n] + "\n" + cells[n + 1] for n in range(0, len(cells), 2)]


def private_replies(app: Any, url: str) -> list[str]:
    """What reached the person through the response_url; asserts every one was ephemeral."""
    replies = app.responses(url)
    assert all(r.get("response_type") == "ephemeral" for r in replies), replies
    return [message_text(r) for r in replies]


def channel_posts(slack: Any) -> list[Any]:
    """Anything the app put in a channel for everyone to see (posts, updates, in_channel responses)."""
    shown = ("chat.postMessage", "chat.update", "files.completeUploadExternal")
    visible = [c for c in slack.calls if c.method in shown]
    visible += [c for c in slack.calls if c.method == "response_url" and c.args.get("response_type") == "in_channel"]
    return visible


async def alert_for(app: Any, endpoint: str, job: str) -> dict[str, Any]:
    """Post a failure alert through RunPod's webhook and return the alert message as posted."""
    status, _ = await app.webhook(endpoint, {"id": job, "status": "FAILED", "error": "CUDA out of memory"})
    assert status == 200
    await app.settle()
    [alert] = [m for m in app.top_level("CALERTS") if job in message_text(m)]
    return alert


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_user_not_on_the_list_is_refused_privately_for_retry_status_bulk_and_both_buttons(make_app, runpod,
                                                                                                 slack, mode):
    slack.usergroups = {"S1": ["U7"]}
    for job in ("job-1", "job-2", "job-3"):
        runpod.add_job("ep1", job, status="FAILED")
    app = await make_app(mode, RUNPOD_RETRY_ALLOWED_USERS="U1,U2", RUNPOD_RETRY_ALLOWED_USERGROUPS="S1")
    alert = await alert_for(app, "ep1", "job-1")
    before = len(channel_posts(slack))

    acks = [await app.command("ep1 job-1", user="U9", channel="C1"),
            await app.command("status ep1 job-1", user="U9", channel="C1"),
            await app.command("ep1 job-1 job-2 job-3", user="U9", channel="C1"),
            await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U9"),
            await app.click(actions.STATUS, button_value(alert, actions.STATUS), message_ts=alert["ts"], user="U9")]
    await app.settle()

    assert job_calls(runpod) == [], runpod.describe()
    assert channel_posts(slack)[before:] == [], slack.describe()
    assert app.top_level("C1") == []
    for n, ack in enumerate(acks):
        [told] = private_replies(app, ack.response_url)
        # A status check is refused in words about status checks, not about retrying (issue 14).
        may = "may use this app, status checks included" if n in (1, 4) else "may retry"
        assert f"not on the list of people who {may}" in told
        assert "<@U1>" in told and "<@U2>" in told and "<!subteam^S1>" in told
    assert "Retrying" not in message_text(app.posts("CALERTS")[0])


async def test_allowed_user_is_not_refused(make_app, runpod):
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_USERS="U1")

    ack = await app.command("ep1 job-1", user="U1")
    await app.settle()

    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [("ep1", "job-1")]
    assert app.responses(ack.response_url) == []


async def test_user_group_member_may_retry_and_the_group_is_fetched_once_for_several_commands(make_app, runpod,
                                                                                               slack):
    slack.usergroups = {"S1": ["U7", "U8"]}
    slack.script("usergroups.users.list", SlackFault(delay=0.3))  # slow, so the first two overlap
    for job in ("job-1", "job-2", "job-3"):
        runpod.add_job("ep1", job, status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_USERS="U1", RUNPOD_RETRY_ALLOWED_USERGROUPS="S1")

    await asyncio.gather(app.command("ep1 job-1", user="U7"), app.command("ep1 job-2", user="U8"))
    await app.settle()
    await app.command("ep1 job-3", user="U7")
    await app.settle()

    assert sorted(c.job for c in runpod.calls_to("retry")) == ["job-1", "job-2", "job-3"]
    assert [c.args.get("usergroup") for c in slack.calls_to("usergroups.users.list")] == ["S1"]
    parents = [message_text(m) for m in app.top_level("C1")]
    assert len(parents) == 3 and any("<@U7>" in p for p in parents) and any("<@U8>" in p for p in parents)


async def test_when_slack_cannot_list_the_group_the_member_is_told_so_and_nothing_is_called(make_app, runpod, slack):
    slack.usergroups = {"S1": ["U7"]}
    slack.script("usergroups.users.list", SlackFault(error="missing_scope"))
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_USERGROUPS="S1")

    ack = await app.command("ep1 job-1", user="U7")
    await app.settle()

    assert runpod.calls == []
    [told] = private_replies(app, ack.response_url)
    assert "could not check your user-group membership" in told and "<!subteam^S1>" in told

    again = await app.command("ep1 job-1", user="U7")  # Slack answers now: the failure was not cached
    await app.settle()
    assert [c.job for c in runpod.calls_to("retry")] == ["job-1"]
    assert app.responses(again.response_url) == []


async def test_non_member_of_the_group_is_refused_with_the_group_named(make_app, runpod, slack):
    slack.usergroups = {"S1": ["U7"]}
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_USERGROUPS="S1")

    ack = await app.command("ep1 job-1", user="U8")
    await app.settle()

    assert runpod.calls == []
    [told] = private_replies(app, ack.response_url)
    assert "<!subteam^S1>" in told


async def test_disallowed_channel_is_refused_before_runpod_and_names_the_allowed_channels(make_app, runpod, slack):
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")

    ack = await app.command("ep1 job-1", user="U1", channel="CRANDOM")
    await app.settle()

    assert runpod.calls == []
    assert channel_posts(slack) == []
    [told] = private_replies(app, ack.response_url)
    assert "not enabled in this channel" in told and "<#COPS>" in told

    ok = await app.command("ep1 job-1", user="U1", channel="COPS")
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1
    assert app.responses(ok.response_url) == []


async def test_endpoint_not_configured_is_refused_before_runpod(make_app, runpod, slack):
    runpod.add_job("epX", "job-1", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ENDPOINTS="ep1,ep2")

    ack = await app.command("epX job-1", user="U1")
    status_ack = await app.command("status epX job-1", user="U1")
    await app.settle()

    assert runpod.calls == []
    assert channel_posts(slack) == []
    for a in (ack, status_ack):
        [told] = private_replies(app, a.response_url)
        assert "epX" in told and "RUNPOD_RETRY_ENDPOINTS" in told


async def test_start_up_log_says_everyone_may_retry_when_no_list_is_set(make_app, caplog):
    caplog.set_level(logging.INFO)
    await make_app()
    assert "everyone in the workspace may retry" in caplog.text


async def test_start_up_log_says_who_may_retry_when_a_list_is_set(make_app, caplog):
    caplog.set_level(logging.INFO)
    await make_app(RUNPOD_RETRY_ALLOWED_USERS="U1,U2")
    assert "everyone in the workspace" not in caplog.text
    assert "2 users and 0 user groups may retry" in caplog.text


# ---------------------------------------------------------------- retry budget


async def test_third_retry_within_the_hour_is_refused_and_runpod_is_not_called(make_app, runpod, slack):
    job = runpod.add_job("ep1", "job-loop", status="FAILED", after_retry=("FAILED",))
    app = await make_app(RUNPOD_RETRY_MAX_PER_JOB="2")

    for user in ("U1", "U2"):
        ack = await app.command("ep1 job-loop", user=user)
        await app.settle()
        assert app.responses(ack.response_url) == []
        assert job.status == "FAILED"  # the follow saw it fail again
    third = await app.command("ep1 job-loop", user="U3")
    await app.settle()

    assert len(runpod.calls_to("retry")) == 2, runpod.describe()
    [told] = private_replies(app, third.response_url)
    assert "already retried 2 times in the last hour" in told
    assert "needs a human look" in told
    assert len(app.top_level("C1")) == 2  # nothing posted for the refused third try


# ---------------------------------------------------------------- audit trail and history


async def test_history_shows_every_attempt_and_refusal_privately_newest_first(make_app, runpod, slack):
    runpod.add_job("ep1", "job-ok", status="FAILED")
    runpod.add_job("ep1", "job-btn", status="FAILED")
    app = await make_app(RUNPOD_RETRY_ALLOWED_USERS="U1,U2")
    alert = await alert_for(app, "ep1", "job-btn")
    started = time.time()

    await app.command("ep1 job-ok", user="U1", channel="C1")
    await app.settle()
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U2")
    await app.settle()
    await app.command("ep1 job-gone", user="U1", channel="C1")  # RunPod does not know it: 404
    await app.settle()
    await app.command("ep1 job-ok", user="U9", channel="C2")  # not on the list
    await app.settle()
    calls_before = len(runpod.calls)

    ack = await app.command("history", user="U9", channel="C3")
    await app.settle()

    assert len(runpod.calls) == calls_before  # history calls nothing
    assert app.top_level("C3") == []
    private_replies(app, ack.response_url)
    lines = history_rows(app, ack.response_url)
    assert len(lines) == 4, lines
    refusal, gone, button, command = lines
    # People and channels as mentions, plain reasons instead of codes, RunPod's JSON nowhere (issue 14).
    assert "<@U9>" in refusal and "<#C2>" in refusal and "by command" in refusal
    assert "not retried: not allowed" in refusal and "refused:access" not in refusal
    assert "<@U1>" in gone and "`ep1` · `job-gone`" in gone and "RunPod does not know the job" in gone
    assert "<@U2>" in button and "<#CALERTS>" in button and "Retry button" in button and "`job-btn`" in button
    assert "requeued" in button
    assert "<@U1>" in command and "<#C1>" in command and "by command" in command and "`job-ok`" in command
    assert "requeued" in command
    for line in lines:  # in the reader's time: a date token, for the moment it happened
        [at] = [int(n) for n in re.findall(r"<!date\^(\d+)\^", line)]
        assert started - 1 <= at <= time.time() + 1

    short = await app.command("history 2", user="U1")
    await app.settle()
    assert history_rows(app, short.response_url) == [refusal, gone]


async def test_audit_channel_gets_one_line_per_attempt(make_app, runpod, slack):
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app(RUNPOD_AUDIT_CHANNEL="CAUDIT", RUNPOD_RETRY_ALLOWED_USERS="U1")

    await app.command("ep1 job-1", user="U1", channel="C1")
    await app.settle()
    await app.command("ep1 job-1", user="U5", channel="C1")
    await app.settle()

    lines = [message_text(m) for m in app.top_level("CAUDIT")]
    assert len(lines) == 2, lines
    assert "<@U1>" in lines[0] and "job-1" in lines[0] and "requeued" in lines[0]
    assert "<#C1>" in lines[0]
    assert "<@U5>" in lines[1] and "not retried: not allowed" in lines[1]
    assert app.posts("CAUDIT") == app.top_level("CAUDIT")  # one line each, no threads


async def test_history_says_how_each_retry_was_asked_for_bulk_included(make_app, runpod):
    for job in ("job-x", "job-y"):
        runpod.add_job("ep1", job, status="FAILED")
    app = await make_app()

    await app.command("ep1 job-x job-y", user="U1", channel="C1")
    await app.settle()
    ack = await app.command("history", user="U2")
    await app.settle()

    private_replies(app, ack.response_url)
    lines = sorted(history_rows(app, ack.response_url), key=lambda line: "job-y" in line)
    assert len(lines) == 2, lines
    for line, job in zip(lines, ("job-x", "job-y"), strict=True):
        assert f"`ep1` · `{job}`" in line and "in a bulk retry" in line and "<@U1>" in line
        assert "requeued" in line


# ---------------------------------------------------------------- several RunPod accounts


async def test_each_endpoint_uses_its_own_key_and_no_key_reaches_slack_or_the_logs(make_app, runpod, slack, caplog):
    caplog.set_level(logging.DEBUG)
    runpod.api_keys = {"epB": "key-b-0123456789"}
    runpod.add_job("epA", "job-a", status="FAILED")
    runpod.add_job("epB", "job-b", status="FAILED")
    runpod.add_job("epB", "job-c", status="FAILED")
    # A proxy error page that echoes the key it was sent: the excerpt shown in Slack must not repeat it.
    runpod.fault("retry", status=502, body="<html><body>Bad gateway for Bearer key-b-0123456789</body></html>")
    app = await make_app(RUNPOD_ENDPOINT_KEYS="epB=key-b-0123456789")

    await app.command("epB job-c", user="U1")
    await app.settle()
    await app.command("epA job-a", user="U1")
    await app.command("epB job-b", user="U1")
    await app.settle()

    by_job = {c.job: c.authorization for c in runpod.calls}
    assert by_job == {"job-a": "Bearer rp-test-key", "job-b": "Bearer key-b-0123456789",
                      "job-c": "Bearer key-b-0123456789"}, runpod.describe()
    assert all(c.status == 200 for c in runpod.calls if c.job != "job-c")
    everything = app.everything_sent_to_slack()
    assert "Bad gateway" in everything  # the excerpt reached the person …
    for secret in (*SECRETS, "key-b-0123456789"):
        assert secret not in everything  # … without the key
        assert secret not in caplog.text


@pytest.mark.real_time  # how many lines a batch gathers depends on the real pace (one post a second)
async def test_a_bulk_retry_reaches_the_audit_channel_as_a_few_batched_messages(make_app, runpod, slack):
    jobs = [f"job-{n}" for n in range(60)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")
    app = await make_app(RUNPOD_AUDIT_CHANNEL="CAUDIT", RUNPOD_BULK_CONCURRENCY="16")

    await app.command("ep1 " + " ".join(jobs), user="U1")
    await app.settle()

    posts = [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == "CAUDIT"]
    shown = app.posts("CAUDIT")  # as they read now: each batch was edited to mention people (no notification)
    lines = [line for m in shown for line in message_text({"blocks": m["blocks"]}).splitlines() if line]
    assert sorted(line.split("`")[3] for line in lines) == sorted(jobs), "one line per attempt, none lost"
    assert all("in a bulk retry" in line and "requeued" in line and "<@U1>" in line for line in lines)
    assert 2 <= len(posts) <= 4, len(posts)  # batched, not 60 posts
    gaps = [b.at - a.at for a, b in pairwise(posts)]
    assert sum(gaps) / len(gaps) >= 0.9, gaps  # on average: a loaded machine delays one post more than the next
    assert not slack.rejected()
