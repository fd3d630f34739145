"""Issue 12, item 1: `/runpod-retry` with no text opens the retry form; bad input is shown next to its field and the
form stays open; a good submission runs exactly as the command, in the channel the form was opened from. Both Slack
modes, over real loopback; every view is validated by the Slack stand-in (slack_sdk's view models)."""

from __future__ import annotations

import json

import pytest

from bot.core import actions
from testkit.fakes import view_problems
from testkit.harness import ACK_DEADLINE, Harness, message_text
from testkit.surfaces_payloads import view_submission

EP = "ep1"


async def open_form(app: Harness, *, channel: str = "C1", user: str = "U1"):  # type: ignore[no-untyped-def]
    """Type `/runpod-retry` with no text; returns (the ack, the form as Slack holds it)."""
    before = len(app.slack.open_views(actions.RETRY_MODAL))
    ack = await app.command("", channel=channel, user=user)
    await app.slack.wait_for(lambda s: len(s.open_views(actions.RETRY_MODAL)) > before)
    return ack, app.slack.open_views(actions.RETRY_MODAL)[-1]


def errors_of(ack) -> dict[str, str]:  # type: ignore[no-untyped-def]
    body = ack.body if isinstance(ack.body, dict) else json.loads(ack.body or "{}")
    assert body.get("response_action") == "errors", body
    return body["errors"]


def field(view, block_id: str) -> dict:  # type: ignore[no-untyped-def]
    [block] = [b for b in view["blocks"] if b.get("block_id") == block_id]
    return block["element"]


async def test_empty_command_opens_the_form_at_once_without_touching_runpod_or_posting(app, runpod, slack):
    ack, view = await open_form(app)

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    assert not ack.body or ack.body == {}, "the ack itself says nothing: the form is the answer"
    [call] = slack.calls_to("views.open")
    assert call.ok and call.args["trigger_id"] == "T.1"
    assert view_problems(call.args["view"]) == []
    assert view["title"]["text"] == "Retry RunPod jobs" and view["submit"]["text"] == "Retry"
    assert field(view, actions.ENDPOINT_BLOCK)["type"] == "plain_text_input"  # no RUNPOD_RETRY_ENDPOINTS: typed
    assert field(view, actions.JOBS_BLOCK)["multiline"] is True
    assert "<#C1>" in message_text(view)
    assert json.loads(view["private_metadata"])["c"] == "C1"
    assert runpod.calls == [] and not slack.calls_to("chat.postMessage")


async def test_with_an_endpoint_list_the_form_offers_a_select_of_those_endpoints(make_app, slack):
    app = await make_app("http", RUNPOD_RETRY_ENDPOINTS="ep1,ep2")

    _, view = await open_form(app)

    select = field(view, actions.ENDPOINT_BLOCK)
    assert select["type"] == "static_select"
    assert [o["value"] for o in select["options"]] == ["ep1", "ep2"]
    assert not slack.rejected()


async def test_help_still_prints_usage_and_opens_nothing(app, slack):
    ack = await app.command("help")

    assert "/runpod-retry <endpointId> <jobId>" in message_text(ack.body)
    assert "/runpod-retry health <endpointId>" in message_text(ack.body)
    assert not slack.calls_to("views.open")


BAD_FORMS = [
    ({actions.ENDPOINT_BLOCK: None, actions.JOBS_BLOCK: "job-1"}, actions.ENDPOINT_BLOCK, "endpoint"),
    ({actions.ENDPOINT_BLOCK: "ep 1", actions.JOBS_BLOCK: "job-1"}, actions.ENDPOINT_BLOCK, "a space"),
    ({actions.ENDPOINT_BLOCK: EP, actions.JOBS_BLOCK: None}, actions.JOBS_BLOCK, "at least one job"),
    ({actions.ENDPOINT_BLOCK: EP, actions.JOBS_BLOCK: "job-1\njob!2"}, actions.JOBS_BLOCK, "“job!2”: it contains '!'"),
    ({actions.ENDPOINT_BLOCK: EP, actions.JOBS_BLOCK: "https://api.runpod.ai/v2/ep2/status/job-1"},
     actions.JOBS_BLOCK, "one endpoint"),
    ({actions.ENDPOINT_BLOCK: EP, actions.JOBS_BLOCK: "j" * 129}, actions.JOBS_BLOCK, "129 characters"),
]


@pytest.mark.parametrize(("typed", "block", "says"), BAD_FORMS, ids=[b[2] for b in BAD_FORMS])
async def test_bad_input_is_shown_next_to_its_field_the_form_stays_open_and_nothing_runs(app, runpod, slack, typed,
                                                                                      block, says):
    runpod.add_job(EP, "job-1")
    _, view = await open_form(app)

    ack = await app.interact(view_submission(view, **typed))
    await app.settle()

    errors = errors_of(ack)
    assert list(errors) == [block] and says in errors[block], errors
    assert runpod.calls == [], runpod.describe()
    assert not slack.calls_to("chat.postMessage") and not slack.all_responses()


