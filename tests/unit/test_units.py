"""Fast pure tests: the ID grammar, the command parser, the outcome classifier, the messages, the settings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.core import messages
from bot.core.alerts import Alert, Phase, finished, gave_up, new_alert, refused, requeued, retrying
from bot.core.commands import Help, History, Retry, RetryFailed, Status, UsageError, parse_command
from bot.core.ids import MAX_ID_LENGTH, id_problem, is_valid_id, shorten
from bot.core.outcome import TRANSIENT, Kind, Outcome, classify_error, classify_retry, classify_status, seconds_text
from bot.infra.config import SETTINGS, ConfigError, load_settings, settings_table
from bot.runpod import (
    RunPodBadResponse,
    RunPodHTTPError,
    RunPodRateLimited,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
    excerpt,
    redact,
)
from bot.store import AuditEntry
from testkit.fakes import block_problems

ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_ID_LENGTH)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_valid(msg: dict[str, Any]) -> None:
    """What real Slack would accept: slack_sdk's own validation plus the stand-in's limits."""
    assert isinstance(msg["text"], str) and msg["text"]
    assert len(msg["text"]) <= 40_000
    for block in msg["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert block_problems(msg["blocks"]) == []


def readable(msg: dict[str, Any]) -> str:
    return msg["text"] + "\n" + json.dumps(msg["blocks"], ensure_ascii=False)


# ---------------------------------------------------------------- ids.py


@pytest.mark.parametrize("value", ["a", "job-1", "ep_2", "A" * MAX_ID_LENGTH, "sync-0f3e-4b5a-u1", "-_-"])
def test_valid_ids(value):
    assert id_problem(value) is None and is_valid_id(value)


@pytest.mark.parametrize(("value", "says"), [
    ("", "empty"),
    ("j" * (MAX_ID_LENGTH + 1), "129 characters"),
    ("job!", "'!'"),
    ("jöb", "'ö'"),
    ("jo b", "' '"),
    ("job/1", "'/'"),
    ("job\n", "'\\n'"),
    ("<@U1>", "'<'"),
])
def test_invalid_ids_say_why(value, says):
    problem = id_problem(value)
    assert problem is not None and says in problem
    assert not is_valid_id(value)


def test_is_valid_id_rejects_a_trailing_newline():
    # `$` in a regex would match before a final newline; the grammar must not.
    assert not is_valid_id("job-1\n")


def test_shorten_keeps_short_values_and_cuts_long_ones():
    assert shorten("abc") == "abc"
    cut = shorten("x" * 500, 40)
    assert len(cut) == 40 and cut.endswith("…")


@given(ids)
@FAST
def test_every_id_of_the_grammar_is_valid(value):
    assert id_problem(value) is None


@given(st.text(max_size=200))
@FAST
def test_id_problem_agrees_with_the_grammar(value):
    matches = re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value) is not None and "\n" not in value
    assert (id_problem(value) is None) == matches == is_valid_id(value)


# ---------------------------------------------------------------- commands.py


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


# ---------------------------------------------------------------- outcome.py


def http_error(status: int, body: Any = None, short: str = "") -> RunPodHTTPError:
    return RunPodHTTPError(f"RunPod answered {status}", op="retry", status=status, body=body, body_excerpt=short)


def test_a_2xx_retry_is_requeued_with_its_json():
    outcome = classify_retry("ep1", "job-1", RunPodReply(200, {"id": "job-1", "status": "IN_QUEUE"}, 0.1))
    assert outcome.kind is Kind.REQUEUED and outcome.ok
    assert outcome.http_status == 200 and outcome.job_status == "IN_QUEUE"
    assert outcome.body == {"id": "job-1", "status": "IN_QUEUE"}
    assert "back in the queue" in outcome.summary and "HTTP 200" in outcome.answer_label
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
    ("IN_PROGRESS", "is running on a worker", "running"),
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


# ---------------------------------------------------------------- runpod.py helpers


def test_excerpt_strips_html_and_secrets_and_stays_short():
    html = "<html><head><style>b{}</style></head><body><h1>502 Bad Gateway</h1>" + "x" * 500 + " key-123456</body>"
    short = excerpt(html, ("key-123456",))
    assert short.startswith("502 Bad Gateway") and "<" not in short and len(short) <= 200
    assert excerpt("a key-123456 b", ("key-123456",)) == "a [redacted] b"


def test_redact_reaches_nested_values_and_keys():
    body = {"error": "bad key rp-1", "nested": [{"rp-1": "Bearer rp-1"}], "n": 3}
    assert redact(body, ("rp-1",)) == {"error": "bad key [redacted]", "nested": [{"[redacted]": "Bearer [redacted]"}],
                                       "n": 3}


# ---------------------------------------------------------------- messages.py


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


# ---------------------------------------------------------------- config.py

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "RUNPOD_API_KEY": "rp-1", "SLACK_SIGNING_SECRET": "s"}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


def test_nothing_set_names_every_missing_setting_with_where_to_get_it():
    problems = problems_of({})
    text = "\n".join(problems)
    assert len(problems) == 3
    for name in ("SLACK_BOT_TOKEN", "RUNPOD_API_KEY", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert name in text
    assert "OAuth & Permissions" in text and "API Keys" in text and "App-Level Tokens" in text


def test_the_alert_command_needs_only_the_bot_token():
    assert load_settings({"SLACK_BOT_TOKEN": "xoxb-1"}, serving=False).slack_bot_token == "xoxb-1"
    assert "SLACK_BOT_TOKEN" in problems_of({})[0]


def test_defaults_and_modes():
    http = load_settings(BASE)
    assert not http.socket_mode and http.port == 3000
    assert http.runpod_api_url == "https://api.runpod.ai/v2" and http.slack_api_url == "https://slack.com/api/"
    socket = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "RUNPOD_API_KEY": "rp-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert socket.socket_mode
    custom = load_settings({**BASE, "RUNPOD_API_URL": "http://127.0.0.1:1/v2/", "SLACK_API_URL": "http://h/api",
                            "PORT": "8080"})
    assert custom.runpod_api_url == "http://127.0.0.1:1/v2" and custom.slack_api_url == "http://h/api/"
    assert custom.port == 8080


@pytest.mark.parametrize(("env", "says"), [
    ({"SLACK_BOT_TOKEN": "xapp-1"}, "should start with `xoxb-`"),
    ({"SLACK_APP_TOKEN": "xoxb-2"}, "should start with `xapp-`"),
    ({"PORT": "web"}, "PORT must be a number"),
    ({"RUNPOD_TIMEOUT": "0"}, "RUNPOD_TIMEOUT must be at least"),
    ({"RUNPOD_MAX_ATTEMPTS": "0"}, "RUNPOD_MAX_ATTEMPTS must be at least 1"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"RUNPOD_RETRY_ENDPOINTS": "ep1,bad id!"}, "RUNPOD_RETRY_ENDPOINTS"),
])
def test_malformed_settings_are_named(env, says):
    problems = problems_of({**BASE, **env})
    assert any(says in p for p in problems), problems


def test_endpoint_keys_are_parsed_and_become_secrets():
    s = load_settings({**BASE, "RUNPOD_ENDPOINT_KEYS": " epA=key-a , epB=key=b\nepC = key-c ,"})
    assert dict(s.runpod_endpoint_keys) == {"epA": "key-a", "epB": "key=b", "epC": "key-c"}
    assert {"key-a", "key=b", "key-c", "rp-1", "xoxb-1", "s"} <= set(s.secrets())
    assert dict(load_settings(BASE).runpod_endpoint_keys) == {}


@pytest.mark.parametrize("value", ["epA", "epA=", "=sekrit-9", "bad id!=sekrit-9", "epA=sekrit-9,epB"])
def test_malformed_endpoint_keys_are_named_without_the_key(value):
    problems = problems_of({**BASE, "RUNPOD_ENDPOINT_KEYS": value})
    assert any("RUNPOD_ENDPOINT_KEYS" in p for p in problems)
    assert not any("sekrit-9" in p for p in problems)


def test_settings_table_lists_every_setting():
    table = settings_table()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in table


def test_text_from_runpod_cannot_close_the_code_block_it_is_shown_in():
    alert = Alert(endpoint="ep1", job="j1", channel="C1", status="FAILED", ended_at=0.0,
                  error="bad input: ```rm -rf``` <!channel>")
    msg = messages.alert_message(alert, now=0.0)
    error_section = next(b for b in msg["blocks"] if "*Error*" in b.get("text", {}).get("text", ""))
    text = error_section["text"]["text"]
    assert text.count("```") == 2 and text.endswith("```")  # only our own fences
    assert "&lt;!channel&gt;" in text


def test_an_alert_refused_for_a_bad_api_key_keeps_its_retry_button():
    alert = Alert(endpoint="ep1", job="j1", channel="C1", status="FAILED", ended_at=1000.0)
    error = RunPodHTTPError("refused", op="retry", status=401, body_excerpt="Unauthorized")
    after = refused(alert, classify_error("ep1", "j1", error))
    assert after.phase is Phase.REFUSED and after.retry_offered
    buttons = [e["action_id"] for b in messages.alert_message(after, now=1001.0)["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert "runpod_retry" in buttons


def test_a_lost_retry_answer_is_settled_by_the_status_probe():
    lost = RunPodUnreachable("dropped", op="retry")
    went_through = classify_retry("ep1", "j1", lost, RunPodReply(200, {"id": "j1", "status": "IN_QUEUE"}, 0.1))
    assert went_through.kind is Kind.REQUEUED and "went through" in went_through.summary
    not_yet = classify_retry("ep1", "j1", lost, RunPodReply(200, {"id": "j1", "status": "FAILED"}, 0.1))
    assert not_yet.kind is Kind.UNREACHABLE and "not taken effect" in not_yet.advice
    unknown = classify_retry("ep1", "j1", lost, RunPodTimeout("slow", op="status"))
    assert unknown.kind is Kind.UNREACHABLE
