"""An alert channel the app cannot post to is found and said plainly: in the audit channel with the fix, in the
start-up log, and in /healthz; a check Slack cannot answer is "unknown", not a guess."""

from __future__ import annotations

import json
import logging
from typing import Any

from testkit.fakes.slack import SlackFault
from testkit.harness import message_text
from tests.app.alerting import (
    ALERTS,
    AUDIT,
    EP,
)


async def test_an_alert_slack_refuses_is_reported_to_the_audit_channel_with_the_fix(make_app, slack, runpod,
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
    # It names the first alert refused: the two are handled side by side, so either may be first.
    assert "/invite @RunPod Retry" in said and f"<#{ALERTS}>" in said and ("job-lost-1" in said) != (
        "job-lost-2" in said)
    assert "RUNPOD_ALERT_CHANNEL" in said and f"/runpod-retry failed {EP}" in said
    # Every lost alert is logged.
    assert "/invite @RunPod Retry" in caplog.text and "job-lost-1" in caplog.text and "job-lost-2" in caplog.text
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


async def test_the_start_up_check_says_plainly_which_channel_cannot_be_posted_to(make_app, slack, caplog):
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


async def test_a_check_slack_cannot_answer_says_so_instead_of_guessing(make_app, slack, caplog):
    caplog.set_level(logging.INFO)
    app = await make_app("http")
    slack.script("chat.scheduleMessage", *[SlackFault(status=503)] * 3)  # Slack cannot answer the check

    [state] = await app.rt.check_channels()

    assert state.ok is None and "could not check" in state.describe()
    assert app.rt.channel_report()["ok"] is True  # unknown is not a failure


async def test_healthz_says_which_channel_cannot_be_posted_to(make_app, slack):
    slack.not_in_channel.add(ALERTS)
    app = await make_app("http")  # the start-up check runs as the app starts

    status, text = await app.get("/healthz")

    assert status == 200  # a settings problem, not a reason to restart the process
    report = json.loads(text)["channels"]
    assert report["ok"] is False
    assert report["alert"]["channel"] == ALERTS and report["alert"]["can_post"] is False
    assert report["alert"]["error"] == "not_in_channel"

