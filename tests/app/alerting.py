"""What the app tier's tests of alerts, clicks and replies share: where things go, how to raise an alert, click it
and read what each person was told."""

from __future__ import annotations

import re
from typing import Any

from bot.core import actions
from testkit.harness import buttons, message_text

EP = "ep1"
ALERTS = "CALERTS"
AUDIT = "CAUDIT"
FAST = {"RUNPOD_BULK_CONCURRENCY": "16", "RUNPOD_FOLLOW_INTERVAL": "0.05"}
FAILED_BODY = {"status": "FAILED", "error": "CUDA out of memory", "delayTime": 567, "executionTime": 1234}
DATE = re.compile(r"<!date\^(\d+)\^")


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
    """The message as it looks now (after every chat.update)."""
    return app.slack.messages[(channel, msg["ts"])]


def updates_of(slack, ts: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The text of every accepted chat.update of one message, in order."""
    return [message_text(c.args) for c in slack.calls_to("chat.update") if c.args.get("ts") == ts and c.ok]


async def alert_via_webhook(app, runpod, job: str, **job_options: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """RunPod fails `job` on EP and calls the webhook; returns the alert as it is in Slack."""
    runpod.add_job(EP, job, status="FAILED", **job_options)
    status, answer = await app.webhook(EP, {"id": job, **FAILED_BODY})
    assert status == 200, answer
    await app.slack.wait_for(lambda s: [m for m in app.top_level(ALERTS) if job in message_text(m)])
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


async def click_retry(app, alert: dict[str, Any], user: str = "U7", value: str | None = None,  # type: ignore[no-untyped-def]
                      **kw: Any):
    """Click the alert's Retry as it is drawn now (or a `value` from an older drawing)."""
    value = value or buttons(current(app, alert))[actions.RETRY]["value"]
    return await app.click(actions.RETRY, value, message_ts=alert["ts"], user=user, **kw)


def told(app, ack) -> list[str]:  # type: ignore[no-untyped-def]
    """What the clicker or typist was told through the response_url."""
    return [message_text(r) for r in app.responses(ack.response_url)]


def private_texts(app, ack) -> str:  # type: ignore[no-untyped-def]
    """What the clicker was told privately: response_url posts for this click, and chat.postEphemeral."""
    via_url = [message_text(r) for r in app.responses(ack.response_url)]
    ephemeral = [message_text(c.args) for c in app.slack.calls_to("chat.postEphemeral")]
    return "\n".join(via_url + ephemeral)


def slack_link_to(ts: str) -> str:
    """The part of a Slack message link that names the message."""
    return "/p" + ts.replace(".", "")
