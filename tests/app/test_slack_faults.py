"""Slack misbehaving: rate limits and server errors on chat.postMessage, and the Socket Mode connection dropping."""

from __future__ import annotations

import asyncio
import time

from testkit.fakes import SlackCall, SlackFault
from testkit.harness import ACK_DEADLINE, Harness, message_text

OK = SlackFault()  # answered normally


async def wait_healthz(app: Harness, status: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = (await app.get("/healthz"))[0]
        if seen == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"/healthz stayed {seen}, expected {status}")


def posts(slack) -> list[SlackCall]:  # type: ignore[no-untyped-def]
    return slack.calls_to("chat.postMessage")


def results_in_thread(app: Harness, channel: str, ts: str) -> list[str]:
    return [t for t in (message_text(m) for m in app.thread(channel, ts)) if "was requeued" in t]


async def test_slack_429_on_the_result_reply_waits_retry_after_and_delivers_it_once(app, slack, runpod):
    runpod.add_job("ep1", "job-429", status="FAILED")
    slack.script("chat.postMessage", OK, SlackFault(status=429, headers={"Retry-After": "1"}))

    ack = await app.command("ep1 job-429")

    assert ack.status == 200
    await app.settle()
    [parent] = app.top_level("C1")
    assert len(results_in_thread(app, "C1", parent["ts"])) == 1, slack.describe()
    [limited] = [c for c in posts(slack) if c.status == 429]
    again = [c for c in posts(slack) if c.at > limited.at and c.args.get("thread_ts") == parent["ts"]]
    assert again and again[0].ok
    assert again[0].at - limited.at >= 0.9 * slack.time_scale  # Slack said Retry-After: 1 (a second of its clock)
    assert len(runpod.calls_to("retry")) == 1  # Slack's trouble did not retry the job twice


async def test_slack_5xx_on_the_parent_and_the_result_are_retried_and_both_delivered_once(make_app, slack, runpod):
    app = await make_app("http")
    runpod.add_job("ep1", "job-5xx", status="FAILED")
    slack.script("chat.postMessage", SlackFault(status=503), OK, SlackFault(status=500), OK)

    ack = await app.command("ep1 job-5xx")

    assert ack.status == 200
    await app.settle()
    assert [c.status for c in posts(slack)][:4] == [503, 200, 500, 200]
    [parent] = app.top_level("C1")
    assert "job-5xx" in message_text(parent)
    assert len(results_in_thread(app, "C1", parent["ts"])) == 1, slack.describe()
    assert len(runpod.calls_to("retry")) == 1


async def test_slack_5xx_that_never_ends_is_given_up_on_without_a_crash(make_app, slack, runpod):
    app = await make_app("http")
    runpod.add_job("ep1", "job-down", status="FAILED")
    slack.script("chat.postMessage", *[SlackFault(status=503)] * 10)

    ack = await app.command("ep1 job-down")

    assert ack.status == 200
    await app.settle()
    # The channel could not be reached, so the command's response_url carried the news instead.
    said = " ".join(message_text(r) for r in app.responses(ack.response_url))
    assert "job-down" in said, slack.describe()
    assert (await app.get("/healthz"))[0] == 200


async def test_a_dropped_socket_shows_on_healthz_until_it_reconnects_then_commands_work_again(make_app, slack,
                                                                                               runpod):
    app = await make_app("socket")
    await wait_healthz(app, 200)
    connections = slack.socket_connections

    slack.refuse_sockets = True
    await slack.drop_sockets()

    await wait_healthz(app, 503)
    opened = len(slack.calls_to("apps.connections.open"))
    await slack.wait_for(lambda s: len(s.calls_to("apps.connections.open")) > opened, timeout=10)
    status, text = await app.get("/healthz")
    assert status == 503 and "disconnected" in text  # it tried again, was refused, and still says so

    slack.refuse_sockets = False
    await slack.wait_socket(timeout=15)
    await wait_healthz(app, 200)
    assert slack.socket_connections > connections

    runpod.add_job("ep1", "job-after-drop", status="FAILED")
    ack = await app.command("ep1 job-after-drop")  # over the new socket
    await app.settle()
    [parent] = app.top_level("C1")
    assert "job-after-drop" in message_text(parent)
    assert len(results_in_thread(app, "C1", parent["ts"])) == 1
    assert ack.latency < ACK_DEADLINE


