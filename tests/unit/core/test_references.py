"""Finding RunPod jobs in a Slack message (bot/core/references.py), and the form the shortcut pre-fills from them.
Pure functions: messages in the shapes other monitors post (text, blocks, attachments)."""

from __future__ import annotations

import pytest

from bot.core import messages
from bot.core.references import MAX_REFERENCES, Findings, Reference, describe_places, find_references

JOB = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"
JOB2 = "7b1e2f3a-0000-4c4c-8d8d-123456789abc"
SYNC = "sync-11111111-2222-4333-8444-555555555555-e1"


def found(message: dict) -> list[tuple[str, str, str]]:
    return [(r.endpoint, r.job, r.where) for r in find_references(message).references]


def test_an_api_link_in_the_text():
    assert found({"text": f"see https://api.runpod.ai/v2/abc123xyz4567/status/{JOB} please"}) == [
        ("abc123xyz4567", JOB, "the message text")]


def test_a_slack_formatted_link_with_a_label_and_escaped_entities():
    text = f"<https://api.runpod.ai/v2/ep-9/status/{JOB}?a=1&amp;b=2|the job> &lt;failed&gt;"
    assert found({"text": text}) == [("ep-9", JOB, "the message text")]


@pytest.mark.parametrize("op", ["status", "retry", "cancel", "stream"])
def test_every_api_link_that_names_a_job(op):
    assert found({"text": f"https://api.runpod.ai/v2/ep1/{op}/job-7"}) == [("ep1", "job-7", "the message text")]


def test_an_endpoint_only_link_names_the_endpoint_and_a_nearby_job():
    findings = find_references({"text": f"GET https://api.runpod.ai/v2/ep1/health was bad; job {JOB} failed"})
    assert findings.endpoints == ("ep1",)
    assert [(r.endpoint, r.job) for r in findings.references] == [("ep1", JOB)]


def test_endpoint_slash_job_needs_a_runpod_job_shape():
    text = f"failed: abc123/{JOB}, and/or see docs/page and 2024/05 and ep1/job-1"
    assert found({"text": text}) == [("abc123", JOB, "the message text")]


def test_job_shapes_next_to_an_endpoint_id():
    text = f"Endpoint abc123xyz4567: job {JOB} failed (CUDA OOM); also job {SYNC}."
    assert found({"text": text}) == [("abc123xyz4567", JOB, "the message text"),
                                     ("abc123xyz4567", SYNC, "the message text")]


def test_a_job_word_with_a_plain_id_next_to_an_endpoint():
    assert found({"text": "endpoint ep42 job job-41 timed out; the job failed"}) == [
        ("ep42", "job-41", "the message text")]


def test_each_job_takes_the_nearest_endpoint_named_before_it():
    text = f"endpoint ep1: job {JOB} failed. endpoint ep2: job {JOB2} failed."
    assert [(r.endpoint, r.job) for r in find_references({"text": text}).references] == [("ep1", JOB), ("ep2", JOB2)]


def test_attachment_fields_fallback_and_blocks_are_read_and_said_where():
    message = {
        "text": "",
        "attachments": [{
            "fallback": "[Datadog] RunPod job failed",
            "title": "Monitor alert",
            "fields": [{"title": "Endpoint", "value": "abc123xyz4567", "short": True},
                       {"title": "Job ID", "value": JOB, "short": True}],
            "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                    "text": f"<https://api.runpod.ai/v2/ep2/status/{JOB2}|open>"}}],
        }],
    }
    # Two endpoints in one attachment: the job in the "Job ID" field has none beside it, and stays loose.
    findings = find_references(message)
    assert [(r.endpoint, r.job, r.where) for r in findings.references] == [("ep2", JOB2, "a section in attachment 1")]
    assert findings.loose_jobs == ((JOB, "attachment 1's field “Job ID”"),)
    # Without the link, the attachment names one endpoint: the job is that endpoint's.
    del message["attachments"][0]["blocks"]
    assert found(message) == [("abc123xyz4567", JOB, "attachment 1's field “Job ID”")]


def test_each_attachment_pairs_its_own_endpoint_and_job_fields():
    message = {"attachments": [
        {"fields": [{"title": "Endpoint", "value": "ep11"}, {"title": "Job", "value": JOB}]},
        {"fields": [{"title": "Endpoint", "value": "ep22"}, {"title": "Job", "value": JOB2}]}]}
    assert found(message) == [("ep11", JOB, "attachment 1's field “Job”"), ("ep22", JOB2, "attachment 2's field “Job”")]


def test_a_job_with_its_endpoint_in_another_field_when_the_message_names_one_endpoint():
    message = {"attachments": [{"fields": [{"title": "Endpoint", "value": "abc123"}],
                                "text": f"Error in {JOB}: worker lost"}]}
    assert found(message) == [("abc123", JOB, "attachment 1's text")]


