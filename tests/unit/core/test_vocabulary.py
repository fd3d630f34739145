"""bot/core/words.py, the vocabulary every surface shares, and the pure builders that use it (issue 18, words-a)."""

from __future__ import annotations

import re

import pytest

from bot.core import words
from bot.core.alerts import Alert, Phase
from bot.core.answers import RunPodHTTPError, RunPodReply
from bot.core.commands import UsageError, parse_command
from bot.core.groups import JobResult, Storm
from bot.core.messages import alert_message, job_outcome_words, storm_alert
from bot.core.outcome import classify_retry, classify_status

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("n", "said"), [(0, "0 jobs"), (1, "1 job"), (2, "2 jobs")])
def test_counts_agree_with_their_number(n, said):
    assert words.jobs(n) == said
    assert words.count(n, "retry", "retries") == f"{n} {'retry' if n == 1 else 'retries'}"


@pytest.mark.parametrize(("seconds", "said"), [(1, "1 second"), (45, "45 seconds"), (60, "1 minute"),
                                             (90, "2 minutes"), (3600, "1 hour"), (5400, "1.5 hours")])
def test_how_long_following_lasted_reads_at_a_glance(seconds, said):
    assert words.duration(seconds) == said


@pytest.mark.parametrize(("status", "state", "sentence"), [
    ("FAILED", "failed", "failed"), ("TIMED_OUT", "timed out", "timed out"),
    ("IN_QUEUE", "waiting in the queue", "is waiting in the queue"), ("IN_PROGRESS", "running", "is running"),
    ("RUNNING", "running", "is running"), ("COMPLETED", "completed", "completed"),
    ("CANCELLED", "cancelled", "was cancelled"), (None, "unknown", "is in an unknown state"),
])
def test_one_wording_per_state(status, state, sentence):
    assert words.state(status) == state
    assert words.state_sentence(status) == sentence


def test_times_are_exact_a_date_token_in_bodies_and_utc_in_notifications():
    at = 1_800_003_720.0  # 09:02 UTC
    assert words.utc(at) == "09:02 UTC"
    assert words.slack_time(at) == "<!date^1800003720^{time}|09:02 UTC>"
    assert words.without_dates(f"until {words.slack_time(at)}.") == "until 09:02 UTC."
    assert words.retry_until(at) == ("Can be retried until <!date^1800003720^{time}|09:02 UTC> (30 minutes after it "
                                     "ended).")
    assert "about" not in words.retry_until(at, plain=True)


def test_the_retry_limit_always_says_when_the_next_retry_is_allowed():
    said = words.retry_limit(3, NOW + 600)
    assert said.startswith("Retry limit reached (3 retries per job per hour); next allowed at <!date^")
    late = words.retry_limit(1, NOW + 3000, deadline=NOW + 1800, plain=True)
    assert "1 retry per job per hour" in late and re.search(r"allowed at \d\d:\d\d UTC, after RunPod forgets", late)
    assert words.next_allowed([NOW - 3000, NOW - 600], 2, 3600) == NOW + 600
    assert words.next_allowed([NOW - 600], 2, 3600) is None


def test_not_retried_is_said_once():
    assert words.not_retried("not retried: the app was restarting") == "not retried: the app was restarting"
    shutdown = JobResult("job-1", "refused:shutdown", detail="not retried: the app was restarting; retry it again")
    assert job_outcome_words(shutdown, None) == "not retried: the app was restarting; retry it again"


def test_requeued_is_the_one_word_for_a_retry_runpod_accepted():
    outcome = classify_retry("ep1", "j-1", RunPodReply(200, {"id": "j-1", "status": "IN_QUEUE"}, 0.1))
    assert outcome.summary == "Job `j-1` on endpoint `ep1` was requeued: it is waiting in the queue"


def test_a_400_for_a_job_runpod_shows_as_failed_says_so_and_no_invented_rule():
    refused = RunPodHTTPError("HTTP 400", op="retry", status=400, body_excerpt="bad request",
                              body={"error": "bad request"})
    probe = RunPodReply(200, {"id": "j-1", "status": "FAILED"}, 0.1)
    outcome = classify_retry("ep1", "j-1", refused, probe)
    assert "Only FAILED or TIMED_OUT" not in outcome.summary + outcome.advice
    assert outcome.summary.startswith("RunPod refused to retry job `j-1` on endpoint `ep1`, though it shows the job "
                                      "as failed")
    plain = classify_retry("ep1", "j-1", refused)
    assert "Only FAILED or TIMED_OUT" not in plain.advice


