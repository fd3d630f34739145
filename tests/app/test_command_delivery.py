"""A command's answer reaches the caller whatever its size and wherever it was asked: through the response_url
where the bot cannot post, long JSON split or attached as a file, and never a secret, even when RunPod echoes
the key."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from testkit.env import SECRETS
from testkit.harness import message_text
from tests.app.commanding import (
    first_reply,
)

FALLBACKS = [
    ("not_in_channel", "C9", lambda slack: slack.not_in_channel.add("C9")),
    ("channel_not_found", "C9", lambda slack: slack.missing_channels.add("C9")),
    ("dm", "D123", lambda slack: slack.not_in_channel.add("D123")),
]


@pytest.mark.parametrize(("channel", "block"), [f[1:] for f in FALLBACKS], ids=[f[0] for f in FALLBACKS])
async def test_where_the_bot_cannot_post_everything_goes_to_the_response_url(app, runpod, slack, channel, block):
    block(slack)
    runpod.add_job("ep1", "job-f", status="FAILED")

    ack = await app.command("ep1 job-f", user="U3", channel=channel)

    assert ack.status == 200
    await app.settle()
    assert [c.job for c in runpod.calls_to("retry")] == ["job-f"]
    assert app.posts(channel) == []
    posts = app.responses(ack.response_url)
    assert len(posts) == 3, slack.describe()
    assert all(p.get("response_type") == "in_channel" for p in posts)
    parent, result, final = (message_text(p) for p in posts)
    assert "<@U3>" in parent and "job-f" in parent and "ep1" in parent
    assert "invite me" in parent  # says why the result is not in a thread
    assert "HTTP 200" in result and '"status": "IN_QUEUE"' in result and "was requeued" in result
    assert "completed" in final and "job-f" in final
    assert not slack.rejected()


async def test_status_where_the_bot_cannot_post_goes_to_the_response_url(make_app, runpod, slack):
    app = await make_app("http")
    slack.not_in_channel.add("C9")
    runpod.add_job("ep1", "job-f", status="TIMED_OUT", error=None)

    ack = await app.command("status ep1 job-f", channel="C9")
    await app.settle()

    posts = app.responses(ack.response_url)
    assert [p.get("response_type") for p in posts] == ["in_channel", "in_channel"]
    assert "job-f" in message_text(posts[0])
    assert "HTTP 200" in message_text(posts[1]) and '"status": "TIMED_OUT"' in message_text(posts[1])
    assert runpod.calls_to("retry") == []


def _code_blocks(msg: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in msg.get("blocks", [])
            if b.get("type") == "section" and b.get("text", {}).get("text", "").startswith("```")]


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def test_json_of_about_8_kb_is_split_across_sections(make_app, runpod, slack):
    app = await make_app("http")
    output = {"text": "a<b>&c;" * 1150, "seed": 42}  # about 8 KB, and escaping makes it longer
    runpod.add_job("ep1", "job-8k", status="COMPLETED", output=output)

    await app.command("status ep1 job-8k")
    await app.settle()

    _parent, [reply] = first_reply(app)
    chunks = _code_blocks(reply)
    assert len(chunks) >= 3
    assert all(len(c) <= 3000 for c in chunks)
    shown = "".join(_unescape(c.strip("`")) for c in chunks)
    [status_call] = runpod.calls_to("status")
    expected = json.dumps(status_call.body, indent=2, ensure_ascii=False)
    assert re.sub(r"\s", "", shown) == re.sub(r"\s", "", expected)
    assert slack.calls_to("files.completeUploadExternal") == []
    assert not slack.rejected()


async def test_json_of_50_kb_is_attached_as_a_file_in_the_thread(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-50k", status="COMPLETED", output={"text": "z" * 50_000})

    await app.command("status ep1 job-50k")
    await app.settle()

    parent, replies = first_reply(app)
    assert "HTTP 200" in message_text(replies[0]) and "attached" in message_text(replies[0])
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.ok, slack.describe()
    assert complete.args["channel_id"] == "C1" and complete.args["thread_ts"] == parent["ts"]
    [file_id] = [f["id"] for f in complete.args["files"]]
    [status_call] = runpod.calls_to("status")
    assert json.loads(slack.uploads[file_id]) == status_call.body
    assert not slack.rejected()


async def test_a_retried_job_that_completes_with_huge_output_is_still_reported(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-huge", status="FAILED", output={"text": "q" * 50_000})

    await app.command("ep1 job-huge")
    await app.settle()

    _parent, replies = first_reply(app)
    assert "completed" in message_text(replies[-1])
    assert not slack.rejected()


async def test_no_secret_reaches_slack_even_when_runpod_echoes_the_key(app, runpod, slack):
    runpod.add_job("ep1", "job-a", status="FAILED")
    runpod.add_job("ep1", "job-b", status="FAILED")
    runpod.add_job("ep1", "job-c", status="FAILED")
    runpod.fault("retry", status=401, body={"error": "Invalid API key rp-test-key",
                                            "key": "rp-test-key", "hint": "Bearer rp-test-key"})
    runpod.fault("retry", status=401, body="invalid key: rp-test-key")
    acks = [await app.command("ep1 job-a"), await app.command("ep1 job-b"), await app.command("ep1 job-c"),
            await app.command("status ep1 job-c"), await app.command("ep1 job!")]
    await app.settle()

    # The two 401s went to whichever two retries reached RunPod first (on a loaded machine not always job-a's and
    # job-b's), and their parents may be posted in either order: read every thread in the channel.
    texts = "".join(app.thread_text("C1", parent["ts"]) for parent in app.top_level("C1"))
    assert texts.count("RUNPOD_API_KEY") == 2
    assert "[redacted]" in texts
    everything = app.everything_sent_to_slack() + json.dumps([a.body for a in acks]) + json.dumps(
        [c.args for c in slack.calls if c.method == "response_url"])
    leaked = [s for s in SECRETS if s in everything]
    assert leaked == []


async def test_huge_json_where_the_bot_cannot_post_still_reaches_the_caller(make_app, runpod, slack):
    app = await make_app("http")
    slack.not_in_channel.add("C9")
    runpod.add_job("ep1", "job-50k", status="COMPLETED", output={"text": "z" * 50_000})

    ack = await app.command("status ep1 job-50k", channel="C9")
    await app.settle()

    parent, result = app.responses(ack.response_url)
    assert "job-50k" in message_text(parent)
    text = message_text(result)
    assert "HTTP 200" in text and '"status": "COMPLETED"' in text and "too long to show here" in text
    assert slack.calls_to("files.getUploadURLExternal") == []
    assert not slack.rejected()