async def test_an_ok_without_a_ts_puts_the_result_in_the_channel_not_in_a_thread_named_none(app, slack, runpod):
    # Slack said ok but not where the parent went: the result is still seen, in the channel.
    runpod.add_job("ep1", "job-odd", status="FAILED")
    slack.script("chat.postMessage", SlackFault(body={"ok": True}))

    ack = await app.command("ep1 job-odd")

    assert ack.status == 200
    await app.settle()
    shown = [message_text(m) for m in app.top_level("C1")]
    assert any("job-odd" in t and "was requeued" in t for t in shown), slack.describe()
    assert not [m for m in slack.messages.values() if m.get("thread_ts") == "None"]
    assert len(runpod.calls_to("retry")) == 1


async def test_an_unexpected_failure_sending_a_message_leaves_it_queued_and_it_is_sent_once(tmp_path):
    from bot.infra.metrics import Metrics
    from bot.slack.outbox import Outbox
    from bot.store import open_store

    class Flaky:  # a Web API client whose first answer breaks in a way the outbox has no name for
        def __init__(self) -> None:
            self.calls = 0

        async def chat_postMessage(self, **payload: object) -> dict[str, str]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("unexpected")
            return {"ts": "1.5"}

    store = open_store(str(tmp_path / "outbox.db"))
    await store.open()
    client = Flaky()
    outbox = Outbox(store, client, Metrics())  # type: ignore[arg-type]
    try:
        _id, pending = await outbox.submit("post", {"channel": "C1", "text": "hello"})
        delivery = await asyncio.wait_for(pending, 10)
        assert (delivery.ok, delivery.ts, client.calls) == (True, "1.5", 2)
        assert await store.queued() == []
    finally:
        await outbox.close(0.1)
        await store.close()


async def test_a_click_while_the_database_is_away_is_told_so_privately_and_nothing_is_done(app, slack, runpod):
    from bot.core import actions
    from testkit.harness import button_value
    from tests.app.alerting import ALERTS, alert_via_webhook

    alert = await alert_via_webhook(app, runpod, "job-db1")
    app.rt.database_state(False)  # a lease renewal found the database away

    ack = await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], channel=ALERTS)
    url = ack.response_url

    assert ack.status == 200
    await slack.wait_for(lambda s: s.responses.get(url))
    assert "cannot reach its database" in message_text(slack.responses[url][0])
    assert runpod.calls_to("retry") == []


async def test_a_slack_call_that_keeps_failing_unexpectedly_is_set_aside_and_the_channel_goes_on(make_app, runpod,
                                                                                                 slack):
    """slack_sdk's files_upload_v2 raises TypeError when files.completeUploadExternal answers without `files`: a
    failure the outbox does not foresee. After its set-aside time the call is given up, the person is told in the
    thread how else to see the JSON, and later messages in that channel are not held up behind it."""
    app = await make_app("http")
    app.rt.outbox.set_aside_after = 1.0  # production: about a minute
    slack.script("files.completeUploadExternal", *[SlackFault(body={"ok": True})] * 20)
    runpod.add_job("ep1", "job-50k", status="COMPLETED", output={"text": "z" * 50_000})
    runpod.add_job("ep1", "job-small", status="COMPLETED", output={"images": 2})

    await app.command("status ep1 job-50k")
    await slack.wait_for(lambda s: len(s.calls_to("files.completeUploadExternal")) >= 1, timeout=10)
    await app.command("status ep1 job-small")
    await app.settle(timeout=20)

    parents = app.top_level("C1")
    [big] = [p for p in parents if "job-50k" in message_text(p)]
    [small] = [p for p in parents if "job-small" in message_text(p)]
    thread = app.thread_text("C1", big["ts"])
    assert "could not attach `runpod-ep1-job-50k.json`" in thread
    assert "Slack kept failing the upload" in thread and "/runpod-retry status ep1 job-50k" in thread
    assert "HTTP 200" in app.thread_text("C1", small["ts"])
    _, body = await app.get("/healthz")
    assert '"slack_calls_set_aside": 1' in body
    assert len(slack.calls_to("files.completeUploadExternal")) < 20, "the call was not tried forever"
