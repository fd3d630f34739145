"""Failure alerts (issue 3): RunPod's webhook posts one alert per failure; its buttons retry exactly once and
the alert follows the retried job to its end. Everything over real loopback HTTP, clicks in both Slack modes."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from bot.core import actions
from testkit.env import SECRETS
from testkit.fakes.slack import SlackFault
from testkit.harness import job_calls, message_text

EP = "ep1"
ALERTS = "CALERTS"
FAILED_BODY = {"status": "FAILED", "error": "CUDA out of memory", "delayTime": 567, "executionTime": 1234}
DATE = re.compile(r"<!date\^(\d+)\^")


# ---------------------------------------------------------------- helpers


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alert's buttons by action_id."""
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


async def alert_via_webhook(app, runpod, job: str, **job_options: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """RunPod fails `job` and calls the webhook; returns the alert as it is in Slack."""
    runpod.add_job(EP, job, status="FAILED", **job_options)
    status, answer = await app.webhook(EP, {"id": job, **FAILED_BODY})
    assert status == 200, answer
    await app.slack.wait_for(lambda s: [m for m in app.top_level(ALERTS) if job in message_text(m)])
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


def current(app, alert: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The alert message as it looks now (after every chat.update)."""
    return app.slack.messages[(ALERTS, alert["ts"])]


def updates_of(slack, ts: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The text of every accepted chat.update of one message, in order."""
    return [message_text(c.args) for c in slack.calls_to("chat.update") if c.args.get("ts") == ts and c.ok]


async def click_retry(app, alert: dict[str, Any], user: str = "U7", **kw: Any):  # type: ignore[no-untyped-def]
    return await app.click(actions.RETRY, buttons(current(app, alert))[actions.RETRY]["value"],
                           message_ts=alert["ts"], user=user, **kw)


def private_texts(app, ack) -> str:  # type: ignore[no-untyped-def]
    """What the clicker was told privately: response_url posts for this click, and chat.postEphemeral."""
    via_url = [message_text(r) for r in app.responses(ack.response_url)]
    ephemeral = [message_text(c.args) for c in app.slack.calls_to("chat.postEphemeral")]
    return "\n".join(via_url + ephemeral)


# ---------------------------------------------------------------- the webhook


@pytest.mark.parametrize("status, words", [("FAILED", "failed"), ("TIMED_OUT", "timed out")])
async def test_failure_webhook_answers_fast_and_posts_one_alert_with_facts_deadline_and_buttons(
        make_app, slack, runpod, status, words):
    app = await make_app("http")
    slack.script("chat.postMessage", SlackFault(delay=2))
    body = {"id": "job-a1", "status": status, "error": "CUDA out of memory", "delayTime": 567,
            "executionTime": 1234}

    started = time.perf_counter()
    code, answer = await app.webhook(EP, body)
    latency = time.perf_counter() - started
    sent_at = time.time()

    assert code == 200 and answer["ok"] is True, answer
    assert latency < 0.5, f"the webhook waited on Slack ({latency:.2f} s)"
    await app.settle()
    [alert] = app.posts(ALERTS)
    assert not alert.get("thread_ts")
    text = message_text(alert)
    for fact in ("ep1", "job-a1", status.replace("_", " "), "CUDA out of memory", "0.6 s", "1.2 s", words):
        assert fact in text, f"{fact!r} missing from the alert:\n{text}"
    assert "retried until" in text
    deadline_line = next(line for line in text.splitlines() if "retried until" in line and DATE.search(line))
    [deadline] = [int(n) for n in DATE.findall(deadline_line)]
    assert abs(deadline - (sent_at + 30 * 60)) < 5
    assert "Failed at" in text and DATE.search(text)
    found = buttons(alert)
    retry, status_button = found[actions.RETRY], found[actions.STATUS]
    assert retry["style"] == "primary"
    assert "job-a1" in message_text({"blocks": [retry["confirm"]]})
    assert retry["value"] == status_button["value"] == "ep1/job-a1"
    assert actions.parse_job_value(retry["value"]) == ("ep1", "job-a1")
    assert not slack.rejected()
    assert not job_calls(runpod), "posting an alert must not retry or check the job (only the endpoint's health)"


async def test_long_traceback_is_trimmed_to_its_last_lines_and_slack_accepts_the_alert(make_app, slack):
    app = await make_app("http")
    frames = [f'  File "/app/handler.py", line {n}, in step_{n}\n    result = step_{n + 1}(x)' for n in range(400)]
    error = "Traceback (most recent call last):\n" + "\n".join(frames) + "\nRuntimeError: the real cause"

    code, _ = await app.webhook(EP, {"id": "job-tb", "status": "FAILED", "error": error})

    assert code == 200
    await app.settle()
    [alert] = app.top_level(ALERTS)
    text = message_text(alert)
    assert "RuntimeError: the real cause" in text
    assert "step_" not in text, "the alert shows the error's one line; the traceback is in its thread"
    [details] = app.thread(ALERTS, alert["ts"])
    whole = message_text(details)
    assert "RuntimeError: the real cause" in whole and "step_399(" in whole
    assert "step_0(" not in whole and "earlier lines cut" in whole
    assert not slack.rejected(), slack.describe()


async def test_an_alert_with_longest_ids_and_a_hostile_error_stays_inside_slack_limits_and_pings_nobody(
        make_app, slack):
    app = await make_app("http")
    endpoint, job = "e" * 128, "j" * 128
    error = {"message": "<!channel> look & <@U0ADMIN>", "trace": ["x" * 500] * 40}

    code, _ = await app.webhook(endpoint, {"id": job, "status": "FAILED", "error": error,
                                           "delayTime": 10 ** 12, "executionTime": -5})

    assert code == 200
    await app.settle()
    [alert] = app.top_level(ALERTS)
    text = message_text(alert)
    assert "<!channel>" not in text and "<@U0ADMIN>" not in text
    assert "&lt;!channel&gt;" in text
    [details] = app.thread(ALERTS, alert["ts"])  # the whole error, one click away, pings nobody either
    assert "<!channel>" not in message_text(details) and "<@U0ADMIN>" not in message_text(details)
    assert buttons(alert)[actions.RETRY]["value"] == f"{endpoint}/{job}"
    assert not slack.rejected(), slack.describe()


async def test_redelivered_webhook_gives_one_alert_even_across_a_restart(make_app, slack):
    app = await make_app("http")
    body = {"id": "job-r1", **FAILED_BODY}

    for _ in range(3):
        assert (await app.webhook(EP, body))[0] == 200
    await app.settle()
    at_once = await asyncio.gather(*(app.webhook(EP, {"id": "job-r2", **FAILED_BODY}) for _ in range(3)))
    assert [code for code, _ in at_once] == [200, 200, 200]
    await app.settle()
    assert sorted(message_text(m).count("job-r1") > 0 for m in app.top_level(ALERTS)) == [False, True]
    assert len(app.posts(ALERTS)) == 2, slack.describe()

    await app.restart()
    assert (await app.webhook(EP, body))[0] == 200
    await app.settle()

    assert len(slack.calls_to("chat.postMessage")) == 2, slack.describe()


async def test_an_alert_slack_refused_is_posted_by_the_next_delivery(make_app, slack):
    app = await make_app("http")
    slack.not_in_channel.add(ALERTS)
    body = {"id": "job-r3", **FAILED_BODY}

    assert (await app.webhook(EP, body))[0] == 200
    await app.settle()
    assert not app.posts(ALERTS)
    slack.not_in_channel.discard(ALERTS)  # someone invited the app; RunPod delivers again
    assert (await app.webhook(EP, body))[0] == 200
    await app.settle()

    [alert] = app.posts(ALERTS)
    assert "job-r3" in message_text(alert) and actions.RETRY in buttons(alert)


@pytest.mark.parametrize("endpoint, body, token, expected", [
    (EP, {"id": "job-f1", **FAILED_BODY}, None, 401),
    (EP, {"id": "job-f1", **FAILED_BODY}, "wrong-token", 403),
    (EP, {"id": "job-f1", **FAILED_BODY}, "", 401),
    (EP, '{"id": "job-f1", "status": "FAI', "ok", 400),
    (EP, b"\xff\xfe not utf-8", "ok", 400),
    (EP, "[1, 2, 3]", "ok", 400),
    ("ep.1", {"id": "job-f1", **FAILED_BODY}, "ok", 400),
    ("e" * 129, {"id": "job-f1", **FAILED_BODY}, "ok", 400),
    (EP, FAILED_BODY, "ok", 400),
    (EP, {"id": "../../etc/passwd", "status": "FAILED"}, "ok", 400),
    (EP, {"id": 42, "status": "FAILED"}, "ok", 400),
    (EP, {"id": "job-f1"}, "ok", 400),
    (EP, {"id": "job-f1", "status": "COMPLETED", "output": {"x": 1}}, "ok", 200),
    (EP, {"id": "job-f1", "status": "IN_PROGRESS"}, "ok", 200),
], ids=["no-token", "wrong-token", "empty-token", "truncated-json", "not-utf8", "not-an-object",
        "bad-endpoint", "long-endpoint", "no-id", "path-id", "numeric-id", "no-status", "completed-unknown",
        "in-progress-unknown"])
async def test_forged_malformed_or_uninteresting_webhooks_post_nothing(make_app, slack, runpod, endpoint, body,
                                                                      token, expected):
    from testkit.env import WEBHOOK_SECRET

    app = await make_app("http")

    code, answer = await app.webhook(endpoint, body, token=WEBHOOK_SECRET if token == "ok" else token)

    assert code == expected, answer
    if expected != 200:
        assert answer["ok"] is False and answer["error"]
    await app.settle()
    assert not slack.calls_to("chat.postMessage"), slack.describe()
    assert not runpod.calls
    assert WEBHOOK_SECRET not in str(answer)


async def test_webhook_is_off_without_a_secret(make_app, slack):
    app = await make_app("http", RUNPOD_WEBHOOK_SECRET="")

    code, answer = await app.webhook(EP, {"id": "job-x", **FAILED_BODY}, token="anything")

    assert code == 404 and "RUNPOD_WEBHOOK_SECRET" in answer["error"]
    await app.settle()
    assert not slack.calls_to("chat.postMessage")


# ---------------------------------------------------------------- clicking Retry


async def test_click_retry_requeues_once_reports_in_the_alert_thread_and_follows_to_completed(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-c1")

    ack = await click_retry(app, alert, user="U7")

    assert ack.status == 200 and ack.latency < 1.0
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
    assert "completed" in message_text(final).lower() and "<@U7>" in message_text(final)
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


# ---------------------------------------------------------------- following


async def test_following_survives_5xx_429_and_timeouts_on_status_and_still_reports_completed(
        make_app, mode, slack, runpod):
    app = await make_app(mode, RUNPOD_TIMEOUT="0.3", RUNPOD_MAX_ATTEMPTS="1", RUNPOD_FOLLOW_INTERVAL="0.01")
    alert = await alert_via_webhook(app, runpod, "job-p1", after_retry=("IN_PROGRESS", "IN_PROGRESS", "COMPLETED"))
    runpod.fault("status", status=500)
    runpod.fault("status", status=503)
    runpod.fault("status", status=429, headers={"Retry-After": "0"})
    runpod.fault("status", delay=1.0)

    await click_retry(app, alert)
    await app.settle(timeout=15)

    statuses = [c.status for c in runpod.calls_to("status")]
    assert statuses[:3] == [500, 503, 429] and statuses[-1] == 200, runpod.describe()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "completed" in thread.splitlines()[-1] or "completed" in message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "stopped following" not in thread
    assert "completed" in message_text(current(app, alert)).lower()


async def test_status_checks_that_keep_failing_are_mentioned_once_and_following_goes_on(make_app, slack, runpod):
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.01")
    alert = await alert_via_webhook(app, runpod, "job-p4", after_retry=("COMPLETED",))
    runpod.fault("status", status=502, times=5)  # the fifth failure in a row is the one worth a word

    await click_retry(app, alert)
    await app.settle(timeout=15)

    texts = [message_text(m) for m in app.thread(ALERTS, alert["ts"])]
    trouble = [t for t in texts if "keeps failing" in t]
    assert len(trouble) == 1 and "job-p4" in trouble[0] and "keep trying" in trouble[0], texts
    assert "completed" in texts[-1]
    assert "completed" in message_text(current(app, alert)).lower()


async def test_a_job_that_never_ends_is_given_up_on_and_the_thread_says_how_to_check(make_app, mode, slack, runpod):
    app = await make_app(mode, RUNPOD_FOLLOW_MAX="0.5")
    alert = await alert_via_webhook(app, runpod, "job-p2", after_retry=("IN_PROGRESS",) * 1000)

    await click_retry(app, alert)
    await app.settle()

    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "stopped following" in last and "Last known state: running" in last
    assert "/runpod-retry status ep1 job-p2" in last
    assert "1 minutes" not in last
    final = current(app, alert)
    assert "Running" in message_text(final) and actions.STATUS in buttons(final)
    assert app.rt.follower.following(EP, "job-p2") is None


async def test_a_retried_job_that_gets_cancelled_is_not_called_a_failure_and_is_not_offered_again(app, runpod):
    alert = await alert_via_webhook(app, runpod, "job-p3", after_retry=("IN_PROGRESS", "CANCELLED"))

    await click_retry(app, alert, user="U7")
    await app.settle()

    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert "cancelled" in last and "<@U7>" in last and "again" not in last
    assert "can still be retried" not in last
    final = current(app, alert)
    assert "was cancelled" in message_text(final) and actions.RETRY not in buttons(final)


async def test_slack_refusing_chat_update_does_not_stop_the_retry_or_its_report(app, slack, runpod):
    alert = await alert_via_webhook(app, runpod, "job-u1")
    slack.script("chat.update", *[SlackFault(error="cant_update_message")] * 20)

    ack = await click_retry(app, alert)
    await app.settle()

    assert ack.status == 200
    assert len(runpod.calls_to("retry")) == 1
    replies = app.thread(ALERTS, alert["ts"])
    assert "IN_QUEUE" in message_text(replies[0]) and "completed" in message_text(replies[-1])
    assert all(c.error == "cant_update_message" for c in slack.calls_to("chat.update"))
    # The app keeps serving: a new failure still gets its alert.
    await alert_via_webhook(app, runpod, "job-u2")
    assert (await app.get("/healthz"))[0] == 200


@pytest.mark.parametrize("status, expect", [("COMPLETED", "completed in 4.3 s"), ("FAILED", "again")])
async def test_webhook_for_a_followed_job_updates_the_same_alert_and_ends_the_follow(
        make_app, mode, slack, runpod, status, expect):
    app = await make_app(mode, RUNPOD_FOLLOW_INTERVAL="0.2")
    alert = await alert_via_webhook(app, runpod, "job-w1", after_retry=("IN_PROGRESS",) * 1000)
    await click_retry(app, alert, user="U7")
    await runpod.wait_calls("status", 1)
    job = runpod.job(EP, "job-w1")
    job.pending.clear()
    job.status = status
    body: dict[str, Any] = {"id": "job-w1", "status": status, "delayTime": 10, "executionTime": 4321}
    body |= {"output": {"ok": True}} if status == "COMPLETED" else {"error": "worker lost"}

    code, answer = await app.webhook(EP, body)

    assert code == 200 and answer["result"] == "followed"
    await app.settle(timeout=3)
    assert len(app.top_level(ALERTS)) == 1, slack.describe()
    assert app.rt.follower.following(EP, "job-w1") is None
    final = message_text(current(app, alert))
    assert expect in final
    last = message_text(app.thread(ALERTS, alert["ts"])[-1])
    assert status in last or status.lower() in last
    if status == "FAILED":
        assert "worker lost" in last and "<@U7>" in last
        assert actions.RETRY in buttons(current(app, alert))


# ---------------------------------------------------------------- Status, threads, forged values


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
    assert "completed" in message_text(slack.messages[(ALERTS, alert_ts)]).lower()
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


# ---------------------------------------------------------------- staying current


async def test_an_alert_past_its_retry_deadline_is_redrawn_without_retry(make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-old")
    assert actions.RETRY in buttons(current(app, alert))

    later = time.time() + 31 * 60
    app.rt.desk.clock = lambda: later
    assert await app.rt.desk.sweep_expired() == 1
    assert await app.rt.desk.sweep_expired() == 0  # once is enough
    await app.settle()

    now_shown = current(app, alert)
    assert actions.RETRY not in buttons(now_shown) and actions.STATUS in buttons(now_shown)
    assert "cannot be retried" in message_text(now_shown)
    assert runpod.calls_to("retry") == []


async def test_an_unexpected_failure_mid_retry_never_leaves_the_alert_saying_retrying(make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-bug")

    async def broken(endpoint: str, job: str) -> None:
        raise RuntimeError("a bug")

    app.rt.service.call_retry = broken
    ack = await click_retry(app, alert)
    await app.settle()

    shown = message_text(current(app, alert))
    assert "Retrying" not in shown and "unexpected error" in shown and "Status" in shown
    assert actions.RETRY in buttons(current(app, alert))
    assert "Something went wrong" in private_texts(app, ack)
    # The app keeps serving: the next click (with the bug gone) retries.
    del app.rt.service.call_retry
    await click_retry(app, alert, user="U8")
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1


async def test_the_original_failure_redelivered_after_a_successful_retry_does_not_say_failed_again(
        make_app, slack, runpod):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-late")
    await click_retry(app, alert)
    await app.settle()
    assert "completed" in message_text(current(app, alert))

    # RunPod's last delivery of the original failure arrives late (it retries up to twice, 10 s apart).
    status, answer = await app.webhook(EP, {"id": "job-late", **FAILED_BODY})
    await app.settle()

    assert status == 200, answer
    assert "completed" in message_text(current(app, alert))
    assert "again" not in message_text(current(app, alert))
    assert len(app.top_level(ALERTS)) == 1


@pytest.mark.parametrize(("status", "shown"), [("COMPLETED", "Retried outside this app; completed"),
                                               ("CANCELLED", "Outside this app, it was cancelled")])
async def test_a_job_that_ends_outside_the_app_settles_its_alert(make_app, slack, runpod, status, shown):
    app = await make_app("http")
    alert = await alert_via_webhook(app, runpod, "job-elsewhere")
    assert actions.RETRY in buttons(current(app, alert))

    # Someone retried it with RunPod's API directly; RunPod's webhook reports the end.
    code, answer = await app.webhook(EP, {"id": "job-elsewhere", "status": status, "executionTime": 900})
    await app.settle()

    assert code == 200, answer
    assert shown in message_text(current(app, alert))
    assert actions.RETRY not in buttons(current(app, alert))
    assert len(app.top_level(ALERTS)) == 1 and job_calls(runpod) == []
