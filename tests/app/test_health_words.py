"""Issue 18: health that knows RunPod, over the loopback stand-ins. `/runpod-retry health` leads with a verdict in
words; an endpoint that scales to zero (RunPod's default) is idle, never a warning, on the command and on an
alert; jobs waiting with no worker, throttled workers and mostly unhealthy workers warn."""

from __future__ import annotations

import pytest

from testkit.fakes import Health
from testkit.fakes.runpod_health import NO_WORKERS
from testkit.fakes.worker_shapes import RUNPOD_DOCS_HEALTH
from testkit.harness import buttons, message_text
from tests.app.alerting import alert_via_webhook

EP = "ep1"


def lead(msg: dict) -> str:
    """The first thing the reader sees in the message's blocks."""
    return msg["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(("health", "first", "warns"), [
    (Health(workers=dict(NO_WORKERS)),
     ":zzz: *Idle: no worker is running, and RunPod starts one when a job arrives; retries should run.*", False),
    (Health(body=RUNPOD_DOCS_HEALTH),
     ":white_check_mark: *Healthy: retries should run now (2 ready, 2 running; 14 jobs in the queue ahead of "
     "them).*", False),
    (Health(workers={"idle": 0, "ready": 0, "running": 0, "throttled": 3}, jobs={"inQueue": 6}),
     ":warning: *Throttled: no GPU of this endpoint's type is free right now (3 workers waiting for one).*", True),
    (Health(workers=dict(NO_WORKERS), jobs={"inQueue": 14}),
     ":warning: *Stuck: 14 jobs wait in the queue and no worker is ready, running or starting.*", True),
])
async def test_health_leads_with_a_verdict_in_words_then_the_counts(make_app, runpod, health, first, warns):
    app = await make_app("http")
    runpod.set_health(EP, health)

    ack = await app.command(f"health {EP}")
    await app.settle()

    [told] = app.responses(ack.response_url)
    assert lead(told).startswith(first)
    assert ("Retrying now is unlikely to work" in message_text(told)) is warns
    assert "Workers:" in told["blocks"][1]["text"]["text"] and "HTTP 200" in message_text(told)


async def test_an_older_shaped_answer_of_an_endpoint_scaled_to_zero_is_idle(make_app, runpod):
    app = await make_app("socket")
    runpod.set_health(EP, Health(workers={"idle": 0, "running": 0}, replace_workers=True))

    ack = await app.command(f"health {EP}")
    await app.settle()

    [told] = app.responses(ack.response_url)
    assert lead(told).startswith(":zzz: *Idle:") and "unlikely" not in message_text(told).lower()
    assert "Workers: 0 idle, 0 running." in message_text(told)


async def test_an_alert_on_an_endpoint_scaled_to_zero_says_idle_and_warns_nobody(make_app, runpod, slack):
    app = await make_app("http")
    runpod.set_health(EP, Health(workers=dict(NO_WORKERS)))

    alert = await alert_via_webhook(app, runpod, "job-z1")

    text = message_text(alert)
    assert "Idle: no worker is running, and RunPod starts one when a job arrives; retries should run." in text
    assert "unlikely" not in text.lower() and "no worker ready" not in text
    confirm = message_text({"blocks": [buttons(alert)["runpod_retry"]["confirm"]]})
    assert "Unlikely" not in confirm and "job-z1" in confirm
    assert not slack.rejected()


async def test_an_alert_on_a_throttled_endpoint_leads_its_health_with_the_warning(make_app, runpod, slack):
    app = await make_app("http")
    runpod.set_health(EP, "throttled")

    alert = await alert_via_webhook(app, runpod, "job-z2")

    [warning] = [b for b in alert["blocks"]
                 if b["type"] == "section" and ":warning:" in b.get("text", {}).get("text", "")]
    assert warning["text"]["text"].startswith(":warning: *Throttled: no GPU of this endpoint's type is free right "
                                              "now (3 workers waiting for one).* Retrying now is unlikely to work")
    confirm = message_text({"blocks": [buttons(alert)["runpod_retry"]["confirm"]]})
    assert "Unlikely to work now: no GPU of this endpoint's type is free" in confirm
    assert not slack.rejected()
