"""What the app tier's tests of `/runpod-retry` share: RunPod's HTML error pages, reading an ack and a reply, and
checking that the app still serves after a fault."""

from __future__ import annotations

import re
from typing import Any

from testkit.fakes import FakeRunPod, FakeSlack
from testkit.harness import Ack, Harness, message_text

USAGE_MARK = "/runpod-retry <endpointId> <jobId>"
HTML_502 = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style></head>"
            "<body><h1>502 Bad Gateway</h1><p>cloudflare</p></body></html>")
HTML_500 = "<html><body><h1>500 Internal Server Error</h1><p>upstream worker crashed</p></body></html>"
TAG = re.compile(r"</?(html|head|body|h1|p|title|style|script|!doctype)\b", re.I)


def ack_text(ack: Ack) -> str:
    return message_text(ack.body) if isinstance(ack.body, dict) else str(ack.body)


def slack_messages_text(slack: FakeSlack) -> str:
    """Every readable text the app sent to Slack: posts, updates, ephemerals and response_url posts."""
    return "\n".join(message_text(c.args) for c in slack.calls
                     if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"))


def first_reply(app: Harness, channel: str = "C1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [parent] = app.top_level(channel)
    return parent, app.thread(channel, parent["ts"])


async def assert_still_serving(app: Harness, runpod: FakeRunPod) -> None:
    """A later, ordinary command still works end to end (the fault did not break the app)."""
    runpod.add_job("ep-ok", "job-after", status="FAILED")
    before = len(app.top_level("C2"))
    ack = await app.command("ep-ok job-after", channel="C2")
    assert ack.status == 200
    await app.settle()
    assert any(c.op == "retry" and c.job == "job-after" and c.status == 200 for c in runpod.calls)
    parent = app.top_level("C2")[before]
    text = app.thread_text("C2", parent["ts"])
    assert "was requeued" in text and "HTTP 200" in text

