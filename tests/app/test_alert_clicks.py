"""An alert's buttons: Retry requeues the job exactly once and reports in the alert's thread, whatever RunPod
answers; Status changes nothing; buttons on an alert in a thread reply there; forged values reach nothing.
Clicks in both Slack modes."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import actions
from testkit.env import SECRETS
from testkit.harness import ACK_DEADLINE, alert_completed, buttons, database_held, message_text
from tests.app.alerting import (
    ALERTS,
    DATE,
    EP,
    alert_via_webhook,
    click_retry,
    current,
    private_texts,
    told,
    updates_of,
)


async def test_click_retry_requeues_once_reports_in_the_alert_thread_and_follows_to_completed(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-c1")

    ack = await click_retry(app, alert, user="U7")

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    await app.settle()
    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, "job-c1")]
    states = updates_of(slack, alert["ts"])
    assert "Retrying, requested by <@U7>" in states[0]
    assert actions.RETRY not in buttons(slack.calls_to("chat.update")[0].args)
    requeued = [s for s in states if "waiting in the queue" in s]
    assert requeued and "Retried by <@U7>" in requeued[0], states
    replies = app.thread(ALERTS, alert["ts"])
    assert len(replies) == 2, slack.describe()
    first = message_text(replies[0])
    assert "HTTP 200" in first and '"status": "IN_QUEUE"' in first
    last = message_text(replies[-1])
    assert "completed" in last and "1.2 s" in last and "job-c1" in last
    assert [c.status for c in runpod.calls_to("status")][-1] == 200
    assert runpod.calls_to("status")[-1].body["status"] == "COMPLETED"
    final = current(app, alert)
    assert alert_completed(final) and "<@U7>" in message_text(final)
    assert actions.RETRY not in buttons(final) and actions.STATUS in buttons(final)
    assert len(app.top_level(ALERTS)) == 1
    assert not slack.rejected()
    assert not any(secret in app.everything_sent_to_slack() for secret in SECRETS)


async def test_retried_job_that_fails_again_mentions_the_retrier_and_offers_retry_again(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-c2", after_retry=("IN_PROGRESS", "FAILED"),
                                    final_error="boom")

    await click_retry(app, alert, user="U7")
    await app.settle()

    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "boom" in last and "<@U7>" in last and "FAILED" in last
    again = current(app, alert)
    assert "again" in message_text(again) and actions.RETRY in buttons(again)
    assert "retried until" in message_text(again)

    await click_retry(app, alert, user="U8")
    await app.settle()

    assert len(runpod.calls_to("retry")) == 2
    # Updates of one message coalesce in the outbox, so intermediate states may never be drawn; the retrier is.
    assert any("<@U8>" in s for s in updates_of(slack, alert["ts"]))
    assert "<@U8>" in message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert len(app.top_level(ALERTS)) == 1


async def test_five_simultaneous_clicks_give_one_retry_and_the_others_are_told_privately(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-c3")
    users = [f"U{n}" for n in range(1, 6)]

    acks = await asyncio.gather(*(click_retry(app, alert, user=u) for u in users))
    await app.settle()

    assert all(a.status == 200 for a in acks)
    assert len(runpod.calls_to("retry")) == 1, runpod.describe()
    [winner] = [u for u in users if f"Retried by <@{u}>" in message_text(current(app, alert))]
    for user, ack in zip(users, acks, strict=True):
        told = [message_text(r) for r in app.responses(ack.response_url)]
        if user == winner:
            assert not told
            continue
        assert len(told) == 1, (user, told)
        assert f"<@{winner}> already retried" in told[0] and DATE.search(told[0]), told[0]
        assert all(r.get("response_type", "ephemeral") == "ephemeral" for r in app.responses(ack.response_url))
    # The losers' clicks changed nothing in public.
    assert len(app.thread(ALERTS, alert["ts"])) == 2


async def test_expired_job_is_explained_in_the_thread_and_the_retry_button_goes(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-e1")
    runpod.expire(EP, "job-e1")

    await click_retry(app, alert)
    await app.settle()

    [reply] = app.thread(ALERTS, alert["ts"])
    said = message_text(reply)
    assert "HTTP 404" in said and "expired" in said and "job-e1" in said
    final = message_text(current(app, alert))
    assert "RunPod job not retried" in final and "expired" in final
    assert actions.RETRY not in buttons(current(app, alert))
    assert not runpod.calls_to("status") or runpod.calls_to("status")[-1].status == 404


async def test_job_that_is_running_is_refused_with_its_state_on_thread_and_alert(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-e2")
    runpod.job(EP, "job-e2").status = "IN_PROGRESS"  # someone retried it from RunPod's console meanwhile

    await click_retry(app, alert)
    await app.settle()

    [reply] = app.thread(ALERTS, alert["ts"])
    said = message_text(reply)
    assert "HTTP 400" in said and "IN_PROGRESS" in said and "running" in said
    final = current(app, alert)
    assert "is running" in message_text(final) and "RunPod job not retried" in message_text(final)
    assert actions.RETRY not in buttons(final)
    assert len(runpod.calls_to("retry")) == 1


@pytest.mark.parametrize("fault, words", [
    ({"status": 503}, "server error"),
    ({"status": 500, "body": "<html><body><h1>Internal Server Error</h1></body></html>"}, "server error"),
    ({"delay": 1.0}, "did not answer in time"),
], ids=["503", "500-html", "timeout"])
async def test_transient_runpod_trouble_during_the_click_is_explained_and_retry_is_offered_again(
        make_app, mode, slack, runpod, fault, words):
    app = await make_app(mode, RUNPOD_TIMEOUT="0.3", RUNPOD_MAX_ATTEMPTS="2")
    alert = await alert_via_webhook(app, runpod, "job-t1")
    runpod.fault("retry", **fault)

    ack = await click_retry(app, alert)
    await app.settle()

    assert ack.latency < 1.0
    [reply] = app.thread(ALERTS, alert["ts"])
    assert words in message_text(reply) and "job-t1" in message_text(reply)
    final = current(app, alert)
    assert words in message_text(final)
    assert actions.RETRY in buttons(final), "a transient failure must leave Retry available"
    assert "<html>" not in message_text(reply)
    assert not slack.rejected()


@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after", "no-retry-after"])
async def test_a_click_that_meets_runpods_429s_is_told_it_is_queued_and_then_gets_the_result(
        make_app, slack, runpod, retry_after):
    app = await make_app("http", RUNPOD_MAX_ATTEMPTS="2")
    alert = await alert_via_webhook(app, runpod, "job-t9")
    runpod.fault("retry", status=429, times=3, **({"headers": {"Retry-After": retry_after}} if retry_after else {}))

    await click_retry(app, alert)
    await app.settle(timeout=20)

    replies = [message_text(m) for m in app.thread(ALERTS, alert["ts"])]
    assert "throttling" in replies[0] and "job-t9" in replies[0] and "queued" in replies[0], replies
    assert any("was requeued" in r for r in replies[1:]), replies
    assert [c.status for c in runpod.calls_to("retry")] == [429, 429, 429, 200], "a 429 is a wait, not an outcome"
    assert len([r for r in replies if "throttling" in r]) == 1, "told once, not per 429"


async def test_status_button_posts_the_status_json_in_the_thread_and_changes_nothing(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-s1")
    before = current(app, alert)["blocks"]

    ack = await app.click(actions.STATUS, buttons(alert)[actions.STATUS]["value"], message_ts=alert["ts"])
    await app.settle()

    assert ack.status == 200
    [reply] = app.thread(ALERTS, alert["ts"])
    said = message_text(reply)
    assert '"status": "FAILED"' in said and '"error": "CUDA out of memory"' in said and "HTTP 200" in said
    assert not runpod.calls_to("retry")
    assert not slack.calls_to("chat.update")
    assert current(app, alert)["blocks"] == before


async def test_buttons_on_an_alert_inside_a_thread_reply_in_that_thread(app, slack, runpod):
    runpod.add_job(EP, "job-th1")
    parent = slack.seed_message(ALERTS, text="Nightly batch failures")
    alert_ts = slack.seed_message(ALERTS, text="RunPod job job-th1 failed", thread_ts=parent)
    value = actions.job_value(EP, "job-th1")

    await app.click(actions.STATUS, value, message_ts=alert_ts, thread_ts=parent)
    await app.settle()
    await app.click(actions.RETRY, value, message_ts=alert_ts, thread_ts=parent, user="U7")
    await app.settle()

    replies = app.thread(ALERTS, parent)
    texts = [message_text(m) for m in replies if m["ts"] != alert_ts]
    assert len(texts) == 3, slack.describe()
    assert '"status": "FAILED"' in texts[0]
    assert "IN_QUEUE" in texts[1] and "completed" in texts[2]
    assert not app.thread(ALERTS, alert_ts)
    assert len(app.top_level(ALERTS)) == 1
    assert alert_completed(slack.messages[(ALERTS, alert_ts)])
    assert slack.messages[(ALERTS, alert_ts)].get("thread_ts") == parent


@pytest.mark.parametrize("value", ["../etc", "ep1/bad id", "ep1/" + "j" * 3000, "ep1", "ep1/job/../x", ""],
                         ids=["dotdot", "space", "3000-chars", "no-job", "traversal", "empty"])
@pytest.mark.parametrize("action", [actions.RETRY, actions.STATUS])
async def test_forged_button_values_reach_nothing_and_the_clicker_is_told(app, slack, runpod, value, action):
    runpod.add_job(EP, "job-1")
    ts = slack.seed_message(ALERTS, text="an alert")

    ack = await app.click(action, value, message_ts=ts)
    await app.settle()

    assert ack.status == 200
    assert not runpod.calls
    told = private_texts(app, ack)
    assert "not carry a valid endpoint and job ID" in told and "nothing was done" in told
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to("chat.update")



async def test_a_retry_clicked_while_the_database_cannot_write_it_down_in_time_is_refused_and_never_run(
        make_app, slack, runpod, tmp_path):
    """The click is written down before it is acknowledged. The database is held by another writer longer than the
    app waits: the clicker is told privately that nothing was done and to try again, the alert keeps offering Retry,
    and the click, written down late, is never carried out, not even by the next start."""

    from bot.core import messages

    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-h2")
    with database_held(tmp_path / "runpod-retry.db"):  # the app's writes wait
        ack = await click_retry(app, alert, user="U7")
        assert ack.status == 200 and ack.latency < ACK_DEADLINE
        await slack.wait_for(lambda s: s.responses.get(ack.response_url))
        await asyncio.sleep(0.5)
    assert told(app, ack) == [message_text(messages.database_unreachable())], "told privately: nothing was done"
    await app.settle(timeout=20)
    await app.restart()
    await app.settle(timeout=20)
    assert runpod.calls_to("retry") == [], "a click refused is not carried out behind the clicker's back"
    assert actions.RETRY in buttons(current(app, alert)), "the alert still offers Retry"
    assert app.thread(ALERTS, alert["ts"]) == [], "nothing said in the alert's thread"
