"""Issue 12, item 2: the message shortcut "Retry RunPod jobs" on any message (another monitor's alert, a pasted log
line): the form opens pre-filled with the jobs found and says where they were found; the results go in that
message's thread, under the same access rules, budget and audit (source `shortcut`). Both modes, real loopback."""

from __future__ import annotations

import pytest

from bot.core import actions
from testkit.fakes import view_problems
from testkit.harness import ACK_DEADLINE, Harness, database_held, job_calls, message_text
from testkit.surfaces_payloads import message_action, view_submission

EP = "abc123xyz4567"
JOB = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"
JOB2 = "7b1e2f3a-0000-4c4c-8d8d-123456789abc"
JOB3 = "sync-11111111-2222-4333-8444-555555555555-e1"
MSG_TS = "1699999999.000100"


def datadog_alert(*urls: str, thread_ts: str | None = None) -> dict:
    """Another monitor's alert: the RunPod link only inside an attachment."""
    message = {"type": "message", "user": "UDATADOG", "ts": MSG_TS, "text": "[Triggered] RunPod job failures",
               "attachments": [{"fallback": "RunPod job failed", "color": "#d00",
                                "title": "Inference job failed", "text": "\n".join(urls)}]}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return message


async def shortcut(app: Harness, message: dict, *, user: str = "U1", channel: str = "C1"):  # type: ignore[no-untyped-def]
    """Run the shortcut on `message`; returns (the ack, the form as Slack holds it)."""
    before = len(app.slack.open_views(actions.RETRY_MODAL))
    payload = message_action(message, callback_id=actions.SHORTCUT, channel_id=channel, user_id=user,
                             response_url=app.slack.new_response_url())
    ack = await app.interact(payload)
    await app.slack.wait_for(lambda s: len(s.open_views(actions.RETRY_MODAL)) > before)
    return ack, app.slack.open_views(actions.RETRY_MODAL)[-1]


def element(view: dict, block_id: str) -> dict:
    [block] = [b for b in view["blocks"] if b.get("block_id") == block_id]
    return block["element"]


async def test_a_runpod_link_inside_an_attachment_prefills_the_form_and_the_result_goes_in_that_thread(
        app, runpod, slack):
    runpod.add_job(EP, JOB)
    message = datadog_alert(f"<https://api.runpod.ai/v2/{EP}/status/{JOB}|open in RunPod>")

    ack, view = await shortcut(app, message, user="U4")

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    [call] = slack.calls_to("views.open")
    assert call.ok and view_problems(call.args["view"]) == []
    assert element(view, actions.ENDPOINT_BLOCK)["initial_value"] == EP
    assert element(view, actions.JOBS_BLOCK)["initial_value"] == JOB
    said = message_text(view)
    assert f"Found 1 job on endpoint `{EP}` in attachment 1's text" in said
    assert "thread of the message you picked" in said
    assert not runpod.calls, "opening the form calls nothing"

    await app.interact(view_submission(view, user_id="U4"))
    await app.settle()

    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, JOB)]
    replies = app.thread("C1", MSG_TS)
    text = "\n".join(message_text(m) for m in replies)
    assert "<@U4> asked to retry job" in message_text(replies[0])
    assert replies[0]["text"].startswith("<@U4> asked to retry job"), "the notification names who asked"
    assert "was requeued" in text and "completed" in text
    assert not app.top_level("C1"), "nothing is posted outside the message's thread"
    [row] = await app.rt.store.history(5)
    assert (row["user"], row["source"], row["outcome"]) == ("U4", "shortcut", "requeued")
    assert not slack.rejected()


async def test_several_jobs_become_a_bulk_retry_whose_progress_and_summary_are_replies_in_the_thread(
        app, runpod, slack):
    for job in (JOB, JOB2, JOB3):
        runpod.add_job(EP, job)
    message = {"ts": MSG_TS, "text": f"endpoint {EP}: jobs {JOB}, {JOB2} and {JOB3} failed (CUDA OOM)"}

    _, view = await shortcut(app, message)
    assert element(view, actions.JOBS_BLOCK)["initial_value"].split("\n") == [JOB, JOB2, JOB3]
    assert "Found 3 jobs" in message_text(view) and "the message text" in message_text(view)

    await app.interact(view_submission(view))
    await app.settle()

    assert sorted(c.job for c in runpod.calls_to("retry")) == sorted([JOB, JOB2, JOB3])
    replies = app.thread("C1", MSG_TS)
    progress, summary = replies[0], replies[-1]
    assert "All 3 jobs requeued" in message_text(progress) and "3 completed" in message_text(progress)
    assert "Results for 3 jobs" in message_text(summary)
    assert not app.top_level("C1")
    sources = {row["source"] for row in await app.rt.store.history(10)}
    assert sources == {"shortcut"}
    assert not slack.rejected()


async def test_a_message_in_a_thread_gets_its_results_in_that_same_thread(app, runpod):
    runpod.add_job(EP, JOB)
    message = datadog_alert(f"https://api.runpod.ai/v2/{EP}/retry/{JOB}", thread_ts="1699999990.000001")

    _, view = await shortcut(app, message)
    await app.interact(view_submission(view))
    await app.settle()

    assert app.thread("C1", "1699999990.000001") and not app.thread("C1", MSG_TS)


