"""`/runpod-retry` end to end, in both modes, over real loopback HTTP."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from testkit.env import SECRETS, SIGNING_SECRET
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import ACK_DEADLINE, Ack, Harness, message_text

USAGE_MARK = "/runpod-retry <endpointId> <jobId>"
HTML_502 = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style></head>"
            "<body><h1>502 Bad Gateway</h1><p>cloudflare</p></body></html>")
HTML_500 = "<html><body><h1>500 Internal Server Error</h1><p>upstream worker crashed</p></body></html>"
TAG = re.compile(r"</?(html|head|body|h1|p|title|style|script|!doctype)\b", re.I)


def ack_text(ack: Ack) -> str:
    return message_text(ack.body) if isinstance(ack.body, dict) else str(ack.body)


def slack_messages_text(slack: FakeSlack) -> str:
    """Every readable text the app sent to Slack: posts, updates, ephemerals and response_url posts."""
    return "\n".join(message_text(c.args) for c in slack.calls
                     if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"))


def first_reply(app: Harness, channel: str = "C1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [parent] = app.top_level(channel)
    return parent, app.thread(channel, parent["ts"])


async def assert_still_serving(app: Harness, runpod: FakeRunPod) -> None:
    """A later, ordinary command still works end to end (the fault did not break the app)."""
    runpod.add_job("ep-ok", "job-after", status="FAILED")
    before = len(app.top_level("C2"))
    ack = await app.command("ep-ok job-after", channel="C2")
    assert ack.status == 200
    await app.settle()
    assert any(c.op == "retry" and c.job == "job-after" and c.status == 200 for c in runpod.calls)
    parent = app.top_level("C2")[before]
    text = app.thread_text("C2", parent["ts"])
    assert "was requeued" in text and "HTTP 200" in text


# ---------------------------------------------------------------- the happy path


async def test_retry_posts_parent_then_json_result_in_its_thread_and_follows_to_the_end(app, runpod, slack):
    runpod.add_job("ep1", "job-1-u1", status="FAILED")

    ack = await app.command("ep1 job-1-u1", user="U1", channel="C1")

    assert ack.status == 200
    assert ack.latency < ACK_DEADLINE
    await app.settle()
    retry_calls = runpod.calls_to("retry")
    assert [(c.endpoint, c.job) for c in retry_calls] == [("ep1", "job-1-u1")]
    assert retry_calls[0].authorization == "Bearer rp-test-key"
    [parent] = app.top_level("C1")
    assert "<@U1>" in message_text(parent) and "job-1-u1" in message_text(parent) and "ep1" in message_text(parent)
    replies = app.thread("C1", parent["ts"])
    assert len(replies) == 2, slack.describe()
    result = message_text(replies[0])
    assert "HTTP 200" in result and '"status": "IN_QUEUE"' in result and "was requeued" in result
    final = message_text(replies[-1])
    assert "completed" in final
    assert not slack.rejected()
    everything = app.everything_sent_to_slack()
    assert not any(secret in everything for secret in SECRETS)


@pytest.mark.parametrize("text", [
    "ep-a1 job_9",
    "ep-a1/job_9",
    "https://api.runpod.ai/v2/ep-a1/status/job_9",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9|api.runpod.ai/v2/ep-a1/status/job_9>",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9>",
    "<https://api.runpod.ai/v2/ep-a1/status/job_9|that failed job>",
    "  ep-a1   job_9  ",
], ids=["space", "slash", "url", "slack-link-labelled", "slack-link", "slack-link-label-with-spaces", "extra-spaces"])
async def test_every_accepted_form_reaches_runpod_as_one_retry_of_that_job(app, runpod, slack, text):
    runpod.add_job("ep-a1", "job_9", status="FAILED")

    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    assert [(c.method, c.endpoint, c.job) for c in runpod.calls_to("retry")] == [("POST", "ep-a1", "job_9")]
    parent, replies = first_reply(app)
    assert "job_9" in message_text(parent) and "ep-a1" in message_text(parent)
    assert "HTTP 200" in message_text(replies[0])
    assert not slack.rejected()


async def test_status_shows_the_json_in_a_thread_without_retrying(app, runpod, slack):
    runpod.add_job("ep1", "job-s", status="FAILED", error="CUDA out of memory")

    ack = await app.command("status ep1 job-s", user="U7")

    assert ack.status == 200
    await app.settle()
    assert runpod.calls_to("retry") == []
    assert [(c.method, c.endpoint, c.job) for c in runpod.calls_to("status")] == [("GET", "ep1", "job-s")]
    parent, replies = first_reply(app)
    assert "<@U7>" in message_text(parent) and "status" in message_text(parent) and "job-s" in message_text(parent)
    [reply] = replies
    text = message_text(reply)
    assert "HTTP 200" in text and '"status": "FAILED"' in text and "CUDA out of memory" in text
    assert "failed" in text
    assert runpod.job("ep1", "job-s").status == "FAILED"  # nothing changed on RunPod
    assert not slack.rejected()


@pytest.mark.parametrize("text", ["help", "HELP", "--help"])
async def test_help_shows_usage_only_to_the_caller(app, runpod, slack, text):
    # With no text at all, the command opens the retry form instead (issue 12; tests/test_modal.py).
    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    assert USAGE_MARK in ack_text(ack) and "status <endpointId> <jobId>" in ack_text(ack)
    assert ack.body.get("response_type", "ephemeral") == "ephemeral"
    assert runpod.calls == []
    assert slack.calls_to("chat.postMessage") == [] and slack.all_responses() == []


# ---------------------------------------------------------------- bad input: told privately, nothing done

STATUS_MARK = "/runpod-retry status <endpointId> <jobId>"
HISTORY_MARK = "/runpod-retry history [N]"
BULK_MARK = "/runpod-retry <endpointId> <jobId> <jobId> …"
BAD_INPUTS = [
    ("ep1", "only `ep1`", USAGE_MARK),
    ("ep1/", "job ID", USAGE_MARK),
    ("ep1 job!", "'!'", USAGE_MARK),
    ("ep1 jöb", "'ö'", USAGE_MARK),
    ("ep1/jo$b", "'$'", USAGE_MARK),
    ("https://api.runpod.ai/v2/e p/status/job-1", "not a RunPod API link", USAGE_MARK),
    ("ep1 " + "j" * 129, "129 characters", USAGE_MARK),
    ("e" * 129 + " job-1", "129 characters", USAGE_MARK),
    ("status", "which job", STATUS_MARK),
    ("status ep1", "only `ep1`", STATUS_MARK),
    ("status ep1 job-1 job-2", "`status` takes one job", STATUS_MARK),
    ("https://example.com/jobs/job-1", "not a RunPod API link", USAGE_MARK),
    ("<https://example.com/ep1/job-1|example.com/ep1/job-1>", "not a RunPod API link", USAGE_MARK),
    ("ep1/job-1 ep2/job-2", "one endpoint", BULK_MARK),
    ("history abc", "`history` takes a number", HISTORY_MARK),
    ("history 5 6", "at most one number", HISTORY_MARK),
    ("help me", "`help` takes no other words", "/runpod-retry help"),
]


@pytest.mark.parametrize(("text", "says", "form"), BAD_INPUTS, ids=[t for t, _, _ in BAD_INPUTS])
async def test_bad_input_is_explained_privately_with_usage_and_nothing_is_done(app, runpod, slack, text, says,
                                                                               form):
    runpod.add_job("ep1", "job-1", status="FAILED")

    ack = await app.command(text)

    assert ack.status == 200
    await app.settle()
    shown = ack_text(ack)
    assert says in shown, shown
    # The form the mistake is about, and where the rest is: not the whole help after every typo (issue 14).
    assert form in shown and "/runpod-retry help" in shown
    assert "retries several jobs" not in shown and "shows the last N retry attempts" not in shown
    assert ack.body.get("response_type", "ephemeral") == "ephemeral"
    assert runpod.calls == [], runpod.describe()
    assert slack.calls_to("chat.postMessage") == [] and slack.all_responses() == []
    assert not slack.rejected()


# ---------------------------------------------------------------- the ack never waits on RunPod


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_ack_comes_at_once_while_runpod_is_slow_and_the_result_lands_later(make_app, runpod, slack, mode):
    app = await make_app(mode, RUNPOD_TIMEOUT="5")
    runpod.add_job("ep1", "job-slow", status="FAILED")
    runpod.fault("retry", delay=2.5)

    ack = await app.command("ep1 job-slow")

    assert ack.status == 200
    # Well before RunPod's answer (2.5 s): the ack did not wait for it, even on a busy machine.
    assert ack.latency < 2.0, f"the ack took {ack.latency:.2f}s"
    [call] = await runpod.wait_calls("retry")
    assert call.status is None  # RunPod had not answered yet
    await app.settle()
    assert call.status == 200
    _parent, replies = first_reply(app)
    assert "HTTP 200" in message_text(replies[0]) and "was requeued" in message_text(replies[0])


# ---------------------------------------------------------------- RunPod answers, explained


def _unauthorized(runpod: FakeRunPod) -> None:
    runpod.api_keys["ep1"] = "rp-some-other-account-key"  # our key is not valid for this endpoint


def _forbidden(runpod: FakeRunPod) -> None:
    runpod.fault("retry", status=403, body={"error": "API key does not have access to this endpoint"})


def _rate_limited_twice(runpod: FakeRunPod) -> None:
    runpod.fault("retry", status=429, body={"error": "too many requests"}, headers={"Retry-After": "0"}, times=2)


FAULT_CASES: list[tuple[str, Any, dict[str, str], list[str], int]] = [
    # (id, setup, env, phrases the thread must contain, RunPod /retry calls)
    ("401", _unauthorized, {}, ["HTTP 401", "RUNPOD_API_KEY", "refused the API key"], 1),
    ("403", _forbidden, {}, ["HTTP 403", "RUNPOD_API_KEY", "refused the API key"], 1),
    ("404", lambda rp: rp.expire("ep1", "job-x"), {}, ["HTTP 404", "expired", "30 minutes", "does not know"], 1),
    ("429-then-ok", _rate_limited_twice, {}, ["throttling", "queued", "HTTP 200", "was requeued",
                                              '"status": "IN_QUEUE"'], 3),
    ("500-html", lambda rp: rp.fault("retry", status=500, body=HTML_500), {},
     ["HTTP 500", "server error", "500 Internal Server Error upstream worker crashed"], 1),
    ("502-html", lambda rp: rp.fault("retry", status=502, body=HTML_502), {},
     ["HTTP 502", "server error", "502 Bad Gateway"], 1),
    ("timeout", lambda rp: rp.fault("retry", delay=1.0), {"RUNPOD_TIMEOUT": "0.3"},
     ["did not answer in time", "/runpod-retry status ep1 job-x"], 1),
    ("reset", lambda rp: rp.fault("retry", reset=True), {},
     ["Could not reach RunPod", "still shows the job as failed", "status ep1 job-x"], 1),
    ("garbage-2xx", lambda rp: rp.fault("retry", garbage=True), {}, ["HTTP 200", "not with JSON", "oops"], 1),
]


@pytest.mark.parametrize(("setup", "env", "phrases", "retry_calls"), [c[1:] for c in FAULT_CASES],
                         ids=[c[0] for c in FAULT_CASES])
async def test_each_runpod_answer_is_explained_in_the_thread_and_the_app_keeps_serving(
        make_app, runpod, slack, setup, env, phrases, retry_calls):
    app = await make_app("http", **env)
    runpod.add_job("ep1", "job-x", status="FAILED")
    setup(runpod)

    ack = await app.command("ep1 job-x")

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    await app.settle()
    assert len(runpod.calls_to("retry")) == retry_calls, runpod.describe()
    parent, replies = first_reply(app)
    result = "\n".join(message_text(reply) for reply in replies)
    for phrase in phrases:
        assert phrase in result, f"{phrase!r} not in:\n{result}"
    assert "job-x" in message_text(parent) and "ep1" in result
    everything = slack_messages_text(slack)
    assert not TAG.search(everything) and "&lt;html" not in everything and "&lt;h1" not in everything
    assert not slack.rejected()
    await assert_still_serving(app, runpod)


async def test_429s_until_the_jobs_retry_window_closes_say_rate_limited_and_the_app_keeps_serving(
        make_app, runpod, slack):
    app = await make_app("http", RUNPOD_MAX_ATTEMPTS="3")
    app.rt.service.retry_window = 2.0 * app.rt.timing.scale  # RunPod keeps a job 30 minutes; two (scaled) seconds
    runpod.add_job("ep1", "job-x", status="FAILED")
    # No Retry-After: the app backs off 0.5 s, 1 s, 2 s... (scaled), so the window closes after the third try.
    runpod.fault("retry", status=429, body="Too Many Requests", times=3)

    ack = await app.command("ep1 job-x")
    await app.settle(timeout=20)

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    assert len(runpod.calls_to("retry")) >= 3, "429s are waited out, not given up on after a few tries"
    _parent, replies = first_reply(app)
    texts = [message_text(r) for r in replies]
    assert "throttling" in texts[0] and "queued" in texts[0]
    # The window has closed: waiting would not help, and the reply says so instead of "wait and try again".
    assert "HTTP 429" in texts[-1] and "rate-limiting" in texts[-1] and "can no longer be retried" in texts[-1]
    assert "Wait" not in texts[-1]
    assert not slack.rejected()
    await assert_still_serving(app, runpod)


async def test_a_refused_retry_of_a_completed_job_says_it_completed(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-done", status="COMPLETED", output={"images": 2})

    await app.command("ep1 job-done")
    await app.settle()

    assert [c.status for c in runpod.calls_to("retry")] == [400]
    assert [c.job for c in runpod.calls_to("status")] == ["job-done"]  # asked why, did not retry again
    _parent, [reply] = first_reply(app)
    text = message_text(reply)
    assert "HTTP 400" in text and "COMPLETED" in text and "nothing to retry" in text
    assert "only a failed or timed-out job can be retried" in text
    assert runpod.job("ep1", "job-done").retries == 0
    await assert_still_serving(app, runpod)


async def test_a_refused_retry_of_a_running_job_says_it_is_running(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-run", status="IN_PROGRESS", after_retry=())

    await app.command("ep1 job-run")
    await app.settle()

    _parent, [reply] = first_reply(app)
    text = message_text(reply)
    assert "HTTP 400" in text and "IN_PROGRESS" in text and "running" in text


# ---------------------------------------------------------------- where the bot cannot post


FALLBACKS = [
    ("not_in_channel", "C9", lambda slack: slack.not_in_channel.add("C9")),
    ("channel_not_found", "C9", lambda slack: slack.missing_channels.add("C9")),
    ("dm", "D123", lambda slack: slack.not_in_channel.add("D123")),
]


@pytest.mark.parametrize(("channel", "block"), [f[1:] for f in FALLBACKS], ids=[f[0] for f in FALLBACKS])
async def test_where_the_bot_cannot_post_everything_goes_to_the_response_url(app, runpod, slack, channel, block):
    block(slack)
    runpod.add_job("ep1", "job-f", status="FAILED")

    ack = await app.command("ep1 job-f", user="U3", channel=channel)

    assert ack.status == 200
    await app.settle()
    assert [c.job for c in runpod.calls_to("retry")] == ["job-f"]
    assert app.posts(channel) == []
    posts = app.responses(ack.response_url)
    assert len(posts) == 3, slack.describe()
    assert all(p.get("response_type") == "in_channel" for p in posts)
    parent, result, final = (message_text(p) for p in posts)
    assert "<@U3>" in parent and "job-f" in parent and "ep1" in parent
    assert "invite me" in parent  # says why the result is not in a thread
    assert "HTTP 200" in result and '"status": "IN_QUEUE"' in result and "was requeued" in result
    assert "completed" in final and "job-f" in final
    assert not slack.rejected()


async def test_status_where_the_bot_cannot_post_goes_to_the_response_url(make_app, runpod, slack):
    app = await make_app("http")
    slack.not_in_channel.add("C9")
    runpod.add_job("ep1", "job-f", status="TIMED_OUT", error=None)

    ack = await app.command("status ep1 job-f", channel="C9")
    await app.settle()

    posts = app.responses(ack.response_url)
    assert [p.get("response_type") for p in posts] == ["in_channel", "in_channel"]
    assert "job-f" in message_text(posts[0])
    assert "HTTP 200" in message_text(posts[1]) and '"status": "TIMED_OUT"' in message_text(posts[1])
    assert runpod.calls_to("retry") == []


# ---------------------------------------------------------------- long JSON


def _code_blocks(msg: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in msg.get("blocks", [])
            if b.get("type") == "section" and b.get("text", {}).get("text", "").startswith("```")]


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def test_json_of_about_8_kb_is_split_across_sections(make_app, runpod, slack):
    app = await make_app("http")
    output = {"text": "a<b>&c;" * 1150, "seed": 42}  # about 8 KB, and escaping makes it longer
    runpod.add_job("ep1", "job-8k", status="COMPLETED", output=output)

    await app.command("status ep1 job-8k")
    await app.settle()

    _parent, [reply] = first_reply(app)
    chunks = _code_blocks(reply)
    assert len(chunks) >= 3
    assert all(len(c) <= 3000 for c in chunks)
    shown = "".join(_unescape(c.strip("`")) for c in chunks)
    [status_call] = runpod.calls_to("status")
    expected = json.dumps(status_call.body, indent=2, ensure_ascii=False)
    assert re.sub(r"\s", "", shown) == re.sub(r"\s", "", expected)
    assert slack.calls_to("files.completeUploadExternal") == []
    assert not slack.rejected()


async def test_json_of_50_kb_is_attached_as_a_file_in_the_thread(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-50k", status="COMPLETED", output={"text": "z" * 50_000})

    await app.command("status ep1 job-50k")
    await app.settle()

    parent, replies = first_reply(app)
    assert "HTTP 200" in message_text(replies[0]) and "attached" in message_text(replies[0])
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.ok, slack.describe()
    assert complete.args["channel_id"] == "C1" and complete.args["thread_ts"] == parent["ts"]
    [file_id] = [f["id"] for f in complete.args["files"]]
    [status_call] = runpod.calls_to("status")
    assert json.loads(slack.uploads[file_id]) == status_call.body
    assert not slack.rejected()


async def test_a_retried_job_that_completes_with_huge_output_is_still_reported(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-huge", status="FAILED", output={"text": "q" * 50_000})

    await app.command("ep1 job-huge")
    await app.settle()

    _parent, replies = first_reply(app)
    assert "completed" in message_text(replies[-1])
    assert not slack.rejected()


# ---------------------------------------------------------------- HTTP mode: only Slack may call


async def test_unsigned_wrongly_signed_and_stale_requests_are_refused(make_app, runpod, slack):
    app = await make_app("http")
    runpod.add_job("ep1", "job-1", status="FAILED")
    body = form_encode(slash_command_body("ep1 job-1", response_url=slack.new_response_url()))
    assert app.http is not None

    async with app.http.post(f"{app.url}/slack/events", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
        unsigned = response.status
    wrong, _, _ = await app.post_signed(body, secret="not-the-signing-secret")
    stale, _, _ = await app.post_signed(body, timestamp=int(time.time()) - 6 * 60)
    tampered_headers = sign(body, SIGNING_SECRET)
    async with app.http.post(f"{app.url}/slack/events", data=body.replace("job-1", "job-2"),
                             headers=tampered_headers) as response:
        tampered = response.status

    assert (unsigned, wrong, stale, tampered) == (401, 401, 401, 401)
    await app.settle()
    assert runpod.calls == []
    assert slack.calls_to("chat.postMessage") == []
    ok, _, _ = await app.post_signed(body)  # the same request, signed properly, works
    assert ok == 200
    await runpod.wait_calls("retry")


# ---------------------------------------------------------------- secrets


async def test_no_secret_reaches_slack_even_when_runpod_echoes_the_key(app, runpod, slack):
    runpod.add_job("ep1", "job-a", status="FAILED")
    runpod.add_job("ep1", "job-b", status="FAILED")
    runpod.add_job("ep1", "job-c", status="FAILED")
    runpod.fault("retry", status=401, body={"error": "Invalid API key rp-test-key",
                                            "key": "rp-test-key", "hint": "Bearer rp-test-key"})
    runpod.fault("retry", status=401, body="invalid key: rp-test-key")
    acks = [await app.command("ep1 job-a"), await app.command("ep1 job-b"), await app.command("ep1 job-c"),
            await app.command("status ep1 job-c"), await app.command("ep1 job!")]
    await app.settle()

    # The two 401s went to whichever two retries reached RunPod first (on a loaded machine not always job-a's and
    # job-b's), and their parents may be posted in either order: read every thread in the channel.
    texts = "".join(app.thread_text("C1", parent["ts"]) for parent in app.top_level("C1"))
    assert texts.count("RUNPOD_API_KEY") == 2
    assert "[redacted]" in texts
    everything = app.everything_sent_to_slack() + json.dumps([a.body for a in acks]) + json.dumps(
        [c.args for c in slack.calls if c.method == "response_url"])
    leaked = [s for s in SECRETS if s in everything]
    assert leaked == []


async def test_huge_json_where_the_bot_cannot_post_still_reaches_the_caller(make_app, runpod, slack):
    app = await make_app("http")
    slack.not_in_channel.add("C9")
    runpod.add_job("ep1", "job-50k", status="COMPLETED", output={"text": "z" * 50_000})

    ack = await app.command("status ep1 job-50k", channel="C9")
    await app.settle()

    parent, result = app.responses(ack.response_url)
    assert "job-50k" in message_text(parent)
    text = message_text(result)
    assert "HTTP 200" in text and '"status": "COMPLETED"' in text and "too long to show here" in text
    assert slack.calls_to("files.getUploadURLExternal") == []
    assert not slack.rejected()


# ---------------------------------------------------------------- the RunPod client's 429 handling, on its own


async def test_429_without_retry_after_backs_off_exponentially_and_retry_after_is_capped(runpod):
    from bot.infra.timing import REAL
    from bot.runpod import RunPodClient, RunPodRateLimited
    from bot.runpod.limits import RunPodLimits

    waits: list[float] = []
    slept = [1000.0]

    async def record(seconds: float) -> None:
        waits.append(seconds)
        slept[0] += seconds

    # The limiter's own pause after a 429 runs on a clock that the recorded waits move forward.
    limits = RunPodLimits(clock=lambda: slept[0])
    client = RunPodClient(runpod.url, "rp-test-key", max_attempts=4, backoff_base=0.5, sleep=record,
                          rate_limits=limits)
    runpod.add_job("ep1", "job-1", status="FAILED")
    try:
        runpod.fault("retry", status=429, times=4)
        with pytest.raises(RunPodRateLimited) as caught:
            await client.retry("ep1", "job-1")
        assert caught.value.status == 429
        assert len(runpod.calls_to("retry")) == 4 and len(waits) == 3
        for wait, base in zip(waits, (0.5, 1.0, 2.0), strict=True):
            assert base <= wait <= base * 1.25

        waits.clear()
        slept[0] += 10  # the pause RunPod asked for after the last 429 has passed
        runpod.fault("retry", status=429, headers={"Retry-After": "3600"})
        runpod.fault("retry", status=429, headers={"Retry-After": "soon"})
        reply = await client.retry("ep1", "job-1")
        assert reply.http_status == 200 and reply.job_status == "IN_QUEUE"
        assert waits[0] == REAL.runpod_max_retry_after and 1.0 <= waits[1] <= 1.25
    finally:
        await client.aclose()


LOST_ANSWERS = [{"reset": True}, {"garbage": True}, {"status": 502, "body": "<html>Bad Gateway</html>"}]


@pytest.mark.parametrize("fault", LOST_ANSWERS, ids=["reset", "garbage", "502"])
async def test_a_lost_answer_to_a_retry_that_went_through_is_settled_by_a_status_check(make_app, runpod, fault):
    """RunPod requeued the job but its answer never arrived intact: the app checks /status, says the retry
    went through, and follows the job instead of inviting a second retry."""
    app = await make_app("http")
    runpod.add_job("ep1", "job-lost", status="FAILED")
    runpod.fault("retry", applied=True, **fault)

    await app.command("ep1 job-lost")
    await app.settle()

    assert len(runpod.calls_to("retry")) == 1
    [parent] = app.top_level("C1")
    thread = app.thread_text("C1", parent["ts"])
    assert "the retry went through" in thread and "is now running" in thread
    assert "The retry worked" in thread and "completed" in thread
    assert runpod.job("ep1", "job-lost").status == "COMPLETED"
