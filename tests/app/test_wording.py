"""Issue 14: what a tired reader meets. Every item is driven end to end over the loopback stand-ins (signed requests
and socket envelopes in, what was posted where asserted), and the message builders are checked on their own."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.core import actions, messages
from bot.core.alerts import Alert, Phase, called, next_retry_at
from bot.core.commands import Retry, Status, UsageError, parse_command
from bot.core.groups import JobResult, Storm, StormJob, Tally
from bot.core.outcome import Kind, Outcome, classify_retry, classify_status
from bot.runpod import RunPodHTTPError, RunPodReply
from testkit.fakes import block_problems
from testkit.fakes.slack import SlackFault
from testkit.harness import message_text

EP = "ep1"
ALERTS = "CALERTS"
AUDIT = "CAUDIT"
FAST = {"RUNPOD_BULK_CONCURRENCY": "16", "RUNPOD_FOLLOW_INTERVAL": "0.05"}
DATE = re.compile(r"<!date\^(\d+)\^")


# ---------------------------------------------------------------- helpers


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


def blocks_text(msg: dict[str, Any]) -> str:
    """What the blocks say, without the fallback text."""
    return message_text({"blocks": msg.get("blocks") or []})


def assert_valid(msg: dict[str, Any]) -> None:
    """What Slack would accept: slack_sdk's own Block Kit validation and the stand-in's limits."""
    assert isinstance(msg["text"], str) and msg["text"].strip()
    assert len(msg["blocks"]) <= 50
    for block in msg["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert block_problems(msg["blocks"]) == []


async def alert_for(app, runpod, job: str, endpoint: str = EP, **job_options: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """RunPod fails `job` and calls the webhook; returns the alert as posted."""
    runpod.add_job(endpoint, job, status="FAILED", **job_options)
    status, answer = await app.webhook(endpoint, {"id": job, "status": "FAILED", "error": "CUDA out of memory",
                                                  "delayTime": 567, "executionTime": 1234})
    assert status == 200, answer
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


def current(app, msg: dict[str, Any], channel: str = ALERTS) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return app.slack.messages[(channel, msg["ts"])]


def updates_of(slack, ts: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [message_text(c.args) for c in slack.calls_to("chat.update") if c.args.get("ts") == ts and c.ok]


async def click_retry(app, alert: dict[str, Any], user: str = "U7", value: str | None = None):  # type: ignore[no-untyped-def]
    value = value or buttons(current(app, alert))[actions.RETRY]["value"]
    return await app.click(actions.RETRY, value, message_ts=alert["ts"], user=user)


def told(app, ack) -> list[str]:  # type: ignore[no-untyped-def]
    """What the clicker or typist was told through the response_url."""
    return [message_text(r) for r in app.responses(ack.response_url)]


def slack_link_to(ts: str) -> str:
    """The part of a Slack message link that names the message."""
    return "/p" + ts.replace(".", "")


@pytest.fixture(params=["http", "socket"])
def mode(request) -> str:  # type: ignore[no-untyped-def]
    return request.param


# ---------------------------------------------------------------- 1. an alert that cannot be posted


async def test_1_an_alert_slack_refuses_is_reported_to_the_audit_channel_with_the_fix(make_app, slack, runpod,
                                                                                     caplog):
    caplog.set_level(logging.ERROR)
    app = await make_app("http", RUNPOD_AUDIT_CHANNEL=AUDIT)
    slack.not_in_channel.add(ALERTS)

    for job in ("job-lost-1", "job-lost-2"):
        code, _ = await app.webhook(EP, {"id": job, "status": "FAILED", "error": "CUDA out of memory"})
        assert code == 200
    await app.settle()

    assert not app.posts(ALERTS)
    [notice] = app.top_level(AUDIT)  # once, not once per lost alert
    said = message_text(notice)
    assert "/invite @RunPod Retry" in said and f"<#{ALERTS}>" in said and "job-lost-1" in said
    assert "RUNPOD_ALERT_CHANNEL" in said and f"/runpod-retry failed {EP}" in said
    assert "/invite @RunPod Retry" in caplog.text and "job-lost-2" in caplog.text  # every lost alert is logged
    report = app.rt.channel_report()  # what /healthz is to show (see the report: server.py wires it)
    assert report["ok"] is False and report["alert"]["can_post"] is False
    assert not slack.rejected()


def schedule_message_in(slack) -> list[str]:  # type: ignore[no-untyped-def]
    """chat.scheduleMessage and chat.deleteScheduledMessage on the Slack stand-in, refusing the same channels
    chat.postMessage refuses. Returns the IDs deleted."""
    deleted: list[str] = []

    def schedule(call) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        if error := slack._channel_error(call.args.get("channel")):
            return {"ok": False, "error": error}
        return {"ok": True, "channel": call.args["channel"], "scheduled_message_id": f"Q{len(slack.calls)}",
                "post_at": call.args.get("post_at")}

    def delete(call) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        deleted.append(call.args.get("scheduled_message_id"))
        return {"ok": True}

    slack._methods["chat.scheduleMessage"] = schedule
    slack._methods["chat.deleteScheduledMessage"] = delete
    return deleted


async def test_1_the_start_up_check_says_plainly_which_channel_cannot_be_posted_to(make_app, slack, caplog):
    caplog.set_level(logging.INFO)
    deleted = schedule_message_in(slack)
    app = await make_app("http", RUNPOD_AUDIT_CHANNEL=AUDIT)  # checks both as it starts
    slack.not_in_channel.add(ALERTS)
    deleted.clear()

    states = await app.rt.check_channels()

    assert [(s.channel, s.ok) for s in states] == [(ALERTS, False), (AUDIT, True)]
    assert f"The alert channel {ALERTS} (RUNPOD_ALERT_CHANNEL): I cannot post there (not_in_channel)" in caplog.text
    assert "failure alerts would be lost" in caplog.text and "/invite @RunPod Retry" in caplog.text
    assert f"The audit channel {AUDIT} (RUNPOD_AUDIT_CHANNEL): I can post there." in caplog.text
    assert len(deleted) == 1, "the scheduled check message is deleted, never posted"
    assert not slack.calls_to("chat.postMessage"), "the check posts nothing anyone sees"
    report = app.rt.channel_report()
    assert report["alert"] == {"channel": ALERTS, "setting": "RUNPOD_ALERT_CHANNEL", "can_post": False,
                               "error": "not_in_channel"}
    assert report["audit"]["can_post"] is True and report["ok"] is False


async def test_1_a_check_slack_cannot_answer_says_so_instead_of_guessing(make_app, slack, caplog):
    caplog.set_level(logging.INFO)
    app = await make_app("http")
    slack.script("chat.scheduleMessage", *[SlackFault(status=503)] * 3)  # Slack cannot answer the check

    [state] = await app.rt.check_channels()

    assert state.ok is None and "could not check" in state.describe()
    assert app.rt.channel_report()["ok"] is True  # unknown is not a failure


# ---------------------------------------------------------------- 2. the notification text


async def test_2_the_notification_text_leads_with_the_failure_its_error_and_the_deadline(app, runpod):
    alert = await alert_for(app, runpod, "job-n1")

    text = alert["text"]  # what a phone shows

    assert text.startswith("FAILED: job job-n1 on ep1: CUDA out of memory. Retry before ")
    assert re.search(r"Retry before \d\d:\d\d UTC\.$", text), text
    assert "<!date" not in text


def test_2_notification_texts_for_every_phase_say_what_happened_first():
    now = 1_000_000.0
    base = Alert(EP, "job-1", ALERTS, "TIMED_OUT", now - 60, error="Traceback …\nworker lost <!channel>", ts="1.2")
    refused_alert = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.REFUSED,
                          note="RunPod refused the API key for endpoint `ep1`", actor="U1", acted_at=now)
    cases = [
        # A traceback's notification reads as its last meaningful line, never "Traceback …".
        (base, "TIMED OUT: job job-1 on ep1: worker lost &lt;!channel&gt;. Retry before"),
        (Alert(EP, "job-1", ALERTS, "FAILED", now - 3600, ts="1.2"), "FAILED: job job-1 on ep1. Too late to retry."),
        (Alert(EP, "job-1", ALERTS, "FAILED", now, ts="1.2", phase=Phase.FAILED_AGAIN, error="OOM again",
               actor="U1", acted_at=now), "FAILED again after a retry: job job-1 on ep1: OOM again. Retry before"),
        (Alert(EP, "job-1", ALERTS, "FAILED", now, ts="1.2", phase=Phase.COMPLETED, actor="U1", acted_at=now),
         "Completed after a retry: job job-1 on ep1"),
        (refused_alert, "Not retried: job job-1 on ep1: RunPod refused the API key for endpoint ep1. Retry before"),
        # A note that is itself an outcome's "Not retried: …" summary is not said twice.
        (Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.REFUSED, actor="U1", acted_at=now,
               note="Not retried: job `job-1` on endpoint `ep1` is waiting in the queue"),
         "Not retried: job job-1 on endpoint ep1 is waiting in the queue. Retry before"),
    ]
    for alert, starts in cases:
        msg = messages.alert_message(alert, now)
        assert msg["text"].startswith(starts), msg["text"]
        assert "<!channel>" not in msg["text"]
        assert_valid(msg)


# ---------------------------------------------------------------- 3. buttons that would be refused


async def test_3_a_spent_retry_budget_shows_why_instead_of_a_retry_button(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b1", after_retry=("IN_PROGRESS", "FAILED"), final_error="OOM again")

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert "again" in message_text(shown)
    assert actions.RETRY not in buttons(shown) and actions.STATUS in buttons(shown)
    assert "Retry limit reached (1 retry per job per hour)" in message_text(shown)
    assert "Can be retried until" not in message_text(shown)
    # The notification says the limit with its next allowed time, as "HH:MM UTC" (no raw date token).
    assert re.search(r"Retry limit reached \(1 retry per job per hour\).* allowed at \d\d:\d\d UTC", shown["text"])
    # A click on the stale button is still refused, as before: the button is gone because it would be.
    ack = await click_retry(app, alert, user="U8", value=actions.job_value(EP, "job-b1"))
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1 and "already retried once" in " ".join(told(app, ack))


async def test_3_retries_runpod_refused_do_not_spend_the_budget_the_button_shows(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b2")
    runpod.fault("retry", status=401, body={"error": "Unauthorized"})  # the API key was wrong, then fixed

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert actions.RETRY in buttons(shown), message_text(shown)
    assert "Retry limit reached" not in message_text(shown)
    await click_retry(app, alert, user="U8")
    await app.settle()
    assert len(runpod.requeued(EP)) == 1


async def test_3_an_endpoint_the_app_may_not_call_gets_no_buttons_and_says_so(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ENDPOINTS="ep2")

    alert = await alert_for(app, runpod, "job-x1")

    assert buttons(alert) == {}, "both Retry and Status would only be refused"
    said = message_text(alert)
    assert "Retries are not enabled for this endpoint" in said and "RUNPOD_RETRY_ENDPOINTS" in said
    assert "Can be retried until" not in said
    assert alert["text"].endswith("Retries are not enabled for it.")
    assert not slack.rejected()


def test_3_the_budget_frees_up_and_retry_comes_back_with_the_time_it_does():
    now = 10_000_000.0
    alert = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.FAILED_AGAIN, actor="U1",
                  acted_at=now - 600, retried_at=(now - 3000, now - 600))
    assert next_retry_at(alert, now, 2) == now - 3000 + 3600

    blocked = messages.alert_message(alert, now, max_retries=2)
    assert actions.RETRY not in buttons(blocked)
    [at] = [int(n) for n in DATE.findall(messages.retry_block(alert, now, max_retries=2) or "")]
    assert at == int(now + 600)
    assert "Retry limit reached (2 retries per job per hour); next allowed at" in message_text(blocked)
    assert actions.RETRY in buttons(messages.alert_message(alert, now + 601, max_retries=2))
    assert actions.RETRY in buttons(messages.alert_message(alert, now, max_retries=3))
    assert called(alert, now).retried_at[-1] == now
    late = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", retried_at=(now - 100,))
    assert "after RunPod forgets the job" in (messages.retry_block(late, now, max_retries=1) or "")


async def test_3_the_sweep_redraws_an_alert_with_retry_once_its_budget_frees_up(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b2")
    desk = app.rt.desk
    now = time.time()
    stored = await desk.get(EP, "job-b2")
    await desk.save(called(stored, now - 3590))  # a retry 59 min 50 s ago spent the budget
    await app.settle()
    assert actions.RETRY not in buttons(current(app, alert))

    desk.clock = lambda: now + 11
    await desk.sweep_expired()
    await app.settle()

    assert actions.RETRY in buttons(current(app, alert))
    assert "Can be retried until" in message_text(current(app, alert))


# ---------------------------------------------------------------- 4. a late click on a completed alert


async def test_4_a_late_retry_click_on_a_completed_alert_is_told_privately_and_the_alert_stays(app, runpod, slack):
    alert = await alert_for(app, runpod, "job-l1")
    stale_value = buttons(alert)[actions.RETRY]["value"]  # a confirm dialog left open on the first drawing
    await click_retry(app, alert, user="U7")
    await app.settle()
    done = current(app, alert)
    assert "completed" in message_text(done).lower()
    updates, thread = len(slack.calls_to("chat.update")), len(app.thread(ALERTS, alert["ts"]))

    other = await click_retry(app, alert, user="U8", value=stale_value)
    same = await click_retry(app, alert, user="U7", value=stale_value)
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1, "RunPod is not asked again"
    assert len(slack.calls_to("chat.update")) == updates and current(app, alert) == done, "the alert stays"
    assert len(app.thread(ALERTS, alert["ts"])) == thread, "nothing public"
    [to_other] = told(app, other)
    assert "already completed after <@U7> retried it" in to_other and "nothing was done" in to_other
    assert slack_link_to(alert["ts"]) in to_other, "a link to the alert"
    [to_same] = told(app, same)
    assert "already completed after you retried it" in to_same
    assert all(r.get("response_type", "ephemeral") == "ephemeral" for r in app.responses(other.response_url))
    rows = await app.rt.store.history(2)
    assert {r["outcome"] for r in rows} == {"refused:completed"}


async def test_4_a_retry_from_elsewhere_of_a_completed_job_does_not_turn_its_alert_into_a_warning(make_app,
                                                                                                   runpod, slack):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-l2")
    await click_retry(app, alert)
    await app.settle()
    done = current(app, alert)

    await app.command(f"{EP} job-l2", user="U9")  # RunPod refuses: the job completed
    await app.settle()

    assert [c.status for c in runpod.calls_to("retry")] == [200, 400]
    assert current(app, alert)["blocks"] == done["blocks"]
    assert "RunPod job not retried" not in message_text(current(app, alert))


# ---------------------------------------------------------------- 5. icons follow the job's state


@pytest.mark.parametrize(("status", "icon", "words"), [
    ("FAILED", ":red_circle:", "failed: CUDA out of memory"),
    ("TIMED_OUT", ":red_circle:", "timed out"),
    ("COMPLETED", ":white_check_mark:", "completed"),
    ("IN_PROGRESS", ":hourglass_flowing_sand:", "is running"),
    ("CANCELLED", ":no_entry_sign:", "was cancelled"),
])
async def test_5_status_shows_the_jobs_state_not_the_http_status(make_app, runpod, status, icon, words):
    app = await make_app("http")
    runpod.add_job(EP, "job-s1", status=status)

    await app.command(f"status {EP} job-s1")
    await app.settle()

    [parent] = app.top_level("C1")
    [reply] = app.thread("C1", parent["ts"])
    sentence = reply["blocks"][0]["text"]["text"]
    assert sentence.startswith(f"{icon} Job `job-s1` on endpoint `ep1` {words}"), sentence
    assert "HTTP" not in sentence and status not in sentence
    assert "RunPod's answer (HTTP 200):" in blocks_text(reply)  # the code labels RunPod's JSON instead
    assert f'"status": "{status}"' in blocks_text(reply)


async def test_5_the_alerts_status_button_puts_a_red_circle_on_a_failed_job(app, runpod):
    alert = await alert_for(app, runpod, "job-s2")

    await app.click(actions.STATUS, buttons(alert)[actions.STATUS]["value"], message_ts=alert["ts"])
    await app.settle()

    [reply] = app.thread(ALERTS, alert["ts"])
    assert reply["blocks"][0]["text"]["text"].startswith(":red_circle: Job `job-s2` on endpoint `ep1` failed")
    assert ":white_check_mark:" not in blocks_text(reply)


def test_5_outcome_icons():
    def status(state: str) -> Outcome:
        return classify_status(EP, "j", RunPodReply(200, {"id": "j", "status": state}, 0.1))

    assert messages.outcome_icon(status("FAILED")) == ":red_circle:"
    assert messages.outcome_icon(status("TIMED_OUT")) == ":red_circle:"
    assert messages.outcome_icon(status("COMPLETED")) == ":white_check_mark:"
    assert messages.outcome_icon(status("IN_QUEUE")) == ":hourglass_flowing_sand:"
    requeued = classify_retry(EP, "j", RunPodReply(200, {"id": "j", "status": "IN_QUEUE"}, 0.1))
    assert messages.outcome_icon(requeued) == ":hourglass_flowing_sand:"
    gone = classify_retry(EP, "j", RunPodHTTPError("404", op="retry", status=404))
    assert messages.outcome_icon(gone) == ":x:"
    flaky = classify_retry(EP, "j", RunPodHTTPError("502", op="retry", status=502))
    assert messages.outcome_icon(flaky) == ":warning:"


# ---------------------------------------------------------------- 6. promises that are kept


async def test_6_single_alerts_retried_by_retry_all_link_to_the_grouped_run_instead_of_promising_their_thread(
        make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = [f"job-{n:04d}-u1" for n in range(6)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
        await app.webhook(EP, {"id": job, "status": "FAILED", "error": "CUDA out of memory"})
    await app.settle()
    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    singles = [m for m in app.top_level(ALERTS) if m["ts"] != storm["ts"]]
    assert len(singles) == 4

    await app.click(actions.RETRY_ALL, buttons(storm)[actions.RETRY_ALL]["value"], message_ts=storm["ts"])
    await app.settle(timeout=20)

    for single in singles:
        requeued = [u for u in updates_of(slack, single["ts"]) if "Retried by" in u and "will show" in u]
        assert requeued, updates_of(slack, single["ts"])
        assert "where it was asked" in requeued[0] and slack_link_to(storm["ts"]) in requeued[0]
        assert "its thread will show" not in requeued[0]
        assert not app.thread(ALERTS, single["ts"]), "nothing was promised there, nothing is posted there"
        assert "completed" in message_text(current(app, single)).lower()


async def test_6_alerts_retried_by_a_failed_confirmation_link_to_the_run(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    alerts = [await alert_for(app, runpod, f"job-f{n}") for n in range(2)]
    ack = await app.command(f"failed {EP}", channel="C1")
    await app.settle()
    [offer] = app.responses(ack.response_url)

    await app.click(actions.CONFIRM_FAILED, buttons(offer)[actions.CONFIRM_FAILED]["value"],
                    message_ts="1700000000.000999", channel="C1")
    await app.settle(timeout=20)

    [parent] = app.top_level("C1")
    for alert in alerts:
        requeued = [u for u in updates_of(slack, alert["ts"]) if "where it was asked" in u]
        assert requeued and slack_link_to(parent["ts"]) in requeued[0]
        assert not app.thread(ALERTS, alert["ts"])


async def test_6_a_bulk_run_where_the_app_cannot_post_sends_its_final_tally_through_response_url(make_app, runpod,
                                                                                                  slack):
    app = await make_app("http", **FAST)
    slack.not_in_channel.add("C9")
    for job in ("job-r1", "job-r2"):
        runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS", "IN_PROGRESS", "COMPLETED"))

    ack = await app.command(f"{EP} job-r1 job-r2", user="U3", channel="C9")
    await app.settle(timeout=20)

    posts = app.responses(ack.response_url)
    assert len(posts) == 3 and all(p.get("response_type") == "in_channel" for p in posts), slack.describe()
    parent, summary, final = (message_text(p) for p in posts)
    assert "in the thread" not in parent and "invite me" in parent, "no thread is promised where there is none"
    assert "Results for 2 jobs" in summary
    assert final.startswith("Bulk retry finished") and "All 2 jobs requeued" in final and "2 completed" in final
    assert "in the thread" not in final
    assert not slack.rejected()


# ---------------------------------------------------------------- 7. a double click on `failed`'s Confirm


@pytest.mark.parametrize(("second", "says"), [("U1", "You started retrying"), ("U2", "<@U1> started retrying")])
async def test_7_a_second_confirm_says_it_is_already_running_and_who_started_it(make_app, runpod, slack, second,
                                                                                says):
    app = await make_app("http", **FAST)
    for n in range(3):
        await alert_for(app, runpod, f"job-d{n}", after_retry=("IN_PROGRESS",) * 3 + ("COMPLETED",))
    ack = await app.command(f"failed {EP}", user="U1", channel="C1")
    await app.settle()
    value = buttons(app.responses(ack.response_url)[0])[actions.CONFIRM_FAILED]["value"]

    first, again = await asyncio.gather(
        app.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user="U1"),
        app.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user=second))
    await app.settle(timeout=20)

    assert len(runpod.calls_to("retry")) == 3, "each job once"
    answers = told(app, first) + told(app, again)
    assert len(answers) == 2 and any("Retrying 3 jobs" in a for a in answers)
    [running] = [a for a in answers if "under way" in a]
    assert says in running and "nothing more was done" in running
    assert not any("was seen failing" in a or "Nothing was done" in a for a in answers)


# ---------------------------------------------------------------- 8. `retry` is a reserved word


async def test_8_retry_as_the_first_word_retries_that_job_and_is_never_an_endpoint(app, runpod):
    runpod.add_job(EP, "job-w1", status="FAILED")

    await app.command(f"retry {EP} job-w1")
    await app.settle()

    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, "job-w1")]
    [parent] = app.top_level("C1")
    assert "endpoint `ep1`" in message_text(parent)


def test_8_parsing_retry():
    assert parse_command("retry ep-1 job") == Retry("ep-1", ("job",))
    assert parse_command("RETRY ep-1 a b") == Retry("ep-1", ("a", "b"))
    assert parse_command("retry ep-1/job") == Retry("ep-1", ("job",))
    with pytest.raises(UsageError, match="Tell me which job"):
        parse_command("retry")
    assert "`retry`" in messages.USAGE


# ---------------------------------------------------------------- 9. your own double click


async def test_9_your_own_double_click_says_you_with_a_link_to_the_result(app, runpod, slack):
    alert = await alert_for(app, runpod, "job-c9", after_retry=("IN_PROGRESS",) * 4 + ("COMPLETED",))
    runpod.latency = 0.05

    acks = await asyncio.gather(click_retry(app, alert, user="U7"), click_retry(app, alert, user="U7"))
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1
    [said] = [t for ack in acks for t in told(app, ack)]
    assert said.startswith("You already retried job job-c9"), said
    assert "You already retried job `job-c9`" in said and "someone else" not in said.lower()
    assert DATE.search(said) and slack_link_to(alert["ts"]) in said, "when, and a link to where the result is"


def test_9_already_claimed_names_the_viewer_as_you_and_others_by_mention():
    mine = messages.already_claimed(EP, "j1", "U7", 1_700_000_000, viewer="U7", where="https://x/archives/C/p1")
    theirs = messages.already_claimed(EP, "j1", "U7", 1_700_000_000, viewer="U8")
    assert mine["text"].startswith("You already retried job j1") and "<https://x/archives/C/p1|that thread>" in \
        blocks_text(mine)
    assert theirs["text"].startswith("Someone else already retried") and "<@U7> already retried" in \
        blocks_text(theirs)
    assert "the thread where it was asked" in blocks_text(theirs)
    running = messages.retry_all_running("U7", 1_700_000_000, viewer="U7")
    assert "You started *Retry all*" in blocks_text(running)
    for msg in (mine, theirs, running):
        assert_valid(msg)


# ---------------------------------------------------------------- 10. small wrong words


async def test_10_status_with_only_an_endpoint_answers_with_the_status_form(app):
    ack = await app.command(f"status {EP}")
    shown = message_text(ack.body)
    assert "/runpod-retry status <endpointId> <jobId>" in shown
    assert "`/runpod-retry <endpointId> <jobId>`" not in shown


async def test_10_a_refused_status_check_speaks_of_status_checks_not_retries(make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")

    ack = await app.command(f"status {EP} job-1", channel="C1")
    await app.settle()

    [said] = told(app, ack)
    assert "Status checks are not enabled in this channel" in said and "Retries" not in said
    assert not runpod.calls


async def test_10_one_failed_job_was_not_retried(make_app, runpod):
    app = await make_app("http")
    await alert_for(app, runpod, "job-one")

    ack = await app.command(f"failed {EP}")
    await app.settle()

    [offer] = told(app, ack)
    assert "*1 job* of endpoint `ep1` failed in the last 30 minutes and was not retried yet" in offer
    assert "were not" not in offer


async def test_10_a_502_says_the_retry_may_already_have_gone_through(make_app, runpod):
    app = await make_app("http")
    runpod.add_job(EP, "job-502", status="FAILED")
    runpod.fault("retry", status=502, body="<html>Bad Gateway</html>")
    runpod.fault("status", status=502, body="<html>Bad Gateway</html>")  # and the check after it fails too

    await app.command(f"{EP} job-502")
    await app.settle()

    [parent] = app.top_level("C1")
    [reply] = app.thread("C1", parent["ts"])
    said = message_text(reply)
    assert "server error" in said and "may still have gone through" in said
    assert f"/runpod-retry status {EP} job-502" in said and reply["blocks"][0]["text"]["text"].startswith(":warning:")


@pytest.mark.parametrize("fault", [{"status": 401}, {"status": 502}], ids=["401", "502"])
async def test_10_after_a_401_or_502_the_alert_keeps_retry_and_its_deadline(make_app, runpod, fault):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-k1")
    runpod.fault("retry", **fault)
    runpod.fault("status", **fault)

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert actions.RETRY in buttons(shown)
    line = next(text for text in message_text(shown).splitlines() if "You can try again until" in text)
    [deadline] = [int(n) for n in DATE.findall(line)]
    assert abs(deadline - (time.time() + 30 * 60)) < 30


async def test_10_audit_lines_name_the_retrier_without_a_notification(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_AUDIT_CHANNEL=AUDIT)
    runpod.add_job(EP, "job-a1", status="FAILED")

    await app.command(f"{EP} job-a1", user="U1")
    await app.settle()

    [posted] = [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == AUDIT]
    sent = json.dumps(posted.args)
    assert "<@U1>" not in sent and "@U1" in sent, "posted without a mention: nobody is notified"
    [line] = app.top_level(AUDIT)
    assert "<@U1>" in message_text(line), "then edited to a mention, which Slack does not notify"
    assert [c.args["ts"] for c in slack.calls_to("chat.update") if c.args.get("channel") == AUDIT] == [line["ts"]]


async def test_10_a_grouped_alert_does_not_say_its_first_alerts_are_above(make_app, runpod):
    app = await make_app("http", **FAST)
    for n in range(6):
        runpod.add_job(EP, f"job-g{n}", status="FAILED")
        await app.webhook(EP, {"id": f"job-g{n}", "status": "FAILED", "error": "boom"})
    await app.settle()

    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    said = message_text(storm)
    assert "The first 4 also got alerts of their own, posted before the storm was recognised" in said
    assert "above" not in said


# ---------------------------------------------------------------- 11. history


async def test_11_history_in_plain_reasons_fixed_columns_mentions_and_the_readers_time(make_app, runpod):
    app = await make_app("http")
    long_job = "j" * 100
    runpod.add_job(EP, "job-h1", status="FAILED")
    await app.command(f"{EP} job-h1", user="U1", channel="C1")
    await app.command(f"{EP} {long_job}", user="U2", channel="C2")  # RunPod answers 404 with a JSON error
    await app.settle()

    ack = await app.command("history", user="U3")
    await app.settle()

    [reply] = app.responses(ack.response_url)
    rows = [b["fields"] for b in reply["blocks"] if b.get("fields")]
    cells = [f["text"] for fields in rows for f in fields]
    assert len(cells) == 4, "two fixed columns per attempt, whatever the IDs' length"
    gone_when, gone_what, ok_when, ok_what = cells
    assert "<@U2>" in gone_when and "<#C2>" in gone_when and "by command" in gone_when
    assert long_job not in gone_when, "long IDs sit in their own column and cannot shift the others"
    assert "RunPod does not know the job" in gone_what and f"`{long_job}`" in gone_what
    assert "<@U1>" in ok_when and "<#C1>" in ok_when and "requeued" in ok_what
    for when in (gone_when, ok_when):
        [at] = [int(n) for n in DATE.findall(when)]
        assert abs(at - time.time()) < 60
    everything = message_text(reply)
    # "requeued" is the vocabulary's word for what RunPod did (bot/core/words.py), not a leaked code.
    for raw in ("not_found", "not_retryable", "404", "{\"", "refused:", "(UTC)"):
        assert raw not in everything, raw
    assert_valid(reply)


def test_11_every_recorded_outcome_has_plain_words_and_the_longest_history_is_valid():
    for code in [k.value for k in Kind] + ["refused:access", "refused:budget", "refused:duplicate",
                                           "refused:completed", "refused:shutdown", "refused:error"]:
        icon, words = messages.attempt_words(code, "COMPLETED")
        assert icon.startswith(":") and words and "_" not in words and "{" not in words, (code, words)
    rows = [{"at": 1_700_000_000 + n, "user": f"U{n}", "channel": "C" + "9" * 20, "source": "retry_all",
             "endpoint": "e" * 128, "job": "j" * 128, "outcome": "not_found", "job_status": None}
            for n in range(50)]
    msg = messages.history_message(rows, 50)
    assert_valid(msg)
    assert all(len(b["fields"]) <= 10 for b in msg["blocks"] if b.get("fields"))


# ---------------------------------------------------------------- 12. noise


async def test_12_replies_have_no_jargon_and_runpods_json_sits_under_the_sentence(app, runpod):
    runpod.add_job(EP, "job-q1", status="FAILED")

    await app.command(f"{EP} job-q1")
    await app.settle()

    [parent] = app.top_level("C1")
    result, final = app.thread("C1", parent["ts"])
    sentence, advice = result["blocks"][0]["text"]["text"], result["blocks"][1]["elements"][0]["text"]
    assert sentence == (":hourglass_flowing_sand: Job `job-q1` on endpoint `ep1` was requeued: it is waiting in the "
                        "queue.")
    for jargon in ("IN_QUEUE", "HTTP", "TTL", "/runsync"):
        assert jargon not in sentence + advice + result["text"]
    assert result["blocks"][2]["elements"][0]["text"] == "RunPod's answer (HTTP 200):"
    assert '"status": "IN_QUEUE"' in blocks_text(result), "RunPod's JSON is still in the thread"
    assert "The retry worked" in message_text(final)


def test_12_no_jargon_in_runpod_advice():
    gone = classify_retry(EP, "j", RunPodHTTPError("404", op="retry", status=404))
    assert "/runsync" not in gone.advice and "/run`" not in gone.advice and "30 minutes" in gone.advice
    from bot.work import follow
    assert "TTL" not in open(follow.__file__, encoding="utf-8").read()


async def test_12_a_typo_shows_one_usage_line_not_the_whole_help(app):
    ack = await app.command(f"{EP} job!")
    shown = message_text(ack.body)
    assert "'!'" in shown and "/runpod-retry help" in shown
    assert shown.count("• `/runpod-retry") == 0 and len(shown) < 600


async def test_12_the_bulk_summary_keeps_up_as_jobs_end_and_attaches_runpods_json(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    runpod.add_job(EP, "job-u1", status="FAILED")
    runpod.add_job(EP, "job-u2", status="FAILED", after_retry=("IN_PROGRESS",) * 6 + ("FAILED",),
                   final_error="OOM again")

    await app.command(f"{EP} job-u1 job-u2", user="U1")
    await app.settle(timeout=20)

    [parent] = app.top_level("C1")
    summary, mention = app.thread("C1", parent["ts"])  # job-u2 failed again after the summary: one mention
    assert "<@U1>, job `job-u2` you retried" in message_text(mention)
    table = blocks_text(summary)
    assert "job-u1  requeued, completed" in table and "job-u2  requeued, failed again" in table
    assert "IN_QUEUE" not in table and '"job":' not in table, "no frozen state, no JSON dump under the table"
    [upload] = slack.uploads.values()
    assert {r["job"] for r in json.loads(upload)["results"]} == {"job-u1", "job-u2"}
    title = message_text(current(app, parent, "C1"))
    assert "All 2 jobs requeued" in title and "Retrying" not in title


async def test_12_a_grouped_alert_stops_rushing_people_once_every_job_is_handled(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    for n in range(6):
        runpod.add_job(EP, f"job-h{n}", status="FAILED")
        await app.webhook(EP, {"id": f"job-h{n}", "status": "FAILED", "error": "boom"})
    await app.settle()
    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    assert "Retry before" in message_text(storm)

    await app.click(actions.RETRY_ALL, buttons(storm)[actions.RETRY_ALL]["value"], message_ts=storm["ts"])
    await app.settle(timeout=20)

    said = message_text(current(app, storm))
    assert "Retry before" not in said and "Every job of this alert was requeued" in said
    assert "6 completed" in said


async def test_12_the_failed_again_reply_shows_the_error_once(app, runpod):
    alert = await alert_for(app, runpod, "job-e2", after_retry=("IN_PROGRESS", "FAILED"),
                            final_error="RuntimeError: the one and only error")

    await click_retry(app, alert)
    await app.settle()

    last = app.thread(ALERTS, alert["ts"])[-1]
    assert blocks_text(last).count("the one and only error") == 1
    assert "its `error` is shown above" in blocks_text(last) and '"status": "FAILED"' in blocks_text(last)


# ---------------------------------------------------------------- the builders stay inside Slack's limits


def test_every_new_message_is_valid_block_kit():
    now = 1_700_000_000.0
    storm = Storm("e" * 128, ALERTS, now, now, {f"j{n}": StormJob("FAILED", "boom", now) for n in range(6)},
                  singles=4)
    storm.requested = list(storm.jobs)
    results = [JobResult("j" * 128, "not_found", 404, None, "RunPod does not know it " * 20)]
    built = [
        messages.alert_message(Alert("e" * 128, "j" * 128, ALERTS, "FAILED", now, ts="1.2"), now, enabled=False),
        messages.alert_undelivered(EP, "j" * 128, "FAILED", "x" * 5000, "C" + "1" * 20),
        messages.alert_undelivered(EP, "j1", "FAILED", None, "C1", count=300),
        messages.already_completed(EP, "j" * 128, "U1", now, viewer="U2", where="https://x/archives/C/p1"),
        messages.already_completed(EP, "j1", None, None),
        messages.failed_running(EP, 1000, "U1", now, viewer="U1", where="https://x/archives/C/p1"),
        messages.bulk_final("U1", EP, Tally(3, answered=3, completed=3), []),
        messages.bulk_summary(EP, results, "f.json", can_attach=False, finals={}, table=False)[0],
        messages.storm_alert(storm, now, enabled=False),
        messages.storm_alert(storm, now),
        messages.usage_error("x" * 4000, "`/runpod-retry history [N]`"),
    ]
    for msg in built:
        assert_valid(msg)
    assert "Retry before" not in message_text(built[-2])
    pinging = Storm(EP, ALERTS, now, now, {f"j{n}": StormJob("FAILED", "<!channel> boom", now) for n in range(6)})
    assert "<!channel>" not in messages.storm_alert(pinging, now)["text"]
    assert buttons(built[-3]) == {}


def test_parse_status_keeps_its_own_form():
    assert parse_command("status ep1 job-1") == Status("ep1", "job-1")
    with pytest.raises(UsageError) as caught:
        parse_command("status ep1")
    assert caught.value.form == "`/runpod-retry status <endpointId> <jobId>`"


async def test_1_healthz_says_which_channel_cannot_be_posted_to(make_app, slack):
    slack.not_in_channel.add(ALERTS)
    app = await make_app("http")  # the start-up check runs as the app starts

    status, text = await app.get("/healthz")

    assert status == 200  # a settings problem, not a reason to restart the process
    report = json.loads(text)["channels"]
    assert report["ok"] is False
    assert report["alert"]["channel"] == ALERTS and report["alert"]["can_post"] is False
    assert report["alert"]["error"] == "not_in_channel"


def test_one_job_is_one_job_not_one_jobs():
    one = Tally(1, answered=1, completed=1)
    assert "1 job requeued on endpoint" in message_text(messages.bulk_parent("U1", EP, one, []))
    assert message_text(messages.bulk_final("U1", EP, one, [])).startswith("Bulk retry finished: 1 job requeued")
    assert "Retrying 1 job on endpoint" in message_text(messages.failed_started(EP, 1))
    assert "Retrying 3 jobs on endpoint" in message_text(messages.failed_started(EP, 3))
