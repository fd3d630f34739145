"""RunPod's failure webhook posts one alert per failure, answered at once, inside Slack's limits and pinging nobody;
redelivered, forged, malformed or uninteresting webhooks post nothing more. Over real loopback HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.core import actions
from testkit.fakes.slack import SlackFault
from testkit.harness import buttons, job_calls, message_text
from tests.app.alerting import (
    ALERTS,
    DATE,
    EP,
    FAILED_BODY,
)


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
    assert latency < 1.5, f"the webhook waited on Slack ({latency:.2f} s)"  # Slack answers in 2 s
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

