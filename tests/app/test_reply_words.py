"""What a command's replies say, end to end: the job's state in words (not HTTP codes), `retry` as a verb, the
status form, a 502 that may have gone through, history in plain reasons, no jargon, a short usage line for a
typo, and a bulk run's summary that keeps up and still reaches the caller where the app cannot post."""

from __future__ import annotations

import json
import time

import pytest

from testkit.harness import assert_valid, blocks_text, message_text
from tests.app.alerting import (
    DATE,
    EP,
    FAST,
    alert_for,
    current,
    told,
)


@pytest.mark.parametrize(("status", "icon", "words"), [
    ("FAILED", ":red_circle:", "failed: CUDA out of memory"),
    ("TIMED_OUT", ":red_circle:", "timed out"),
    ("COMPLETED", ":white_check_mark:", "completed"),
    ("IN_PROGRESS", ":hourglass_flowing_sand:", "is running"),
    ("CANCELLED", ":no_entry_sign:", "was cancelled"),
])
async def test_status_shows_the_jobs_state_not_the_http_status(make_app, runpod, status, icon, words):
    app = await make_app("http")
    runpod.add_job(EP, "job-s1", status=status)

    await app.command(f"status {EP} job-s1")
    await app.settle()

    [parent] = app.top_level("C1")
    [reply] = app.thread("C1", parent["ts"])
    sentence = reply["blocks"][0]["text"]["text"]
    assert sentence.startswith(f"{icon} Job `job-s1` on endpoint `ep1` {words}"), sentence
    assert "HTTP" not in sentence and status not in sentence
    assert "RunPod's answer (HTTP 200):" in blocks_text(reply)  # the code labels RunPod's JSON instead
    assert f'"status": "{status}"' in blocks_text(reply)


async def test_retry_as_the_first_word_retries_that_job_and_is_never_an_endpoint(app, runpod):
    runpod.add_job(EP, "job-w1", status="FAILED")

    await app.command(f"retry {EP} job-w1")
    await app.settle()

    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, "job-w1")]
    [parent] = app.top_level("C1")
    assert "endpoint `ep1`" in message_text(parent)


async def test_status_with_only_an_endpoint_answers_with_the_status_form(app):
    ack = await app.command(f"status {EP}")
    shown = message_text(ack.body)
    assert "/runpod-retry status <endpointId> <jobId>" in shown
    assert "`/runpod-retry <endpointId> <jobId>`" not in shown


async def test_a_refused_status_check_speaks_of_status_checks_not_retries(make_app, runpod):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")

    ack = await app.command(f"status {EP} job-1", channel="C1")
    await app.settle()

    [said] = told(app, ack)
    assert "Status checks are not enabled in this channel" in said and "Retries" not in said
    assert not runpod.calls


async def test_one_failed_job_was_not_retried(make_app, runpod):
    app = await make_app("http")
    await alert_for(app, runpod, "job-one")

    ack = await app.command(f"failed {EP}")
    await app.settle()

    [offer] = told(app, ack)
    assert "*1 job* of endpoint `ep1` failed in the last 30 minutes and was not retried yet" in offer
    assert "were not" not in offer


async def test_a_502_says_the_retry_may_already_have_gone_through(make_app, runpod):
    app = await make_app("http")
    runpod.add_job(EP, "job-502", status="FAILED")
    runpod.fault("retry", status=502, body="<html>Bad Gateway</html>")
    runpod.fault("status", status=502, body="<html>Bad Gateway</html>")  # and the check after it fails too

    await app.command(f"{EP} job-502")
    await app.settle()

    [parent] = app.top_level("C1")
    [reply] = app.thread("C1", parent["ts"])
    said = message_text(reply)
    assert "server error" in said and "may still have gone through" in said
    assert f"/runpod-retry status {EP} job-502" in said and reply["blocks"][0]["text"]["text"].startswith(":warning:")


