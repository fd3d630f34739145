"""Properties of the core (hypothesis): any text parses to valid IDs or a usage error, and every message built from
any values is one Slack accepts. The same properties against a live app are in tests/app/test_properties.py."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import messages
from bot.core.alerts import Alert
from bot.core.commands import (
    RESERVED_WORDS,
    CheckHealth,
    Help,
    History,
    Retry,
    RetryFailed,
    Status,
    UsageError,
    parse_command,
)
from bot.core.outcome import Outcome
from tests.strategies import (
    ID_RE,
    alerts,
    any_ids,
    assert_postable,
    command_texts,
    history_rows,
    huge_texts,
    json_values,
    long_bodies,
    many_keys,
    outcomes,
    statuses,
    times,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- the parser


@PROPS
@given(command_texts)
def test_any_text_is_a_command_with_valid_ids_or_a_usage_error(text: str) -> None:
    try:
        command = parse_command(text)
    except UsageError as exc:
        assert exc.problem
        assert_postable(messages.usage_error(exc.problem))
        return
    assert isinstance(command, Help | Retry | Status | History | RetryFailed | CheckHealth)
    if isinstance(command, Retry):
        assert command.jobs and all(ID_RE.match(job) for job in command.jobs)
        assert len(set(command.jobs)) == len(command.jobs)
    if isinstance(command, Retry | Status | RetryFailed | CheckHealth):
        assert ID_RE.match(command.endpoint)
    if isinstance(command, Status):
        assert ID_RE.match(command.job)


@PROPS
@given(any_ids, st.lists(any_ids, min_size=1, max_size=20), st.sampled_from([" ", ",", "\n", " , "]))
def test_valid_ids_always_parse_to_exactly_those_ids(endpoint: str, jobs: list[str], sep: str) -> None:
    if endpoint.lower() in RESERVED_WORDS or endpoint in ("-h",):
        return  # reserved words are commands, not endpoints
    command = parse_command(endpoint + " " + sep.join(jobs))
    assert command == Retry(endpoint, tuple(dict.fromkeys(jobs)))


# ---------------------------------------------------------------- every message the app would post


@PROPS
@given(huge_texts)
def test_usage_error_messages_are_postable_whatever_the_problem_text(problem: str) -> None:
    assert_postable(messages.usage_error(problem or "empty"))


@PROPS
@given(alerts, times)
def test_alert_messages_are_postable_for_any_field_values(alert: Alert, now: float) -> None:
    msg = messages.alert_message(alert, now)
    assert_postable(msg)
    assert alert.job[:100] in json.dumps(msg)  # the job is named, even a 128-character one


@PROPS
@given(outcomes, st.sampled_from(["", "Retry 3/5: "]), st.none() | huge_texts)
def test_outcome_messages_are_postable_for_any_runpod_answer(outcome: Outcome, prefix: str,
                                                              note: str | None) -> None:
    assert_postable(messages.outcome_message(outcome, prefix=prefix, attach_note=note))


@PROPS
@given(any_ids, any_ids, st.dictionaries(st.text(max_size=20), json_values, max_size=6), statuses,
       st.none() | json_values, st.none() | any_ids)
def test_follow_outcome_messages_are_postable_for_any_final_json(endpoint: str, job: str, extra: dict[str, Any],
                                                                  status: str, error: Any, actor: str | None) -> None:
    body = {**extra, "id": job, "status": status}
    if error is not None:
        body["error"] = error
    assert_postable(messages.follow_outcome(endpoint, job, body, actor))


@PROPS
@given(long_bodies | many_keys, any_ids, any_ids)
def test_follow_outcome_messages_are_postable_for_very_long_json(body: dict[str, Any], endpoint: str,
                                                                 job: str) -> None:
    assert_postable(messages.follow_outcome(endpoint, job, body, "U1"))


@PROPS
@given(history_rows, st.integers(1, 50))
def test_history_messages_are_postable_for_any_rows(rows: list[dict[str, Any]], limit: int) -> None:
    assert_postable(messages.history_message(rows, limit))