def test_jobs_without_any_endpoint_are_loose_and_with_two_endpoints_too():
    assert find_references({"text": f"job {JOB} failed"}) == Findings(loose_jobs=((JOB, "the message text"),))
    two = find_references({"text": "endpoint ep1 is down. endpoint ep2 too.",
                           "attachments": [{"text": f"failed: {JOB}"}]})
    assert two.references == () and two.loose_jobs == ((JOB, "attachment 1's text"),)
    assert two.endpoints == ("ep1", "ep2")


def test_rich_text_runs_are_read_as_one_piece_and_section_fields_and_context():
    message = {"blocks": [
        {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
            {"type": "text", "text": "endpoint "}, {"type": "text", "text": "ep7", "style": {"code": True}},
            {"type": "text", "text": " job "}, {"type": "link", "url": "https://example.com", "text": JOB}]}]},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Endpoint*\nep8"},
                                       {"type": "mrkdwn", "text": f"*Job*\n{JOB2}"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"ep9/{SYNC}"}]},
    ]}
    assert found(message) == [("ep7", JOB, "the formatted text in the message"),
                              ("ep8", JOB2, "the message's fields"),
                              ("ep9", SYNC, "a context line in the message")]


def test_the_same_job_twice_is_kept_once_where_it_was_seen_first():
    text = f"https://api.runpod.ai/v2/ep1/status/{JOB}"
    message = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    assert found(message) == [("ep1", JOB, "the message text")]


def test_nothing_recognisable_and_odd_shapes_find_nothing():
    for message in ({}, {"text": "all good"}, {"text": None, "blocks": "x", "attachments": [None, 3]},
                    {"text": "https://example.com/v2/a b/status/c", "blocks": [None, {"type": "divider"}]},
                    {"text": "endpoint is down; job failed; endpoint: x"}):
        assert find_references(message).empty, message


def test_an_invalid_id_is_never_a_reference():
    assert found({"text": f"https://api.runpod.ai/v2/{'e' * 129}/status/job-1"}) == []


def test_a_huge_message_is_read_up_to_a_bound():
    text = " ".join(f"ep1/{JOB[:-2]}{n:02x}" for n in range(256)) + " x" * 200_000
    findings = find_references({"text": text})
    assert 0 < len(findings.references) <= MAX_REFERENCES


def test_main_endpoint_is_the_one_with_most_jobs_first_seen_on_a_tie():
    findings = Findings(references=(Reference("b", "1", "x"), Reference("a", "2", "x"), Reference("a", "3", "y")))
    assert findings.main_endpoint == "a" and findings.jobs_of("a") == ("2", "3")
    assert findings.places_of("a") == ("x", "y")
    tie = Findings(references=(Reference("b", "1", "x"), Reference("a", "2", "x")))
    assert tie.main_endpoint == "b"
    assert Findings(endpoints=("c",)).main_endpoint == "c" and Findings().main_endpoint is None


def test_describe_places():
    assert describe_places(["a"]) == "a"
    assert describe_places(["a", "b"]) == "a and b"
    assert describe_places(["a", "b", "c", "d", "e", "f"]) == "a, b, c, d and 2 more places"


# ---------------------------------------------------------------- what the form says


def test_prefill_says_what_was_found_and_where_and_mentions_other_endpoints():
    findings = find_references({"text": f"ep1/{JOB} ep1/{JOB2} ep2/{SYNC}",
                                "attachments": [{"text": f"https://api.runpod.ai/v2/ep1/status/{SYNC}"}]})
    endpoint, jobs, words = messages.prefill(findings)
    assert endpoint == "ep1" and jobs == (JOB, JOB2, SYNC)
    assert "Found 3 jobs on endpoint `ep1` in the message text and attachment 1's text" in words
    # Issue 18: not "use the shortcut again" (it would pick ep1 again): the exact command for the other endpoint.
    assert f"• `/runpod-retry ep2 {SYNC}`" in words and "shortcut again" not in words


def test_prefill_with_nothing_found_says_so_and_fills_nothing():
    endpoint, jobs, words = messages.prefill(find_references({"text": "hello"}))
    assert (endpoint, jobs) == (None, ()) and "found no RunPod job" in words


def test_prefill_with_jobs_but_no_endpoint_asks_for_the_endpoint():
    endpoint, jobs, words = messages.prefill(find_references({"text": f"job {JOB} died"}))
    assert endpoint is None and jobs == (JOB,) and "choose the endpoint" in words


def test_prefill_says_when_the_endpoint_is_not_one_the_app_may_call():
    endpoint, jobs, words = messages.prefill(find_references({"text": f"ep9/{JOB}"}), ["ep1"])
    # Issue 18: the jobs are not left filled in beside a list of endpoints they do not run on.
    assert (endpoint, jobs) == (None, ()) and "not set up to call that endpoint" in words
    assert "RUNPOD_RETRY_ENDPOINTS" not in words
