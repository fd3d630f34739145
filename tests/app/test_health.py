"""Issue 12, item 4: endpoint health. `/runpod-retry health <endpointId>` in plain words and JSON; the same snapshot,
cached per endpoint, on failure alerts, Retry all and `failed` confirmations and bulk summaries, with a plain
warning when retrying now is unlikely to work; a health check that fails never blocks or fails a retry."""

from __future__ import annotations

import time

import pytest

from bot.core import messages
from bot.core.answers import RunPodBadResponse, RunPodHTTPError, RunPodTimeout, RunPodUnreachable
from bot.core.health import health_problem, health_warning, health_words, parse_health, unlikely_reason
from testkit.fakes import HEALTH_PRESETS, Health
from testkit.fakes.runpod_health import NO_WORKERS, health_body
from testkit.harness import ACK_DEADLINE, alert_completed, buttons, job_calls, message_text
from tests.app.alerting import ALERTS, alert_via_webhook, click_retry, current

EP = "ep1"


def preset(name: str) -> dict:
    return health_body(HEALTH_PRESETS[name], ["FAILED", "IN_QUEUE"], 2)


# ---------------------------------------------------------------- the pure part


@pytest.mark.parametrize(("name", "warns"), [
    ("healthy", None), ("legacy", None), ("empty", None),
    ("no_workers", "1 job waits in the queue and no worker is ready, running or starting"),
    ("mostly_unhealthy", "most workers"), ("throttled", "no GPU of this endpoint's type is free"),
    ("initializing", None),
])
def test_each_health_shape_in_words_and_whether_to_warn(name, warns):
    body = preset(name) if HEALTH_PRESETS[name].body is None else HEALTH_PRESETS[name].body
    health = parse_health(EP, body, 1000.0)
    reason = unlikely_reason(health)
    assert (reason is None) if warns is None else (warns in reason), reason
    words = health_words(health)
    if name == "empty":
        assert words == "RunPod's answer had no job or worker counts."
    else:
        assert "Jobs: 1 in queue" in words and "Workers:" in words
    assert messages.health_message(EP, health)["blocks"]


def test_odd_values_are_ignored_not_trusted():
    health = parse_health(EP, {"jobs": {"inQueue": "14", "failed": -1, "retried": 2.0, "completed": True},
                               "workers": {"ready": 1.5, "idle": None, "running": float("nan"), "unhealthy": 3}},
                          1.0)
    assert dict(health.jobs) == {"retried": 2} and dict(health.workers) == {"unhealthy": 3}
    assert "every worker of this endpoint is unhealthy (3)" in (health_warning(health) or "")
    assert parse_health(EP, ["not", "an", "object"], 1.0).known is False


@pytest.mark.parametrize(("error", "says"), [
    (RunPodHTTPError("x", op="health", status=401), "refused the API key"),
    (RunPodHTTPError("x", op="health", status=404), "does not know endpoint"),
    (RunPodHTTPError("x", op="health", status=503), "server error (HTTP 503)"),
    (RunPodHTTPError("x", op="health", status=429), "limiting requests"),
    (RunPodTimeout("x", op="health"), "in time"),
    (RunPodUnreachable("x", op="health"), "could not reach RunPod"),
    (RunPodBadResponse("x", op="health", status=200), "not the JSON"),
])
def test_why_a_health_check_gave_nothing_in_words(error, says):
    assert says in health_problem(EP, error)


def test_confirm_dialog_text_stays_within_slacks_300_characters():
    health = parse_health(EP, preset("throttled"), 1.0)
    text = messages.confirm_warning("x" * 290, health)
    assert len(text) <= 300 and text.startswith("⚠️ Unlikely to work now")
    assert messages.confirm_warning("same", None) == "same"


# ---------------------------------------------------------------- the command


async def test_health_command_shows_words_and_json_only_to_the_caller(app, runpod, slack):
    runpod.add_job(EP, "job-1", status="FAILED")

    ack = await app.command(f"health {EP}")
    await app.settle()

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    [call] = runpod.calls_to("health")
    assert (call.method, call.endpoint, call.job, call.status) == ("GET", EP, None, 200)
    [told] = app.responses(ack.response_url)
    text = message_text(told)
    assert "Jobs: 0 in queue, 0 in progress, 1 failed, 0 retried, 0 completed." in text
    assert "Workers: 1 ready, 1 idle, 0 running, 0 starting, 0 throttled, 0 unhealthy." in text
    assert '"inQueue": 0' in text and "HTTP 200" in text and "unlikely" not in text
    assert told.get("response_type", "ephemeral") == "ephemeral" and not slack.calls_to("chat.postMessage")
    assert not job_calls(runpod)
    assert not slack.rejected()


