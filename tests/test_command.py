"""`/runpod-retry` end to end, in both modes, over real loopback HTTP."""

from __future__ import annotations

from tests.harness import SECRETS, message_text


async def test_retry_posts_parent_then_json_result_in_its_thread_and_follows_to_the_end(app, runpod, slack):
    runpod.add_job("ep1", "job-1-u1", status="FAILED")

    ack = await app.command("ep1 job-1-u1", user="U1", channel="C1")

    assert ack.status == 200
    assert ack.latency < 1.0
    await app.settle()
    retry_calls = runpod.calls_to("retry")
    assert [(c.endpoint, c.job) for c in retry_calls] == [("ep1", "job-1-u1")]
    assert retry_calls[0].authorization == "Bearer rp-test-key"
    [parent] = app.top_level("C1")
    assert "<@U1>" in message_text(parent) and "job-1-u1" in message_text(parent) and "ep1" in message_text(parent)
    replies = app.thread("C1", parent["ts"])
    assert len(replies) == 2, slack.describe()
    result = message_text(replies[0])
    assert "HTTP 200" in result and '"status": "IN_QUEUE"' in result and "back in the queue" in result
    final = message_text(replies[-1])
    assert "completed" in final
    assert not slack.rejected()
    everything = app.everything_sent_to_slack()
    assert not any(secret in everything for secret in SECRETS)
