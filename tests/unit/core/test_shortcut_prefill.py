"""The shortcut's reading of a message and what it fills in (pure): `job-10` is not the ID `-10`, an
endpoint the app may not call fills nothing in (an allowed one is chosen instead when the message names one), and
the other endpoints' jobs come as commands to paste."""

from __future__ import annotations

from bot.core import messages
from bot.core.ids import id_problem
from bot.core.references import find_references

JOB = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"


def test_job_dash_10_is_not_read_as_the_id_dash_10():
    findings = find_references({"text": "endpoint abc123 job-10 failed; endpoint-2 is fine"})
    assert all(ref.job != "-10" for ref in findings.references) and "-10" not in dict(findings.loose_jobs)
    assert "-2" not in findings.endpoints
    labelled = find_references({"text": "endpoint abc123, job: job-10"})
    assert [(r.endpoint, r.job) for r in labelled.references] == [("abc123", "job-10")]


def test_an_allowed_endpoint_is_chosen_over_a_busier_one_the_app_may_not_call():
    findings = find_references({"text": f"ep9/{JOB} ep9/{JOB[:-1]}2 ep1/{JOB[:-1]}3"})
    endpoint, jobs, words = messages.prefill(findings, ["ep1"])
    assert (endpoint, jobs) == ("ep1", (f"{JOB[:-1]}3",))
    assert "2 jobs on endpoint `ep9`: this app is not set up to call that endpoint" in words
    assert "/runpod-retry ep9" not in words, "no command offered that would be refused"


def test_nothing_is_filled_in_when_no_endpoint_named_may_be_called():
    endpoint, jobs, words = messages.prefill(find_references({"text": f"ep9/{JOB}"}), ["ep1"])
    assert (endpoint, jobs) == (None, ())
    assert "1 job on endpoint `ep9`" in words and "RUNPOD_RETRY_ENDPOINTS" not in words


def test_unseen_characters_are_named_not_quoted():
    assert "it contains a space;" in (id_problem("jo b") or "")
    assert "a non-breaking space" in (id_problem("jo\u00a0b") or "")