@pytest.mark.parametrize(("state", "says"), [
    ("no_workers", "Idle: no worker is running, and RunPod starts one when a job arrives; retries should run"),
    ("mostly_unhealthy", "most workers of this endpoint are unhealthy (4 of 5)"),
    ("error", "server error (HTTP 500)"),
    ("unauthorized", "refused the API key"),
    ("garbage", "not the JSON"),
])
async def test_health_command_warns_or_says_why_it_could_not_check(make_app, runpod, state, says):
    app = await make_app("http")
    runpod.set_health(EP, state)

    ack = await app.command(f"health {EP}")
    await app.settle()

    assert says in message_text(app.responses(ack.response_url)[0])


async def test_health_is_cached_for_a_short_while(make_app, runpod):
    app = await make_app("socket")
    runpod.set_health(EP, "healthy")

    for _ in range(3):
        ack = await app.command(f"health {EP}")
        await app.settle()
        assert "Workers:" in message_text(app.responses(ack.response_url)[0])

    assert len(runpod.calls_to("health")) == 1


@pytest.mark.parametrize(("text", "says"), [
    ("health", "`health` takes one endpoint ID"), ("health ep1 ep2", "`health` takes one endpoint ID"),
    ("health ep!1", "'!'"),
])
async def test_health_usage_errors_reach_nothing(app, runpod, text, says):
    ack = await app.command(text)

    assert says in message_text(ack.body) and "/runpod-retry health <endpointId>" in message_text(ack.body)
    assert runpod.calls == []


async def test_health_of_an_endpoint_outside_the_list_is_refused_without_calling_runpod(make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_ENDPOINTS="ep2")

    ack = await app.command(f"health {EP}")
    await app.settle()

    assert "not set up to call endpoint `ep1`" in message_text(app.responses(ack.response_url)[0])
    assert runpod.calls == []


# ---------------------------------------------------------------- beside alerts, confirmations and summaries


async def test_an_alert_shows_the_health_and_warns_when_retrying_now_is_unlikely_to_work(make_app, runpod, slack):
    app = await make_app("http")
    runpod.set_health(EP, Health(workers=dict(NO_WORKERS), jobs={"inQueue": 14}))

    alert = await alert_via_webhook(app, runpod, "job-h1")

    text = message_text(alert)
    assert "Endpoint `ep1` health" in text and "Workers: 0 ready" in text
    assert "Retrying now is unlikely to work" in text
    confirm = message_text({"blocks": [buttons(alert)["runpod_retry"]["confirm"]]})
    assert "Unlikely to work now" in confirm and "job-h1" in confirm
    assert not slack.rejected()


async def test_a_failing_or_slow_health_check_never_blocks_an_alert_or_a_retry(make_app, runpod, slack):
    app = await make_app("http")
    runpod.fault("health", delay=5)
    started = time.monotonic()

    alert = await alert_via_webhook(app, runpod, "job-h2")

    assert time.monotonic() - started < 4, "the alert waited for /health"
    assert "health" not in message_text(alert).lower()
    runpod.fault("health", status=500, times=5)
    await click_retry(app, alert)
    await app.settle()
    assert [c.job for c in runpod.calls_to("retry")] == ["job-h2"]
    assert alert_completed(current(app, alert))
    assert len(app.top_level(ALERTS)) == 1


async def test_the_failed_confirmation_warns_before_anything_runs(make_app, runpod):
    app = await make_app("socket", RUNPOD_STORM_THRESHOLD="50")
    runpod.set_health(EP, "throttled")
    for n in range(2):
        await alert_via_webhook(app, runpod, f"job-f{n}")

    ack = await app.command(f"failed {EP}")
    await app.settle()

    [offer] = app.responses(ack.response_url)
    assert "2 jobs" in message_text(offer) and "no GPU of this endpoint's type is free" in message_text(offer)
    assert not job_calls(runpod)


async def test_retry_all_confirmation_and_the_grouped_alert_warn(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_STORM_THRESHOLD="3")
    runpod.set_health(EP, "mostly_unhealthy")
    for n in range(4):
        runpod.add_job(EP, f"job-s{n}")
        await app.webhook(EP, {"id": f"job-s{n}", "status": "FAILED", "error": "OOM"})
    await app.settle()

    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    assert "most workers of this endpoint are unhealthy" in message_text(storm)
    confirm = message_text({"blocks": [buttons(storm)["runpod_retry_all"]["confirm"]]})
    assert "Unlikely to work now" in confirm
    assert not slack.rejected()


async def test_a_bulk_summary_says_when_the_requeued_jobs_are_unlikely_to_get_a_worker(make_app, runpod, slack):
    app = await make_app("http")
    runpod.set_health(EP, Health(workers={"idle": 0, "ready": 0, "running": 0}, jobs={"inQueue": 14}))
    for n in range(2):
        runpod.add_job(EP, f"job-b{n}")

    await app.command(f"{EP} job-b0 job-b1", channel="C1")
    await app.settle()

    [parent] = app.top_level("C1")
    summary = app.thread("C1", parent["ts"])[0]
    assert "Results for 2 jobs" in message_text(summary)
    assert "Retrying now is unlikely to work" in message_text(summary)
    assert not slack.rejected()
