"""Parsing /runpod-retry's text (bot/core/commands.py): every form of a command, and for anything else a usage
error Slack accepts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import messages
from bot.core.commands import Help, History, Retry, RetryFailed, Status, UsageError, parse_command
from bot.core.ids import is_valid_id
from tests.unit.core.builders import FAST, assert_valid, ids


@pytest.mark.parametrize("text", [
    "ep1 job-1", "ep1/job-1", " ep1   job-1 ", "ep1,job-1", "ep1\njob-1",
    "https://api.runpod.ai/v2/ep1/status/job-1",
    "http://api.runpod.ai/v2/ep1/retry/job-1",
    "https://api.runpod.ai/v2/ep1/status/job-1/",
    "https://api.runpod.ai/v2/ep1/status/job-1?x=1",
    "<https://api.runpod.ai/v2/ep1/status/job-1>",
    "<https://api.runpod.ai/v2/ep1/status/job-1|api.runpod.ai/v2/ep1/status/job-1>",
    "<https://api.runpod.ai/v2/ep1/status/job-1|the failed job, again>",
    "https://api.runpod.ai/v2/ep1/status/job-1?a=1&amp;b=2",
])
def test_every_form_of_one_job_parses_to_the_same_retry(text):
    assert parse_command(text) == Retry("ep1", ("job-1",))


@pytest.mark.parametrize("text", ["", "  ", "help", "Help", "?", "-h", "--help"])
def test_help(text):
    assert parse_command(text) == Help()


@pytest.mark.parametrize(("text", "expected"), [
    ("status ep1 job-1", Status("ep1", "job-1")),
    ("STATUS ep1/job-1", Status("ep1", "job-1")),
    ("status https://api.runpod.ai/v2/ep1/status/job-1", Status("ep1", "job-1")),
    ("history", History()),
    ("history 20", History(20)),
    ("failed ep1", RetryFailed("ep1")),
    ("failed ep1 2h", RetryFailed("ep1", 7200)),
    ("ep1 job-1 job-2 job-1", Retry("ep1", ("job-1", "job-2"))),
    ("ep1/job-1 ep1/job-2", Retry("ep1", ("job-1", "job-2"))),
])
def test_other_commands(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize(("text", "says", "bad"), [
    ("ep1", "only `ep1`", ()),
    ("ep1 job!", "job ID `job!`", ("job!",)),
    ("ep! job-1", "endpoint ID `ep!`", ("ep!",)),
    ("ep1 jöb", "'ö'", ("jöb",)),
    ("ep1 " + "j" * 129, "129 characters", ("j" * 129,)),
    ("ep1/job-1 ep2/job-2", "one endpoint", ()),
    ("https://example.com/foo/bar", "not a RunPod API link", ()),
    ("status", "which job", ()),
    ("status ep1", "only `ep1`", ()),
    ("status ep1 job-1 job-2", "takes one job", ()),
    ("history abc", "takes a number", ()),
    ("history 0", "takes a number", ()),
    ("history 51", "takes a number", ()),
    ("history ²", "takes a number", ()),  # a digit to str.isdigit, not to int()
    ("history 1 2", "at most one number", ()),
    ("help me", "no other words", ()),
    ("failed", "failed <endpointId>", ()),
    ("failed ep1 forever", "not a time window", ()),
    ("failed ep1 25h", "24 hours", ()),
    ("failed ep! 30m", "endpoint ID `ep!`", ("ep!",)),
])
def test_usage_errors_say_what_is_wrong(text, says, bad):
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    assert says in caught.value.problem
    assert caught.value.bad_ids == bad


def test_every_bad_id_is_listed_before_anything_is_done():
    with pytest.raises(UsageError) as caught:
        parse_command("ep1 ok-1 bad! ok-2 bäd")
    assert caught.value.bad_ids == ("bad!", "bäd")
    assert "Nothing was retried" in caught.value.problem


@given(ids, ids)
@FAST
def test_any_valid_pair_round_trips(endpoint, job):
    if endpoint.lower() in ("help", "status", "history", "failed", "-h", "--help"):
        return
    assert parse_command(f"{endpoint} {job}") == Retry(endpoint, (job,))
    assert parse_command(f"{endpoint}/{job}") == Retry(endpoint, (job,))
    assert parse_command(f"https://api.runpod.ai/v2/{endpoint}/status/{job}") == Retry(endpoint, (job,))
    assert parse_command(f"status {endpoint} {job}") == Status(endpoint, job)


@given(st.text(max_size=300))
@FAST
def test_any_text_parses_to_valid_ids_or_a_usage_error_slack_accepts(text):
    try:
        command = parse_command(text)
    except UsageError as exc:
        assert_valid(messages.usage_error(exc.problem))
        return
    if isinstance(command, Retry):
        assert command.jobs and all(is_valid_id(j) for j in (command.endpoint, *command.jobs))
    elif isinstance(command, Status):
        assert is_valid_id(command.endpoint) and is_valid_id(command.job)


def test_parsing_retry():
    assert parse_command("retry ep-1 job") == Retry("ep-1", ("job",))
    assert parse_command("RETRY ep-1 a b") == Retry("ep-1", ("a", "b"))
    assert parse_command("retry ep-1/job") == Retry("ep-1", ("job",))
    with pytest.raises(UsageError, match="Tell me which job"):
        parse_command("retry")
    assert "`retry`" in messages.USAGE


def test_parse_status_keeps_its_own_form():
    assert parse_command("status ep1 job-1") == Status("ep1", "job-1")
    with pytest.raises(UsageError) as caught:
        parse_command("status ep1")
    assert caught.value.form == "`/runpod-retry status <endpointId> <jobId>`"