async def test_history_in_plain_reasons_fixed_columns_mentions_and_the_readers_time(make_app, runpod):
    app = await make_app("http")
    long_job = "j" * 100
    runpod.add_job(EP, "job-h1", status="FAILED")
    await app.command(f"{EP} job-h1", user="U1", channel="C1")
    await app.command(f"{EP} {long_job}", user="U2", channel="C2")  # RunPod answers 404 with a JSON error
    await app.settle()

    ack = await app.command("history", user="U3")
    await app.settle()

    [reply] = app.responses(ack.response_url)
    rows = [b["fields"] for b in reply["blocks"] if b.get("fields")]
    cells = [f["text"] for fields in rows for f in fields]
    assert len(cells) == 4, "two fixed columns per attempt, whatever the IDs' length"
    gone_when, gone_what, ok_when, ok_what = cells
    assert "<@U2>" in gone_when and "<#C2>" in gone_when and "by command" in gone_when
    assert long_job not in gone_when, "long IDs sit in their own column and cannot shift the others"
    assert "RunPod does not know the job" in gone_what and f"`{long_job}`" in gone_what
    assert "<@U1>" in ok_when and "<#C1>" in ok_when and "requeued" in ok_what
    for when in (gone_when, ok_when):
        [at] = [int(n) for n in DATE.findall(when)]
        assert abs(at - time.time()) < 60
    everything = message_text(reply)
    # "requeued" is the vocabulary's word for what RunPod did (bot/core/words.py), not a leaked code.
    for raw in ("not_found", "not_retryable", "404", "{\"", "refused:", "(UTC)"):
        assert raw not in everything, raw
    assert_valid(reply)


async def test_replies_have_no_jargon_and_runpods_json_sits_under_the_sentence(app, runpod):
    runpod.add_job(EP, "job-q1", status="FAILED")

    await app.command(f"{EP} job-q1")
    await app.settle()

    [parent] = app.top_level("C1")
    result, final = app.thread("C1", parent["ts"])
    sentence, advice = result["blocks"][0]["text"]["text"], result["blocks"][1]["elements"][0]["text"]
    assert sentence == (":hourglass_flowing_sand: Job `job-q1` on endpoint `ep1` was requeued: it is waiting in the "
                        "queue.")
    for jargon in ("IN_QUEUE", "HTTP", "TTL", "/runsync"):
        assert jargon not in sentence + advice + result["text"]
    assert result["blocks"][2]["elements"][0]["text"] == "RunPod's answer (HTTP 200):"
    assert '"status": "IN_QUEUE"' in blocks_text(result), "RunPod's JSON is still in the thread"
    assert "The retry worked" in message_text(final)


async def test_a_typo_shows_one_usage_line_not_the_whole_help(app):
    ack = await app.command(f"{EP} job!")
    shown = message_text(ack.body)
    assert "'!'" in shown and "/runpod-retry help" in shown
    assert shown.count("• `/runpod-retry") == 0 and len(shown) < 600


async def test_the_bulk_summary_keeps_up_as_jobs_end_and_attaches_runpods_json(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    runpod.add_job(EP, "job-u1", status="FAILED")
    runpod.add_job(EP, "job-u2", status="FAILED", after_retry=("IN_PROGRESS",) * 6 + ("FAILED",),
                   final_error="OOM again")

    await app.command(f"{EP} job-u1 job-u2", user="U1")
    await app.settle(timeout=20)

    [parent] = app.top_level("C1")
    summary, mention = app.thread("C1", parent["ts"])  # job-u2 failed again after the summary: one mention
    assert "<@U1>, job `job-u2` you retried" in message_text(mention)
    table = blocks_text(summary)
    assert "job-u1  requeued, completed" in table and "job-u2  requeued, failed again" in table
    assert "IN_QUEUE" not in table and '"job":' not in table, "no frozen state, no JSON dump under the table"
    [upload] = slack.uploads.values()
    assert {r["job"] for r in json.loads(upload)["results"]} == {"job-u1", "job-u2"}
    title = message_text(current(app, parent, "C1"))
    assert "All 2 jobs requeued" in title and "Retrying" not in title


async def test_a_bulk_run_where_the_app_cannot_post_sends_its_final_tally_through_response_url(make_app, runpod,
                                                                                                  slack):
    app = await make_app("http", **FAST)
    slack.not_in_channel.add("C9")
    for job in ("job-r1", "job-r2"):
        runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS", "IN_PROGRESS", "COMPLETED"))

    ack = await app.command(f"{EP} job-r1 job-r2", user="U3", channel="C9")
    await app.settle(timeout=20)

    posts = app.responses(ack.response_url)
    assert len(posts) == 3 and all(p.get("response_type") == "in_channel" for p in posts), slack.describe()
    parent, summary, final = (message_text(p) for p in posts)
    assert "in the thread" not in parent and "invite me" in parent, "no thread is promised where there is none"
    assert "Results for 2 jobs" in summary
    assert final.startswith("Bulk retry finished") and "All 2 jobs requeued" in final and "2 completed" in final
    assert "in the thread" not in final
    assert not slack.rejected()

