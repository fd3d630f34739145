"""Issue 18 ("words-a"): the words every surface shares (bot/core/words.py), and messages that keep their promises.
Each test drives the real app over the loopback stand-ins and asserts what a reader at 3 a.m. would see."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from bot.core import actions
from testkit.harness import message_text
from testkit.surfaces_payloads import app_home_opened

EP = "ep1"
ALERTS = "CALERTS"
FAST = {"RUNPOD_BULK_CONCURRENCY": "16", "RUNPOD_FOLLOW_INTERVAL": "0.05"}
DATE = re.compile(r"<!date\^(\d+)\^\{time\}\|(\d\d:\d\d UTC)>")


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


def current(app, msg: dict[str, Any], channel: str = ALERTS) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return app.slack.messages[(channel, msg["ts"])]


def field_labels(msg: dict[str, Any]) -> list[str]:
    return [f["text"].split("\n", 1)[0].strip("*") for block in msg["blocks"] for f in block.get("fields") or []]


async def alert_for(app, runpod, job: str, **job_options: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    runpod.add_job(EP, job, status="FAILED", **job_options)
    status, answer = await app.webhook(EP, {"id": job, "status": "FAILED", "error": "CUDA out of memory",
                                            "delayTime": 600, "executionTime": 1234})
    assert status == 200, answer
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


async def click_retry(app, alert: dict[str, Any], user: str = "U7"):  # type: ignore[no-untyped-def]
    value = buttons(current(app, alert))[actions.RETRY]["value"]
    return await app.click(actions.RETRY, value, message_ts=alert["ts"], user=user)


# ---------------------------------------------------------------- item 2: a grouped alert after a partial Retry all


async def test_a_grouped_alert_after_a_partial_retry_all_says_what_happened_in_its_header(make_app, runpod):
    app = await make_app("http", **FAST)
    jobs = [f"job-p{n}" for n in range(7)]
    for n, job in enumerate(jobs):
        # RunPod shows two of them completed by now (retried from its console): those are refused, not retried.
        runpod.add_job(EP, job, status="COMPLETED" if n < 2 else "FAILED")
        await app.webhook(EP, {"id": job, "status": "FAILED", "error": "boom"})
    await app.settle()
    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    assert storm["blocks"][0]["text"]["text"].endswith("7 jobs failed on endpoint ep1")

    await app.click(actions.RETRY_ALL, buttons(storm)[actions.RETRY_ALL]["value"], message_ts=storm["ts"])
    await app.settle(timeout=20)

    shown = current(app, storm)
    said = message_text(shown)
    head = shown["blocks"][0]["text"]["text"]
    assert "7 jobs failed on endpoint ep1 · 5 requeued · 5 completed · 2 not retried" in head, head
    assert shown["text"].startswith("7 jobs failed on endpoint ep1 · 5 requeued · 5 completed · 2 not retried")
    assert "Every job of this alert was" not in said, "it must not claim every job was retried above a refusal"
    assert "5 requeued, 2 not retried" in said and "Retry before" not in said
    assert actions.RETRY_ALL not in buttons(shown)
    # The job list says why each refused job was not retried, once.
    pages = app.thread_text(ALERTS, storm["ts"])
    assert "not retried: the job already completed" in pages and "not retried: not retried" not in pages


# ---------------------------------------------------------------- item 3: no buttons where retries are refused


async def test_alerts_where_retries_are_not_allowed_have_no_buttons_and_say_where_they_are(make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS", **FAST)
    alert = await alert_for(app, runpod, "job-x1")
    assert buttons(alert) == {}, "Retry and Status would only be refused in this channel"
    said = message_text(alert)
    assert "Retries are not allowed in this channel" in said and "<#COPS>" in said
    assert "`/runpod-retry ep1 job-x1`" in said and "Can be retried until" not in said
    assert "Retries are not allowed in this channel." in alert["text"] and "Retry before" not in alert["text"]

    for n in range(6):
        runpod.add_job(EP, f"job-s{n}", status="FAILED")
        await app.webhook(EP, {"id": f"job-s{n}", "status": "FAILED", "error": "boom"})
    await app.settle()
    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    assert buttons(storm) == {}, "no Retry all, no Status"
    assert "Retries are not allowed in this channel" in message_text(storm)
    assert "<#COPS>" in message_text(storm) and "`/runpod-retry failed ep1`" in message_text(storm)
    assert runpod.calls_to("retry") == []


# ---------------------------------------------------------------- item 4: start-up says what is off


async def test_start_up_says_plainly_when_failure_alerts_are_off(make_app, caplog):
    caplog.set_level(logging.INFO)
    await make_app("http", RUNPOD_ALERT_CHANNEL="", RUNPOD_WEBHOOK_SECRET="")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(line.startswith("Failure alerts are OFF: RUNPOD_ALERT_CHANNEL is not set") for line in lines), lines
    assert any(line.startswith("Failure alerts are OFF: RUNPOD_WEBHOOK_SECRET is not set") for line in lines), lines


async def test_start_up_says_when_the_alert_channel_is_not_one_where_retries_are_allowed(make_app, caplog):
    caplog.set_level(logging.INFO)
    await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(line.startswith("Retrying from failure alerts is OFF: RUNPOD_ALERT_CHANNEL (CALERTS) is not one of "
                               "RUNPOD_RETRY_ALLOWED_CHANNELS") for line in lines), lines
    assert not any("Failure alerts are OFF" in line for line in lines), "alerts themselves are on"


# ---------------------------------------------------------------- item 5: an invalid ID inside a list


async def test_an_invalid_id_inside_a_list_is_named_as_an_invalid_job_id(app, runpod):
    ack = await app.command("ep-1 a b bad/../id c")
    said = message_text(ack.body)
    assert "job ID `bad/../id`" in said and "only letters, digits" in said
    assert "were both given" not in said
    assert runpod.calls == []


# ---------------------------------------------------------------- item 6: promises and figures


async def test_a_job_that_fails_again_at_its_retry_limit_is_told_the_next_allowed_time_not_about_30_minutes(
        make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1", **FAST)
    alert = await alert_for(app, runpod, "job-l1", after_retry=("IN_PROGRESS", "FAILED"), final_error="OOM again",
                            delay_time=50)
    await click_retry(app, alert)
    await app.settle()

    thread = app.thread_text(ALERTS, alert["ts"])
    assert "about 30 minutes" not in thread
    ending = next(m for m in app.thread(ALERTS, alert["ts"]) if "OOM again" in message_text(m))
    said = message_text(ending)
    assert "Retry limit reached (1 retry per job per hour)" in said and "allowed at <!date^" in said
    # The alert shows only the retried run's figures, and says whose they are.
    shown = current(app, alert)
    labels = field_labels(shown)
    assert "Retry waited in queue" in labels and "Waited in queue" not in labels
    assert "0.6 s" not in message_text(shown), "the first run's queue wait is gone"
    assert "Retry limit reached (1 retry per job per hour)" in message_text(shown)
    assert re.search(r"allowed at \d\d:\d\d UTC", shown["text"]), shown["text"]


async def test_a_job_that_fails_again_is_told_until_when_exactly_it_can_be_retried(make_app, runpod):
    app = await make_app("http", **FAST)
    alert = await alert_for(app, runpod, "job-l2", after_retry=("IN_PROGRESS", "FAILED"), final_error="OOM again")
    await click_retry(app, alert)
    await app.settle()
    ending = next(m for m in app.thread(ALERTS, alert["ts"]) if "OOM again" in message_text(m))
    said = message_text(ending)
    assert "about 30 minutes" not in said and DATE.search(said) and "Can be retried until" in said


async def test_after_an_unexpected_failure_the_alert_does_not_point_to_details_that_are_not_there(make_app, runpod):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-bug")

    async def broken(endpoint: str, job: str) -> None:
        raise RuntimeError("a bug")

    app.rt.service.call_retry = broken  # an error of the app's own, mid-retry
    await click_retry(app, alert)
    await app.settle()

    shown = current(app, alert)
    assert app.thread(ALERTS, alert["ts"]) == []
    assert "Details in the thread" not in message_text(shown)
    assert "unexpected error" in message_text(shown) and "*" not in shown["text"]
    assert "Press Status" in shown["text"]


async def test_a_400_for_a_failed_job_says_runpod_refused_it_and_no_rule_that_is_not_true(make_app, runpod):
    app = await make_app("http")
    alert = await alert_for(app, runpod, "job-r4")
    runpod.fault("retry", status=400, body={"error": "bad request"})
    await click_retry(app, alert)
    await app.settle()

    [reply] = app.thread(ALERTS, alert["ts"])
    said = message_text(reply)
    assert "Only FAILED or TIMED_OUT jobs can be retried" not in said
    assert "RunPod refused to retry job `job-r4`" in said and "shows the job as failed" in said
    assert "HTTP 400" in said


@pytest.mark.real_time  # the footer states the real window (15 minutes); on the test clock it would be a tenth
async def test_the_home_footer_promises_only_what_the_app_keeps(make_app, slack):
    app = await make_app("http")
    before = len(slack.calls_to("views.publish"))
    await app.event(app_home_opened("U1"))
    await slack.wait_for(lambda s: len(s.calls_to("views.publish")) > before and s.home("U1"))
    footer = message_text({"blocks": slack.home("U1")["blocks"][-1:]})
    assert "keeps itself current" not in footer
    assert "for 15 minutes after you open this tab" in footer and "reopen the tab" in footer


# ---------------------------------------------------------------- item 7: small wrong words


async def test_the_parent_of_a_command_names_who_asked_in_its_notification(app, runpod):
    runpod.add_job(EP, "job-n1", status="FAILED")
    await app.command(f"{EP} job-n1", user="U5")
    await app.settle()
    [parent] = [m for m in app.top_level("C1") if "job-n1" in message_text(m)]
    assert parent["text"].startswith("<@U5> asked to retry job job-n1 on endpoint ep1")


async def test_one_word_for_requeued_on_the_command_reply_history_and_home(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    runpod.add_job(EP, "job-w1", status="FAILED")
    await app.command(f"{EP} job-w1")
    await app.settle()
    sent = app.everything_sent_to_slack()
    assert "was requeued" in sent
    for other in ("back in the queue", "RunPod took"):
        assert other not in sent, other
    ack = await app.command("history")
    await app.settle()
    history = message_text(ack.body) + " ".join(message_text(r) for r in app.responses(ack.response_url))
    assert "requeued" in history and "RunPod took it" not in history


async def test_the_terminal_says_nothing_was_retried_once_and_shows_times_as_utc(tmp_path, runpod, capsys):
    from bot.app.terminal import run
    from bot.infra.config import load_settings

    settings = load_settings({"RUNPOD_API_KEY": "rp-test-key", "RUNPOD_API_URL": runpod.url,
                              "RUNPOD_RETRY_DB": str(tmp_path / "t.db"), "RUNPOD_RETRY_MAX_PER_JOB": "1",
                              "RUNPOD_TIMEOUT": "2"}, serving=False,
                             needs=("RUNPOD_API_KEY",))
    assert await run(settings, "retry", EP, ["job!1"], False) == 2
    err = capsys.readouterr().err
    assert err.startswith("Nothing was retried.") and "Nothing was done" not in err
    assert runpod.calls == []

    runpod.add_job(EP, "job-t1", status="FAILED")
    assert await run(settings, "retry", EP, ["job-t1"], False) == 0
    runpod.job(EP, "job-t1").status = "FAILED"
    capsys.readouterr()
    assert await run(settings, "retry", EP, ["job-t1"], False) == 1
    out = capsys.readouterr().out
    assert re.search(r"Retry limit reached \(1 retry per job per hour\); next allowed at \d\d:\d\d UTC", out), out
    assert "<!date" not in out
