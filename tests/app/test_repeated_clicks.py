"""Late, double and simultaneous clicks: RunPod is asked once, the alert stays as it was, and each clicker is told
privately what already happened, naming them as "you" when it was them."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import actions
from testkit.harness import buttons, message_text
from tests.app.alerting import (
    ALERTS,
    DATE,
    EP,
    FAST,
    alert_for,
    click_retry,
    current,
    slack_link_to,
    told,
)


async def test_a_late_retry_click_on_a_completed_alert_is_told_privately_and_the_alert_stays(app, runpod, slack):
    alert = await alert_for(app, runpod, "job-l1")
    stale_value = buttons(alert)[actions.RETRY]["value"]  # a confirm dialog left open on the first drawing
    await click_retry(app, alert, user="U7")
    await app.settle()
    done = current(app, alert)
    assert "completed" in message_text(done).lower()
    updates, thread = len(slack.calls_to("chat.update")), len(app.thread(ALERTS, alert["ts"]))

    other = await click_retry(app, alert, user="U8", value=stale_value)
    same = await click_retry(app, alert, user="U7", value=stale_value)
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1, "RunPod is not asked again"
    assert len(slack.calls_to("chat.update")) == updates and current(app, alert) == done, "the alert stays"
    assert len(app.thread(ALERTS, alert["ts"])) == thread, "nothing public"
    [to_other] = told(app, other)
    assert "already completed after <@U7> retried it" in to_other and "nothing was done" in to_other
    assert slack_link_to(alert["ts"]) in to_other, "a link to the alert"
    [to_same] = told(app, same)
    assert "already completed after you retried it" in to_same
    assert all(r.get("response_type", "ephemeral") == "ephemeral" for r in app.responses(other.response_url))
    rows = await app.rt.store.history(2)
    assert {r["outcome"] for r in rows} == {"refused:completed"}


async def test_a_retry_from_elsewhere_of_a_completed_job_does_not_turn_its_alert_into_a_warning(make_app,
                                                                                                   runpod, slack):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-l2")
    await click_retry(app, alert)
    await app.settle()
    done = current(app, alert)

    await app.command(f"{EP} job-l2", user="U9")  # RunPod refuses: the job completed
    await app.settle()

    assert [c.status for c in runpod.calls_to("retry")] == [200, 400]
    assert current(app, alert)["blocks"] == done["blocks"]
    assert "RunPod job not retried" not in message_text(current(app, alert))


@pytest.mark.parametrize(("second", "says"), [("U1", "You started retrying"), ("U2", "<@U1> started retrying")])
async def test_a_second_confirm_says_it_is_already_running_and_who_started_it(make_app, runpod, slack, second,
                                                                                says):
    app = await make_app("http", **FAST)
    for n in range(3):
        await alert_for(app, runpod, f"job-d{n}", after_retry=("IN_PROGRESS",) * 3 + ("COMPLETED",))
    ack = await app.command(f"failed {EP}", user="U1", channel="C1")
    await app.settle()
    value = buttons(app.responses(ack.response_url)[0])[actions.CONFIRM_FAILED]["value"]

    first, again = await asyncio.gather(
        app.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user="U1"),
        app.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user=second))
    await app.settle(timeout=20)

    assert len(runpod.calls_to("retry")) == 3, "each job once"
    answers = told(app, first) + told(app, again)
    assert len(answers) == 2 and any("Retrying 3 jobs" in a for a in answers)
    [running] = [a for a in answers if "under way" in a]
    assert says in running and "nothing more was done" in running
    assert not any("was seen failing" in a or "Nothing was done" in a for a in answers)


async def test_your_own_double_click_says_you_with_a_link_to_the_result(app, runpod, slack):
    alert = await alert_for(app, runpod, "job-c9", after_retry=("IN_PROGRESS",) * 4 + ("COMPLETED",))
    runpod.latency = 0.05

    acks = await asyncio.gather(click_retry(app, alert, user="U7"), click_retry(app, alert, user="U7"))
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1
    [said] = [t for ack in acks for t in told(app, ack)]
    assert said.startswith("You already retried job job-c9"), said
    assert "You already retried job `job-c9`" in said and "someone else" not in said.lower()
    assert DATE.search(said) and slack_link_to(alert["ts"]) in said, "when, and a link to where the result is"