async def test_an_endpoint_outside_the_list_is_refused_next_to_the_select(make_app, runpod, slack):
    app = await make_app("socket", RUNPOD_RETRY_ENDPOINTS="ep1")
    runpod.add_job("ep9", "job-1")
    _, view = await open_form(app)

    ack = await app.interact(view_submission(view, endpoint="ep9", jobs="job-1"))
    await app.settle()

    assert "not set up to call endpoint “ep9”" in errors_of(ack)[actions.ENDPOINT_BLOCK]
    assert runpod.calls == []


async def test_a_form_submitted_with_metadata_the_app_did_not_write_is_refused(app, runpod):
    _, view = await open_form(app)

    ack = await app.interact(view_submission({**view, "private_metadata": "{}"}, endpoint=EP, jobs="job-1"))

    assert "open it again" in errors_of(ack)[actions.JOBS_BLOCK]
    assert runpod.calls == []


async def test_one_job_runs_as_the_command_in_the_channel_the_form_was_opened_from(app, runpod, slack):
    runpod.add_job(EP, "job-1")
    _, view = await open_form(app, channel="C7", user="U5")

    ack = await app.interact(view_submission(view, user_id="U5", endpoint=EP, jobs="  job-1  \n"))
    await app.settle()

    assert ack.status == 200 and not ack.body
    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, "job-1")]
    [parent] = app.top_level("C7")
    assert "<@U5>" in message_text(parent) and "job-1" in message_text(parent)
    replies = app.thread_text("C7", parent["ts"])
    assert "was requeued" in replies and '"status": "IN_QUEUE"' in replies and "completed" in replies
    [row] = await app.rt.store.history(5)
    assert (row["user"], row["channel"], row["source"], row["outcome"]) == ("U5", "C7", "modal", "requeued")
    assert not slack.rejected()


async def test_several_jobs_in_the_commands_forms_run_as_one_bulk_retry(app, runpod, slack):
    for n in range(1, 4):
        runpod.add_job(EP, f"job-{n}")
    _, view = await open_form(app)

    await app.interact(view_submission(view, endpoint=EP, jobs="job-1, job-2\nep1/job-3 job-1"))
    await app.settle()

    assert sorted(c.job for c in runpod.calls_to("retry")) == ["job-1", "job-2", "job-3"]
    [parent] = app.top_level("C1")
    assert "3 jobs" in message_text(parent) and "<@U1>" in message_text(parent)
    assert "Results for 3 jobs" in app.thread_text("C1", parent["ts"])
    assert not slack.rejected()


async def test_the_same_access_rules_apply_and_the_refusal_is_private(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_USERS="U9")
    runpod.add_job(EP, "job-1")
    ack, view = await open_form(app, user="U1")
    # Issue 18: refused as the form opens, before anything is typed (tests/app/test_form_refuses_at_once.py).
    assert "not on the list" in message_text(view) and not view.get("submit")
    # A form opened before the rules changed is still refused when submitted.
    from bot.core import messages
    from bot.core.forms import Origin
    stale = messages.retry_form(Origin("C1", "command", response_url=ack.response_url), [])

    await app.interact(view_submission(stale, user_id="U1", endpoint=EP, jobs="job-1"))
    await app.settle()

    assert runpod.calls == []
    [told] = app.responses(ack.response_url)
    assert "not on the list" in message_text(told) and "<@U9>" in message_text(told)
    assert not slack.calls_to("chat.postMessage")
    [row] = await app.rt.store.history(5)
    assert (row["outcome"], row["source"]) == ("refused:access", "modal")


async def test_a_trigger_slack_says_expired_is_told_privately_with_what_to_type(app, slack):
    slack.expired_triggers.add("T.1")

    ack = await app.command("")
    await app.settle()

    [told] = app.responses(ack.response_url)
    assert "expired_trigger_id" in message_text(told) and "/runpod-retry <endpointId> <jobId>" in message_text(told)
    assert not slack.open_views()


def test_the_form_stays_valid_with_a_thousand_long_job_ids_and_says_what_did_not_fit():
    from bot.core import messages
    from bot.core.forms import Origin

    jobs = [f"{'j' * 120}{n:04}" for n in range(1000)]
    view = messages.retry_form(Origin("C1", "shortcut", "1.2", "https://hooks.slack.com/x" * 100),
                               [f"ep{n}" for n in range(150)], endpoint="ep1", jobs=jobs, found="x" * 5000)

    assert view_problems(view) == []
    assert len(field(view, actions.JOBS_BLOCK)["initial_value"]) <= 3000
    assert "did not fit in the field" in message_text(view)
    assert field(view, actions.ENDPOINT_BLOCK)["type"] == "plain_text_input"  # over 100 endpoints: typed
    assert len(view["private_metadata"]) <= 3000
