"""What an alert and its thread say: the notification leads with the failure, icons follow the job's state, alerts
retried elsewhere link to where it was asked, grouped alerts stop rushing people once handled, audit lines notify
nobody, and an error is shown once."""

from __future__ import annotations

import json
import re

from bot.core import actions
from testkit.harness import blocks_text, buttons, message_text
from tests.app.alerting import (
    ALERTS,
    AUDIT,
    EP,
    FAST,
    alert_for,
    click_retry,
    current,
    slack_link_to,
    updates_of,
)


async def test_the_notification_text_leads_with_the_failure_its_error_and_the_deadline(app, runpod):
    alert = await alert_for(app, runpod, "job-n1")

    text = alert["text"]  # what a phone shows

    assert text.startswith("FAILED: job job-n1 on ep1: CUDA out of memory. Retry before ")
    assert re.search(r"Retry before \d\d:\d\d UTC\.$", text), text
    assert "<!date" not in text


async def test_the_alerts_status_button_puts_a_red_circle_on_a_failed_job(app, runpod):
    alert = await alert_for(app, runpod, "job-s2")

    await app.click(actions.STATUS, buttons(alert)[actions.STATUS]["value"], message_ts=alert["ts"])
    await app.settle()

    [reply] = app.thread(ALERTS, alert["ts"])
    assert reply["blocks"][0]["text"]["text"].startswith(":red_circle: Job `job-s2` on endpoint `ep1` failed")
    assert ":white_check_mark:" not in blocks_text(reply)


async def test_single_alerts_retried_by_retry_all_link_to_the_grouped_run_instead_of_promising_their_thread(
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


async def test_alerts_retried_by_a_failed_confirmation_link_to_the_run(make_app, runpod, slack):
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


async def test_audit_lines_name_the_retrier_without_a_notification(make_app, runpod, slack):
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


async def test_a_grouped_alert_does_not_say_its_first_alerts_are_above(make_app, runpod):
    app = await make_app("http", **FAST)
    for n in range(6):
        runpod.add_job(EP, f"job-g{n}", status="FAILED")
        await app.webhook(EP, {"id": f"job-g{n}", "status": "FAILED", "error": "boom"})
    await app.settle()

    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    said = message_text(storm)
    assert "The first 4 also got alerts of their own, posted before the storm was recognised" in said
    assert "above" not in said


async def test_a_grouped_alert_stops_rushing_people_once_every_job_is_handled(make_app, runpod, slack):
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


async def test_the_failed_again_reply_shows_the_error_once(app, runpod):
    alert = await alert_for(app, runpod, "job-e2", after_retry=("IN_PROGRESS", "FAILED"),
                            final_error="RuntimeError: the one and only error")

    await click_retry(app, alert)
    await app.settle()

    last = app.thread(ALERTS, alert["ts"])[-1]
    assert blocks_text(last).count("the one and only error") == 1
    assert "its `error` is shown above" in blocks_text(last) and '"status": "FAILED"' in blocks_text(last)