def test_status_of_a_failed_job_promises_no_about_30_minutes():
    outcome = classify_status("ep1", "j-1", RunPodReply(200, {"id": "j-1", "status": "FAILED"}, 0.1))
    assert "about 30 minutes" not in outcome.advice and "`/runpod-retry ep1 j-1`" in outcome.advice


def test_an_invalid_id_inside_a_list_is_named_as_an_invalid_job_id():
    with pytest.raises(UsageError) as raised:
        parse_command("ep-1 a b bad/../id c")
    assert "job ID `bad/../id`" in raised.value.problem and "were both given" not in raised.value.problem
    assert raised.value.bad_ids == ("bad/../id",)
    with pytest.raises(UsageError, match="were both given"):
        parse_command("ep-1 a ep-2/b")  # two real endpoints are still told apart


def _storm(results: dict[str, JobResult], finals: dict[str, str]) -> Storm:
    storm = Storm("ep1", "CALERTS", NOW, NOW + 5)
    for n in range(10):
        storm.add(f"job-{n}", "FAILED", "boom", NOW + n / 2)
    storm.requested = list(storm.jobs)
    storm.results, storm.finals = results, finals
    storm.retry_by, storm.retry_at = "U1", NOW + 10
    return storm


def test_a_grouped_alert_after_a_partial_retry_all_keeps_its_header_and_body_true():
    results = {f"job-{n}": JobResult(f"job-{n}", "requeued", 200, "IN_QUEUE") for n in range(4)}
    results |= {f"job-{n}": JobResult(f"job-{n}", "not_found", 404, detail="RunPod does not know it")
                for n in range(4, 10)}
    msg = storm_alert(_storm(results, {}), NOW + 60)
    head = msg["blocks"][0]["text"]["text"]
    assert head.endswith("10 jobs failed on endpoint ep1 · 4 requeued · 6 not retried")
    body = str(msg["blocks"])
    assert "Every job of this alert was" not in body and "4 requeued, 6 not retried" in body
    assert "4 still running" in body


def test_an_alert_in_a_channel_where_retries_are_not_allowed_offers_no_button():
    alert = Alert("ep1", "j-1", "CALERTS", "FAILED", NOW, ts="1.2")
    msg = alert_message(alert, NOW + 60, channels=("COPS", "CSRE"))
    assert not [b for b in msg["blocks"] if b["type"] == "actions"]
    assert "Retries are not allowed in this channel" in str(msg["blocks"]) and "<#COPS>, <#CSRE>" in str(msg["blocks"])
    allowed = alert_message(alert, NOW + 60, channels=("CALERTS",))
    assert [b for b in allowed["blocks"] if b["type"] == "actions"]


def test_a_retried_runs_figures_are_labelled_as_the_retrys():
    alert = Alert("ep1", "j-1", "CALERTS", "FAILED", NOW, ts="1.2", phase=Phase.COMPLETED, actor="U1", acted_at=NOW,
                  delay_ms=50, execution_ms=39_800)
    labels = [f["text"].split("\n")[0] for b in alert_message(alert, NOW)["blocks"] for f in b.get("fields") or []]
    assert "*Retry waited in queue*" in labels and "*Retry ran for*" in labels and "*Waited in queue*" not in labels


def test_a_failure_again_outside_the_app_tells_the_limit_not_a_deadline_the_app_would_refuse():
    from bot.core.messages import alert_refailed

    alert = Alert("ep1", "j-1", "CALERTS", "FAILED", NOW, ts="1.2", phase=Phase.FAILED_AGAIN,
                  retried_at=(NOW - 100,))
    said = str(alert_refailed(alert, NOW + 10, max_retries=1)["blocks"])
    assert "Retry limit reached (1 retry per job per hour)" in said and "Can be retried until" not in said
    assert "Can be retried until <!date^" in str(alert_refailed(alert, NOW + 10, max_retries=3)["blocks"])
