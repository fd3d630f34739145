"""An alert offers Retry only when a retry would be taken: a spent per-job budget shows why and when it frees up,
retries RunPod refused spend nothing, an endpoint the app may not call gets no buttons, and after a 401 or 502
Retry stays with its deadline."""

from __future__ import annotations

import re
import time

import pytest

from bot.core import actions
from bot.core.alerts import called
from testkit.harness import buttons, message_text
from tests.app.alerting import (
    DATE,
    EP,
    alert_for,
    click_retry,
    current,
    told,
)


async def test_a_spent_retry_budget_shows_why_instead_of_a_retry_button(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b1", after_retry=("IN_PROGRESS", "FAILED"), final_error="OOM again")

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert "again" in message_text(shown)
    assert actions.RETRY not in buttons(shown) and actions.STATUS in buttons(shown)
    assert "Retry limit reached (1 retry per job per hour)" in message_text(shown)
    assert "Can be retried until" not in message_text(shown)
    # The notification says the limit with its next allowed time, as "HH:MM UTC" (no raw date token).
    assert re.search(r"Retry limit reached \(1 retry per job per hour\).* allowed at \d\d:\d\d UTC", shown["text"])
    # A click on the stale button is still refused, as before: the button is gone because it would be.
    ack = await click_retry(app, alert, user="U8", value=actions.job_value(EP, "job-b1"))
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1 and "already retried once" in " ".join(told(app, ack))


async def test_retries_runpod_refused_do_not_spend_the_budget_the_button_shows(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b2")
    runpod.fault("retry", status=401, body={"error": "Unauthorized"})  # the API key was wrong, then fixed

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert actions.RETRY in buttons(shown), message_text(shown)
    assert "Retry limit reached" not in message_text(shown)
    await click_retry(app, alert, user="U8")
    await app.settle()
    assert len(runpod.requeued(EP)) == 1


async def test_an_endpoint_the_app_may_not_call_gets_no_buttons_and_says_so(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ENDPOINTS="ep2")

    alert = await alert_for(app, runpod, "job-x1")

    assert buttons(alert) == {}, "both Retry and Status would only be refused"
    said = message_text(alert)
    assert "Retries are not enabled for this endpoint" in said and "RUNPOD_RETRY_ENDPOINTS" in said
    assert "Can be retried until" not in said
    assert alert["text"].endswith("Retries are not enabled for it.")
    assert not slack.rejected()


async def test_the_sweep_redraws_an_alert_with_retry_once_its_budget_frees_up(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    alert = await alert_for(app, runpod, "job-b2")
    desk = app.rt.desk
    now = time.time()
    stored = await desk.get(EP, "job-b2")
    await desk.save(called(stored, now - 3590))  # a retry 59 min 50 s ago spent the budget
    await app.settle()
    assert actions.RETRY not in buttons(current(app, alert))

    desk.clock = lambda: now + 11
    await desk.sweep_expired()
    await app.settle()

    assert actions.RETRY in buttons(current(app, alert))
    assert "Can be retried until" in message_text(current(app, alert))


@pytest.mark.parametrize("fault", [{"status": 401}, {"status": 502}], ids=["401", "502"])
async def test_after_a_401_or_502_the_alert_keeps_retry_and_its_deadline(make_app, runpod, fault):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-k1")
    runpod.fault("retry", **fault)
    runpod.fault("status", **fault)

    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert actions.RETRY in buttons(shown)
    line = next(text for text in message_text(shown).splitlines() if "You can try again until" in text)
    [deadline] = [int(n) for n in DATE.findall(line)]
    assert abs(deadline - (time.time() + 30 * 60)) < 30