async def test_a_message_with_nothing_recognisable_opens_the_form_empty_and_says_so(app, runpod, slack):
    _, view = await shortcut(app, {"ts": MSG_TS, "text": "deploy finished", "attachments": [{"text": "all green"}]})

    assert "found no RunPod job in this message" in message_text(view)
    assert "initial_value" not in element(view, actions.JOBS_BLOCK)
    assert "initial_value" not in element(view, actions.ENDPOINT_BLOCK)
    assert not runpod.calls and not slack.rejected()


async def test_an_endpoint_list_preselects_the_endpoint_found(make_app, runpod, slack):
    app = await make_app("socket", RUNPOD_RETRY_ENDPOINTS=f"ep0,{EP}")
    _, view = await shortcut(app, {"ts": MSG_TS, "text": f"{EP}/{JOB}"})

    select = element(view, actions.ENDPOINT_BLOCK)
    assert select["type"] == "static_select" and select["initial_option"]["value"] == EP
    assert not slack.rejected()


async def test_the_same_access_rules_apply_refused_privately_and_nothing_reaches_runpod(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")
    runpod.add_job(EP, JOB)
    ack, view = await shortcut(app, datadog_alert(f"https://api.runpod.ai/v2/{EP}/status/{JOB}"), channel="C1")
    # Issue 18: refused as the form opens, before anything is typed (tests/app/test_form_refuses_at_once.py).
    assert "not enabled in this channel" in message_text(view) and not view.get("submit")
    # A form opened before the rules changed is still refused when submitted.
    from bot.core import messages
    from bot.core.forms import Origin
    stale = messages.retry_form(Origin("C1", "shortcut", MSG_TS, ack.response_url), [], endpoint=EP, jobs=[JOB])

    await app.interact(view_submission(stale))
    await app.settle()

    assert job_calls(runpod) == []
    [told] = app.responses(ack.response_url)
    assert "not enabled in this channel" in message_text(told) and "<#COPS>" in message_text(told)
    assert not app.thread("C1", MSG_TS)
    [row] = await app.rt.store.history(5)
    assert (row["outcome"], row["source"]) == ("refused:access", "shortcut")


async def test_the_hourly_budget_applies(make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.add_job(EP, JOB, after_retry=("FAILED",))
    message = {"ts": MSG_TS, "text": f"{EP}/{JOB}"}

    for _ in range(2):
        _, view = await shortcut(app, message)
        await app.interact(view_submission(view))
        await app.settle()

    assert len(runpod.calls_to("retry")) == 1
    outcomes = [row["outcome"] for row in await app.rt.store.history(5)]
    assert outcomes == ["refused:budget", "requeued"]


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_where_the_app_is_not_in_the_channel_the_results_come_through_the_shortcuts_response_url(
        make_app, runpod, slack, mode):
    app = await make_app(mode)
    slack.not_in_channel.add("C1")
    runpod.add_job(EP, JOB)

    ack, view = await shortcut(app, {"ts": MSG_TS, "text": f"{EP}/{JOB}"})
    await app.interact(view_submission(view))
    await app.settle()

    assert [c.job for c in runpod.calls_to("retry")] == [JOB]
    said = "\n".join(message_text(r) for r in app.responses(ack.response_url))
    assert "was requeued" in said and "/invite" in said


async def test_several_jobs_submitted_while_the_database_cannot_write_them_down_in_time_are_refused_and_never_run(
        make_app, runpod, slack, tmp_path):
    """The shortcut's bulk retry is written down before its submission is acknowledged. The database is held by
    another writer longer than the app waits (`accept_within`): the person is told privately that nothing was done
    and to try again in a minute, and the request, written down late, is never carried out, not even by the next
    start. Nothing reaches RunPod and nothing is posted in the thread."""
    import asyncio

    from bot.core import messages

    app = await make_app("http")
    for job in (JOB, JOB2, JOB3):
        runpod.add_job(EP, job)
    ack, view = await shortcut(app, {"ts": MSG_TS, "text": f"endpoint {EP}: jobs {JOB}, {JOB2} and {JOB3} failed"})
    with database_held(tmp_path / "runpod-retry.db"):  # the app's writes wait
        submitted = await app.interact(view_submission(view))
        assert submitted.status == 200 and submitted.latency < ACK_DEADLINE
        await slack.wait_for(lambda s: s.responses.get(ack.response_url))
        await asyncio.sleep(0.5)
    [told] = app.responses(ack.response_url)
    assert told.get("response_type") == "ephemeral"
    assert message_text(told) == message_text(messages.database_unreachable()), "the bulk command's words"
    await app.settle(timeout=20)
    await app.restart()
    await app.settle(timeout=20)
    assert job_calls(runpod) == [], "a request refused is not carried out behind the person's back"
    assert not app.thread("C1", MSG_TS) and not app.top_level("C1")
