"""Issue 20, the kill switch's pure parts: `auto` parsing, and every message about automatic retries staying within
Slack's limits whatever the policy file holds (long names and patterns, many policies, many pauses)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import messages
from bot.core.breaker import should_trip
from bot.core.commands import AutoPause, AutoResume, AutoShow, UsageError, parse_command
from bot.core.messages.auto import breaker_reason
from bot.core.messages.home import Access, home_view
from bot.core.policies import Pause, Policy, describe
from tests.strategies import assert_postable
from tests.unit.core.builders import FAST

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "expected"), [
    ("auto", AutoShow()),
    ("AUTO", AutoShow()),
    ("auto pause ep-a", AutoPause("ep-a", None)),
    ("auto pause ep-a 2h", AutoPause("ep-a", 7200.0)),
    ("auto pause ep-a 90m", AutoPause("ep-a", 5400.0)),
    ("auto pause ep-a 45", AutoPause("ep-a", 2700.0)),  # minutes, as in `failed`
    ("auto pause all 1d", AutoPause("*", 86400.0)),
    ("auto pause ALL", AutoPause("*", None)),
    ("auto resume ep-a", AutoResume("ep-a")),
    ("auto resume all", AutoResume("*")),
])
def test_auto_forms(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("auto stop", "followed by `pause` or `resume`"),
    ("auto pause", "which endpoint to pause"),
    ("auto pause ep-a 2h more", "which endpoint to pause"),
    ("auto pause bad/id", "only letters, digits"),
    ("auto pause ep-a soon", "`soon` is not a duration"),
    ("auto pause ep-a 8d", "from 1 minute to 7 days"),
    ("auto pause ep-a 0m", "from 1 minute to 7 days"),
    ("auto resume", "which endpoint to resume"),
    ("auto resume ep-a ep-b", "which endpoint to resume"),
])
def test_auto_usage_errors(text, says):
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    assert says in caught.value.problem
    assert_postable(messages.usage_error(caught.value.problem, caught.value.form))


def test_describe_is_one_line_as_the_spec_shows():
    policy = Policy("oom-once", ("ep-a", "ep-b"), ("CUDA out of memory",), max_attempts=2, delay=30.0)
    assert describe(policy) == "oom-once: CUDA out of memory on ep-a, ep-b, up to 2 retries 30 s apart"


def test_the_breaker_notice_says_what_when_why_and_offers_resume():
    pause = Pause("ep-a", NOW + 1800, "breaker", breaker_reason(6, 10), NOW)
    msg = messages.breaker_notice(pause, NOW)
    assert msg["text"] == ("Automatic retries on `ep-a` are paused until 22:43 UTC: 6 of the last 10 automatic "
                           "retries failed again within 10 minutes. Failures there will be alerted for people to "
                           "decide.")
    assert msg["blocks"][0]["accessory"]["value"] == "ep-a"
    assert_postable(msg)


def test_the_breaker_counts_the_newest_ten_within_ten_minutes():
    failed = [(NOW - i, True) for i in range(5)]
    assert should_trip(failed, NOW)
    assert not should_trip(failed[:4] + [(NOW - 10 - i, False) for i in range(6)], NOW)
    assert not should_trip([(NOW - 601 - i, True) for i in range(10)], NOW)  # too old
    # Only the newest ten count: five old failures behind ten newer successes do not trip it.
    assert not should_trip([(NOW - i, False) for i in range(10)] + [(NOW - 100 - i, True) for i in range(5)], NOW)


names = st.text(min_size=1, max_size=300)
patterns = st.lists(st.text(max_size=500), max_size=5)
endpoints = st.lists(st.from_regex(r"[a-z0-9-]{1,60}", fullmatch=True), min_size=1, max_size=20)
policies = st.lists(st.builds(Policy, names, endpoints.map(tuple), patterns.map(tuple),
                              max_attempts=st.integers(1, 100), delay=st.floats(0, 86400),
                              mode=st.sampled_from(["on", "dry-run"])), max_size=80)
pauses = st.lists(st.builds(Pause, st.one_of(st.just("*"), st.from_regex(r"[a-z0-9-]{1,128}", fullmatch=True)),
                            st.one_of(st.none(), st.floats(NOW, NOW + 7 * 86400)),
                            st.one_of(st.just("breaker"), st.from_regex(r"U[A-Z0-9]{8}", fullmatch=True)),
                            st.text(max_size=600), st.floats(NOW - 86400, NOW)), max_size=40)


@FAST
@given(policies, pauses)
def test_every_auto_message_is_postable_whatever_the_policies_and_pauses(listed, paused):
    assert_postable(messages.auto_listing(listed, paused, NOW))
    for pause in paused[:3]:
        for msg in (messages.paused_confirm(pause, NOW), messages.already_paused(pause, NOW),
                    messages.breaker_notice(pause, NOW), messages.breaker_resumed(pause, "U1", NOW),
                    messages.switch_line("U1", pause.scope, pause, NOW, mentions=False),
                    messages.switch_line("U1", pause.scope, None, NOW),
                    messages.resumed_confirm(pause.scope, pause, NOW), messages.not_paused(pause.scope)):
            assert_postable(msg)
    view = home_view("U1", NOW, Access(True), [], [], [], [], policies=listed, pauses=paused)
    assert len(view["blocks"]) <= 100
    if listed:
        assert "Automatic retries" in str(view["blocks"][:4])
