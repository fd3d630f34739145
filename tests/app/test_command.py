"""`/runpod-retry` end to end, in both modes, over real loopback HTTP: a retry and a status check reported in a
thread, every accepted form, help, bad input told privately, an ack that never waits on RunPod, and only Slack
may call."""

from __future__ import annotations

import time

import pytest

from testkit.env import SECRETS, SIGNING_SECRET
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import ACK_DEADLINE, message_text
from tests.app.commanding import (
    USAGE_MARK,
    ack_text,
    first_reply,
)


async def test_retry_posts_parent_then_json_result_in_its_thread_and_follows_to_the_end(app, runpod, slack):
    runpod.add_job("ep1", "job-1-u1", status="FAILED")

    ack = await app.command("ep1 job-1-u1", user="U1", channel="C1")

    assert ack.status == 200
    assert ack.latency < ACK_DEADLINE
    await app.settle()
    retry_calls = runpod.calls_to("retry")
    assert [(c.endpoint, c.job) for c in retry_calls] == [("ep1", "job-1-u1")]
    assert retry_calls[0].authorization == "Bearer rp-test-key"
    [parent] = app.top_level("C1")
    assert "<@U1>" in message_text(parent) and "job-1-u1" in message_text(parent) and "ep1" in message_text(parent)
    replies = app.thread("C1", parent["ts"])
    assert len(replies) == 2, slack.describe()
    result = message_text(replies[0])
    assert "HTTP 200" in result and '"status": "IN_QUEUE"' in result and "was requeued" in result
    final = message_text(replies[-1])
    assert "completed" in final
    assert not slack.rejected()
    everything = app.everything_sent_to_slack()
    assert not any(secret in everything for secret in SECRETS)


@pytest.mark.parametrize("text", [
    "ep-a1 job_9",
    "ep-a1/job_9",
    "https://api.runpod.ai/v2/ep-a1/status/job_9",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9|api.runpod.ai/v2/ep-a1/status/job_9>",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9>",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9|that failed job>",
    "  ep-a1   job_9  ",
], ids=["space", "slash", "url", "slack-link-labelled", "slack-link", "slack-link-label-with-spaces", "extra-spaces"])
async def test_every_accepted_form_reaches_runpod_as_one_retry_of_that_job(app, runpod, slack, text):
    runpod.add_job("ep-a1", "job_9", status="FAILED")

    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    assert [(c.method, c.endpoint, c.job) for c in runpod.calls_to("retry")] == [("POST", "ep-a1", "job_9")]
    parent, replies = first_reply(app)
    assert "job_9" in message_text(parent) and "ep-a1" in message_text(parent)
    assert "HTTP 200" in message_text(replies[0])
    assert not slack.rejected()


async def test_status_shows_the_json_in_a_thread_without_retrying(app, runpod, slack):
    runpod.add_job("ep1", "job-s", status="FAILED", error="CUDA out of memory")

    ack = await app.command("status ep1 job-s", user="U7")

    assert ack.status == 200
    await app.settle()
    assert runpod.calls_to("retry") == []
    assert [(c.method, c.endpoint, c.job) for c in runpod.calls_to("status")] == [("GET", "ep1", "job-s")]
    parent, replies = first_reply(app)
    assert "<@U7>" in message_text(parent) and "status" in message_text(parent) and "job-s" in message_text(parent)
    [reply] = replies
    text = message_text(reply)
    assert "HTTP 200" in text and '"status": "FAILED"' in text and "CUDA out of memory" in text
    assert "failed" in text
    assert runpod.job("ep1", "job-s").status == "FAILED"  # nothing changed on RunPod
    assert not slack.rejected()


@pytest.mark.parametrize("text", ["help", "HELP", "--help"])
async def test_help_shows_usage_only_to_the_caller(app, runpod, slack, text):
    # With no text at all, the command opens the retry form instead (issue 12; tests/test_modal.py).
    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    assert USAGE_MARK in ack_text(ack) and "status <endpointId> <jobId>" in ack_text(ack)
    assert ack.body.get("response_type", "ephemeral") == "ephemeral"
    assert runpod.calls == []
    assert slack.calls_to("chat.postMessage") == [] and slack.all_responses() == []


STATUS_MARK = "/runpod-retry status <endpointId> <jobId>"


HISTORY_MARK = "/runpod-retry history [N]"


BULK_MARK = "/runpod-retry <endpointId> <jobId> <jobId> …"


