"""Every Slack message the core builds (bot/core/messages, bot/core/alerts) is one Slack accepts and says what
happened, for every outcome, phase and size."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import messages
from bot.core.alerts import Alert, Phase, finished, gave_up, new_alert, refused, requeued, retrying
from bot.core.outcome import Kind, Outcome, classify_error, classify_retry, classify_status
from bot.runpod import (
    RunPodBadResponse,
    RunPodHTTPError,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
    excerpt,
)
from bot.store import AuditEntry
from tests.unit.core.builders import FAST, assert_valid, http_error, readable

LONG = "x" * 5000
HOSTILE = "<!channel> & <@U1> ```code``` *bold* " + "é" * 100
ALL_OUTCOMES: list[Outcome] = [
    classify_retry("ep1", "job-1", RunPodReply(200, {"id": "job-1", "status": "IN_QUEUE"}, 0.1)),
    classify_retry("ep1", "job-1", http_error(401, short="Unauthorized")),
    classify_retry("ep1", "job-1", http_error(404, {"error": "request does not exist"})),
    classify_retry("ep1", "job-1", http_error(400, {"error": "no"}), RunPodReply(200, {"status": "COMPLETED"}, 0)),
    classify_retry("ep1", "job-1", http_error(502, short=excerpt("<h1>502</h1>" + LONG))),
    classify_retry("ep1", "job-1", RunPodTimeout("t", op="retry")),
    classify_retry("ep1", "job-1", RunPodUnreachable("u", op="retry")),
    classify_retry("ep1", "job-1", RunPodBadResponse("b", op="retry", status=200, body_excerpt=HOSTILE)),
    classify_status("e" * 128, "j" * 128, RunPodReply(200, {"status": "FAILED", "error": HOSTILE + LONG}, 0)),
    classify_status("ep1", "job-1", RunPodReply(200, {"status": "COMPLETED", "output": {"t": "y" * 8000}}, 0)),
    classify_status("ep1", "job-1", RunPodReply(200, {"status": "COMPLETED", "output": {"t": "<&>" * 9000}}, 0)),
    classify_status("ep1", "job-1", RunPodReply(200, {"status": "COMPLETED", "output": "z" * 50_000}, 0)),
]


@pytest.mark.parametrize("outcome", ALL_OUTCOMES, ids=[f"{o.kind}-{i}" for i, o in enumerate(ALL_OUTCOMES)])
def test_every_outcome_message_is_valid_and_says_the_status(outcome):
    msg = messages.outcome_message(outcome)
    assert_valid(msg)
    assert outcome.headline[:100] in msg["text"]
    if outcome.http_status is not None:
        assert f"HTTP {outcome.http_status}" in readable(msg)
    assert "<h1>" not in readable(msg)


def test_long_json_is_split_into_code_sections_that_reassemble_exactly():
    body = {"status": "COMPLETED", "output": {"text": "a<b>&c;" * 700, "n": list(range(300))}}
    sections = messages.json_sections(body)
    assert sections is not None and len(sections) >= 3
    texts = [s["text"]["text"] for s in sections]
    assert all(t.startswith("```") and t.endswith("```") and len(t) <= 3000 for t in texts)
    inner = "".join(t[3:-3] for t in texts)
    assert not re.search(r"&(?!amp;|lt;|gt;)", inner), "an entity was cut in two"
    unescaped = inner.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert re.sub(r"\s", "", unescaped) == re.sub(r"\s", "", messages.render_json(body))


def test_json_too_long_for_a_message_goes_to_a_file():
    huge = classify_status("ep1", "job-1", RunPodReply(200, {"status": "COMPLETED", "output": "z" * 50_000}, 0))
    assert messages.outcome_needs_file(huge)
    assert "attached" in readable(messages.outcome_message(huge))
    assert not messages.outcome_needs_file(ALL_OUTCOMES[0])


def test_command_messages_are_valid():
    assert_valid(messages.help_message())
    assert "/runpod-retry <endpointId> <jobId>" in readable(messages.help_message())
    error = messages.usage_error("job ID `job!`: it contains '!'")
    assert_valid(error)
    assert "job!" in readable(error) and "/runpod-retry <endpointId> <jobId>" in readable(error)
    assert_valid(messages.usage_error(LONG))
    assert_valid(messages.refusal(LONG))
    for verb in ("retry", "status"):
        parent = messages.command_parent("U1", "e" * 128, "j" * 128, verb)
        assert_valid(parent)
        assert "<@U1>" in readable(parent) and "j" * 128 in readable(parent)
    assert_valid(messages.already_claimed("ep1", "job-1", "U2", 1_700_000_000))
    for code in ("not_in_channel", "channel_not_found", HOSTILE):
        assert_valid(messages.fallback_note(code))


@pytest.mark.parametrize("body", [
    {"id": "job-1", "status": "COMPLETED", "executionTime": 1437, "output": {"ok": True}},
    {"id": "job-1", "status": "COMPLETED", "output": "z" * 50_000},
    {"id": "job-1", "status": "FAILED", "error": HOSTILE + LONG},
    {"id": "job-1", "status": "FAILED", "error": {"type": "OOM", "trace": LONG}},
    {"id": "job-1", "status": "TIMED_OUT"},
    {"id": "job-1", "status": "CANCELLED"},
    {"id": "job-1"},
])
def test_follow_messages_are_valid(body):
    msg = messages.follow_outcome("ep1", "job-1", body, "U1")
    assert_valid(msg)
    assert "job-1" in readable(msg)


def test_other_follow_and_operational_messages_are_valid():
    for msg in (messages.follow_gave_up("ep1", "job-1", "it had not ended after 60 minutes", "IN_QUEUE"),
                messages.follow_gave_up("ep1", "job-1", LONG, None),
                messages.follow_resumed("ep1", "job-1"),
                messages.follow_trouble("ep1", "job-1", LONG),
                messages.internal_error("the retry of job `job-1`", "KeyError"),
                messages.shutting_down(),
                messages.bad_button(),
                messages.audit_lines([AuditEntry("U1", "C1", "ep1", "job-1", "command", "requeued", True, 200,
                                                 "IN_QUEUE")]),
                messages.audit_lines([AuditEntry("U1", "C1", "e" * 128, "j" * 128, "button", "refused:access",
                                                 detail=LONG)] * 40)):
        assert_valid(msg)


def test_history_messages_are_valid():
    assert_valid(messages.history_message([], 10))
    rows = [{"at": 1_700_000_000 + i, "user": "U1", "channel": "C1", "source": "command", "endpoint": "e" * 128,
             "job": "j" * 128, "outcome": "requeued", "http_status": 200, "job_status": "IN_QUEUE",
             "detail": LONG} for i in range(50)]
    msg = messages.history_message(rows, 50)
    assert_valid(msg)


def _alerts() -> list[Alert]:
    base = new_alert("ep1", {"id": "job-1", "status": "FAILED", "error": HOSTILE + LONG, "delayTime": 500,
                             "executionTime": 3000}, "CALERTS", 1_700_000_000)
    long_ids = new_alert("e" * 128, {"id": "j" * 128, "status": "TIMED_OUT"}, "CALERTS", 1_700_000_000)
    going = retrying(base, "U1", 1_700_000_010)
    queued = requeued(going, "U1", 1_700_000_011, "IN_QUEUE")
    return [base, long_ids, going, queued,
            finished(queued, {"status": "COMPLETED", "executionTime": 1000}, 1_700_000_100),
            finished(queued, {"status": "FAILED", "error": "again"}, 1_700_000_100),
            refused(going, ALL_OUTCOMES[3]), refused(going, ALL_OUTCOMES[5]),
            gave_up(queued, "it had not ended after 60 minutes")]


@pytest.mark.parametrize("now", [1_700_000_050, 1_700_000_000 + 3600])
def test_alert_messages_in_every_phase_are_valid(now):
    alerts = _alerts()
    assert {a.phase for a in alerts} == set(Phase)
    for alert in alerts:
        msg = messages.alert_message(alert, now)
        assert_valid(msg)
        assert alert.job[:100] in readable(msg)
    assert_valid(messages.alert_refailed(alerts[5]))


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=400),
                    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=20), inner,
                                                                               max_size=6),
                    max_leaves=40),
       st.text(max_size=300))
@FAST
def test_any_runpod_json_or_excerpt_makes_a_valid_message(body, short):
    outcome = Outcome(Kind.SERVER_ERROR, "ep1", "job-1", "RunPod had a server error", "Try again.", 500, None,
                      body if body is not None else None, excerpt(short))
    assert_valid(messages.outcome_message(outcome))
    if isinstance(body, dict):
        assert_valid(messages.follow_outcome("ep1", "job-1", body, "U1"))


def test_text_from_runpod_cannot_close_the_code_block_it_is_shown_in():
    alert = Alert(endpoint="ep1", job="j1", channel="C1", status="FAILED", ended_at=0.0,
                  error="bad input: ```rm -rf``` <!channel>")
    msg = messages.alert_message(alert, now=0.0)
    error_section = next(b for b in msg["blocks"] if "*Error:*" in b.get("text", {}).get("text", ""))
    text = error_section["text"]["text"]
    assert text.count("`") == 2 and text.endswith("`")  # only our own inline-code marks
    assert "&lt;!channel&gt;" in text


def test_an_alert_refused_for_a_bad_api_key_keeps_its_retry_button():
    alert = Alert(endpoint="ep1", job="j1", channel="C1", status="FAILED", ended_at=1000.0)
    error = RunPodHTTPError("refused", op="retry", status=401, body_excerpt="Unauthorized")
    after = refused(alert, classify_error("ep1", "j1", error))
    assert after.phase is Phase.REFUSED and after.retry_offered
    buttons = [e["action_id"] for b in messages.alert_message(after, now=1001.0)["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert "runpod_retry" in buttons
