"""Classifying RunPod's answers (bot/core/outcome.py): what each answer means for the job, and what the person is
told to do."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.core.alerts import Alert, ran_since, retried_beyond
from bot.core.outcome import TRANSIENT, Kind, classify_error, classify_retry, classify_status, seconds_text
from bot.runpod import (
    RunPodBadResponse,
    RunPodHTTPError,
    RunPodRateLimited,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
)
from tests.unit.core.builders import http_error


def test_a_2xx_retry_is_requeued_with_its_json():
    outcome = classify_retry("ep1", "job-1", RunPodReply(200, {"id": "job-1", "status": "IN_QUEUE"}, 0.1))
    assert outcome.kind is Kind.REQUEUED and outcome.ok
    assert outcome.http_status == 200 and outcome.job_status == "IN_QUEUE"
    assert outcome.body == {"id": "job-1", "status": "IN_QUEUE"}
    assert "was requeued" in outcome.summary and "HTTP 200" in outcome.answer_label
    assert "HTTP" not in outcome.headline and "IN_QUEUE" not in outcome.headline  # words, not codes


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_point_at_the_api_key(status):
    outcome = classify_retry("ep1", "job-1", http_error(status, short="Unauthorized"))
    assert outcome.kind is Kind.UNAUTHORIZED and not outcome.ok
    assert "RUNPOD_API_KEY" in outcome.advice and f"HTTP {status}" in outcome.answer_label


def test_404_says_unknown_or_expired_and_the_retention():
    outcome = classify_retry("ep1", "job-1", http_error(404, {"error": "request does not exist"}))
    assert outcome.kind is Kind.NOT_FOUND
    assert "expired" in outcome.summary and "30 minutes" in outcome.advice and "1 minute" in outcome.advice


@pytest.mark.parametrize(("state", "words", "says"), [
    ("COMPLETED", "completed", "nothing to retry"),
    ("IN_QUEUE", "is waiting in the queue", "already queued"),
    ("IN_PROGRESS", "is running", "running"),
    ("CANCELLED", "was cancelled", "cancelled"),
])
def test_a_refusal_is_explained_by_the_status_probe(state, words, says):
    refusal = http_error(400, {"error": f"Job is not in a retryable state (status: {state})"})
    probe = RunPodReply(200, {"id": "job-1", "status": state}, 0.1)
    outcome = classify_retry("ep1", "job-1", refusal, probe)
    assert outcome.kind is Kind.NOT_RETRYABLE
    assert outcome.job_status == state and words in outcome.summary and says in outcome.advice.lower()
    assert state not in outcome.summary  # the state in words; RunPod's name for it stays in its JSON
    assert outcome.http_status == 400


def test_a_refusal_of_a_retryable_job_stays_a_refusal_and_a_404_probe_means_expired():
    refusal = http_error(400, {"error": "busy"}, "busy")
    failed = RunPodReply(200, {"id": "job-1", "status": "FAILED"}, 0.1)
    assert classify_retry("ep1", "job-1", refusal, failed).kind is Kind.REFUSED
    gone = RunPodHTTPError("404", op="status", status=404)
    assert classify_retry("ep1", "job-1", refusal, gone).kind is Kind.NOT_FOUND
    assert classify_retry("ep1", "job-1", refusal, None).kind is Kind.REFUSED


@pytest.mark.parametrize(("error", "kind", "says"), [
    (RunPodRateLimited("429", op="retry", status=429, body_excerpt="slow down"), Kind.RATE_LIMITED, "rate-limit"),
    (http_error(500, short="Internal Server Error"), Kind.SERVER_ERROR, "Internal Server Error"),
    (http_error(502, short="502 Bad Gateway"), Kind.SERVER_ERROR, "502 Bad Gateway"),
    (RunPodTimeout("timeout", op="retry"), Kind.TIMEOUT, "in time"),
    (RunPodUnreachable("could not reach RunPod (ConnectError)", op="retry"), Kind.UNREACHABLE, "Could not reach"),
    (RunPodBadResponse("not JSON", op="retry", status=200, body_excerpt="oops"), Kind.BAD_RESPONSE, "not with JSON"),
])
def test_transport_and_server_errors(error, kind, says):
    outcome = classify_retry("ep1", "job-1", error)
    assert outcome.kind is kind and says in outcome.summary
    assert "HTTP" not in outcome.headline
    if error.status is not None:
        assert f"(HTTP {error.status})" in outcome.answer_label
    assert (kind in TRANSIENT) == (kind in (Kind.RATE_LIMITED, Kind.SERVER_ERROR, Kind.TIMEOUT, Kind.UNREACHABLE))


def test_unsure_outcomes_never_claim_nothing_happened():
    for error in (RunPodTimeout("t", op="retry"), RunPodUnreachable("u", op="retry"),
                  RunPodBadResponse("b", op="retry", status=200)):
        outcome = classify_error("ep1", "job-1", error)
        assert "Nothing was changed" not in outcome.advice
        assert "/runpod-retry status ep1 job-1" in outcome.advice


@pytest.mark.parametrize(("body", "says", "advice"), [
    ({"id": "j", "status": "FAILED", "error": "CUDA out of memory"}, "failed: CUDA out of memory", "retried"),
    ({"id": "j", "status": "TIMED_OUT"}, "timed out", "retried"),
    ({"id": "j", "status": "COMPLETED", "output": 1}, "completed", "Nothing to do"),
    ({"id": "j", "status": "IN_PROGRESS"}, "running", "still alive"),
    ({"id": "j"}, "unknown state", "still alive"),
])
def test_classify_status(body, says, advice):
    outcome = classify_status("ep1", "j", RunPodReply(200, body, 0.1))
    assert outcome.kind is Kind.STATUS and outcome.ok
    assert says in outcome.summary and advice in outcome.advice and outcome.body == body


def test_classify_status_of_an_error_is_the_error():
    assert classify_status("ep1", "j", http_error(404)).kind is Kind.NOT_FOUND


@pytest.mark.parametrize(("ms", "text"), [(1437, "1.4 s"), (0, "0.0 s"), (125_000, "2 min 5 s"),
                                          (7_500_000, "2 h 5 min"), (-1, None), (None, None), ("5", None),
                                          (True, None)])
def test_seconds_text(ms, text):
    assert seconds_text(ms) == text


def test_a_lost_retry_answer_is_settled_by_the_status_probe():
    lost = RunPodUnreachable("dropped", op="retry")
    went_through = classify_retry("ep1", "j1", lost, RunPodReply(200, {"id": "j1", "status": "IN_QUEUE"}, 0.1))
    assert went_through.kind is Kind.REQUEUED and "went through" in went_through.summary
    not_yet = classify_retry("ep1", "j1", lost, RunPodReply(200, {"id": "j1", "status": "FAILED"}, 0.1))
    assert not_yet.kind is Kind.UNREACHABLE and "not taken effect" in not_yet.advice
    unknown = classify_retry("ep1", "j1", lost, RunPodTimeout("slow", op="status"))
    assert unknown.kind is Kind.UNREACHABLE


def test_a_lost_retry_answer_whose_job_has_completed_since_went_through_and_shows_its_final_answer():
    """Issue 17, defect 1: a retry cut off by a replica's death, settled after the job had already completed, was
    reported "no answer in time" (in a bulk run: "not retried") and its ending was never shown. Only a failed or
    timed-out job is retried, so a completed job was requeued and ran: the retry went through."""
    final = {"id": "j1", "status": "COMPLETED", "output": {"ok": 1}}
    lost = RunPodTimeout("the app stopped before RunPod answered the retry", op="retry")
    outcome = classify_retry("ep1", "j1", lost, RunPodReply(200, final, 0.1))
    assert outcome.kind is Kind.REQUEUED and outcome.job_status == "COMPLETED"
    assert outcome.body == final  # RunPod's final answer is shown with it


def test_a_lost_retry_answer_whose_job_ran_again_and_failed_went_through_and_shows_its_final_answer():
    """Issue 17, defect 1, the FAILED case: a retry cut off by a kill, settled after the job had run again and failed
    once more, was told "not taken effect (yet)" and its ending was never shown. Another error (or run time) than
    the failure retried means it ran again: the retry went through, and RunPod's answer is how it ended."""
    alert = Alert("ep1", "j1", "C1", "FAILED", 100.0, error="CUDA out of memory", execution_ms=1234.0)
    final = {"id": "j1", "status": "FAILED", "error": "worker crashed", "executionTime": 2000}
    assert ran_since(alert, final)
    assert not ran_since(alert, {"id": "j1", "status": "FAILED", "error": "CUDA out of memory", "executionTime": 1234})
    assert not ran_since(alert, {"id": "j1", "status": "FAILED"})  # nothing to compare: not known to have run
    assert not ran_since(replace(alert, error=None, execution_ms=None), final)
    lost = RunPodTimeout("the app stopped before RunPod answered the retry", op="retry")
    outcome = classify_retry("ep1", "j1", lost, RunPodReply(200, final, 0.1), ran_since=True)
    assert outcome.kind is Kind.REQUEUED and outcome.job_status == "FAILED" and outcome.body == final
    assert "ran again since and failed again: the retry went through" in outcome.summary
    unsure = classify_retry("ep1", "j1", lost, RunPodReply(200, final, 0.1))
    assert unsure.kind is Kind.TIMEOUT and "not taken effect" in unsure.advice


@pytest.mark.parametrize(("body", "known", "went_through"), [
    ({"status": "FAILED", "retries": 1}, 0, True),    # the app knew of none before: this retry is the one counted
    ({"status": "FAILED", "retries": 2}, 1, True),
    ({"status": "FAILED", "retries": 1}, 1, False),   # the one RunPod counts is an earlier one
    ({"status": "FAILED"}, 0, False),                 # RunPod says nothing: not known to have gone through
    ({"status": "FAILED", "retries": "1"}, 0, False),  # not a number
    ({"status": "FAILED", "retries": True}, 0, False),
])
def test_runpod_counting_more_retries_than_the_app_made_before_means_the_retry_went_through(
        body: dict[str, object], known: int, went_through: bool) -> None:
    assert retried_beyond(body, known) is went_through