BAD_INPUTS = [
    ("ep1", "only `ep1`", USAGE_MARK),
    ("ep1/", "job ID", USAGE_MARK),
    ("ep1 job!", "'!'", USAGE_MARK),
    ("ep1 jöb", "'ö'", USAGE_MARK),
    ("ep1/jo$b", "'$'", USAGE_MARK),
    ("https://api.runpod.ai/v2/e p/status/job-1", "not a RunPod API link", USAGE_MARK),
    ("ep1 " + "j" * 129, "129 characters", USAGE_MARK),
    ("e" * 129 + " job-1", "129 characters", USAGE_MARK),
    ("status", "which job", STATUS_MARK),
    ("status ep1", "only `ep1`", STATUS_MARK),
    ("status ep1 job-1 job-2", "`status` takes one job", STATUS_MARK),
    ("https://example.com/jobs/job-1", "not a RunPod API link", USAGE_MARK),
    ("<https://example.com/ep1/job-1|example.com/ep1/job-1>", "not a RunPod API link", USAGE_MARK),
    ("ep1/job-1 ep2/job-2", "one endpoint", BULK_MARK),
    ("history abc", "`history` takes a number", HISTORY_MARK),
    ("history 5 6", "at most one number", HISTORY_MARK),
    ("help me", "`help` takes no other words", "/runpod-retry help"),
]


@pytest.mark.parametrize(("text", "says", "form"), BAD_INPUTS, ids=[t for t, _, _ in BAD_INPUTS])
async def test_bad_input_is_explained_privately_with_usage_and_nothing_is_done(app, runpod, slack, text, says,
                                                                               form):
    runpod.add_job("ep1", "job-1", status="FAILED")

    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    shown = ack_text(ack)
    assert says in shown, shown
    # The form the mistake is about, and where the rest is: not the whole help after every typo (issue 14).
    assert form in shown and "/runpod-retry help" in shown
    assert "retries several jobs" not in shown and "shows the last N retry attempts" not in shown
    assert ack.body.get("response_type", "ephemeral") == "ephemeral"
    assert runpod.calls == [], runpod.describe()
    assert slack.calls_to("chat.postMessage") == [] and slack.all_responses() == []
    assert not slack.rejected()


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_ack_comes_at_once_while_runpod_is_slow_and_the_result_lands_later(make_app, runpod, slack, mode):
    app = await make_app(mode, RUNPOD_TIMEOUT="5")
    runpod.add_job("ep1", "job-slow", status="FAILED")
    runpod.fault("retry", delay=2.5)

    ack = await app.command("ep1 job-slow")

    assert ack.status == 200
    # Well before RunPod's answer (2.5 s): the ack did not wait for it, even on a busy machine.
    assert ack.latency < 2.0, f"the ack took {ack.latency:.2f}s"
    [call] = await runpod.wait_calls("retry")
    assert call.status is None  # RunPod had not answered yet
    await app.settle()
    assert call.status == 200
    _parent, replies = first_reply(app)
    assert "HTTP 200" in message_text(replies[0]) and "was requeued" in message_text(replies[0])


async def test_unsigned_wrongly_signed_and_stale_requests_are_refused(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-1", status="FAILED")
    body = form_encode(slash_command_body("ep1 job-1", response_url=slack.new_response_url()))
    assert app.http is not None

    async with app.http.post(f"{app.url}/slack/events", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
        unsigned = response.status
    wrong, _, _ = await app.post_signed(body, secret="not-the-signing-secret")
    stale, _, _ = await app.post_signed(body, timestamp=int(time.time()) - 6 * 60)
    tampered_headers = sign(body, SIGNING_SECRET)
    async with app.http.post(f"{app.url}/slack/events", data=body.replace("job-1", "job-2"),
                             headers=tampered_headers) as response:
        tampered = response.status

    assert (unsigned, wrong, stale, tampered) == (401, 401, 401, 401)
    await app.settle()
    assert runpod.calls == []
    assert slack.calls_to("chat.postMessage") == []
    ok, _, _ = await app.post_signed(body)  # the same request, signed properly, works
    assert ok == 200
    await runpod.wait_calls("retry")



async def test_a_retry_asked_while_the_database_cannot_write_it_down_in_time_is_refused_and_never_run(
        make_app, runpod, slack, tmp_path):
    """A retry is written down before the command is acknowledged. The database is held by another writer longer
    than the app waits (`accept_within`): the person is told in the answer to the command that nothing was done and to
    try again in a minute, and the request, written down late, is never carried out, not even by the next start.
    Asked again once the database answers, the job is retried."""
    import asyncio
    import sqlite3

    from bot.core import messages

    app = await make_app("http")
    runpod.add_job("ep1", "job-h1", status="FAILED")
    holder = sqlite3.connect(tmp_path / "runpod-retry.db", timeout=10)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database: the app's writes wait
    try:
        ack = await app.command("ep1 job-h1")
        assert ack.status == 200 and ack.latency < ACK_DEADLINE
        await asyncio.sleep(0.5)
    finally:
        holder.rollback()
        holder.close()
    assert ack_text(ack) == message_text(messages.database_unreachable()), "told at once that nothing was done"
    await app.settle(timeout=20)
    await app.restart()
    await app.settle(timeout=20)
    assert runpod.calls_to("retry") == [], "a request refused is not carried out behind the person's back"
    assert app.top_level("C1") == [], "nothing posted about it"

    again = await app.command("ep1 job-h1")
    await app.settle(timeout=20)
    assert again.status == 200 and not again.body
    assert [c.job for c in runpod.calls_to("retry")] == ["job-h1"], "retried once when asked again"
