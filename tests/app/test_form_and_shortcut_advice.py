"""Issue 18, the shortcut and the form over the stand-ins: refused at once (as the form opens, before anything is
typed, nothing asked of RunPod), advice for a second endpoint that works when followed (the command it gives, pasted,
retries those jobs), and one error line per problem however many IDs have it."""

from __future__ import annotations

import json

from bot.core import actions
from testkit.harness import ACK_DEADLINE, Harness, message_text
from testkit.surfaces_payloads import message_action, view_submission

EP, EP2 = "abc123xyz4567", "def456uvw"
JOB = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"
JOB2 = "7b1e2f3a-0000-4c4c-8d8d-123456789abc"
JOB3 = "sync-11111111-2222-4333-8444-555555555555-e1"
MSG_TS = "1699999999.000100"


async def opened(app: Harness, before: int) -> dict:
    await app.slack.wait_for(lambda s: len(s.open_views(actions.RETRY_MODAL)) > before)
    return app.slack.open_views(actions.RETRY_MODAL)[-1]


async def test_the_form_refuses_at_once_someone_who_may_not_retry(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_USERS="U9")
    before = len(slack.open_views(actions.RETRY_MODAL))

    ack = await app.command("", user="U1", channel="C1")
    view = await opened(app, before)

    assert ack.status == 200 and ack.latency < ACK_DEADLINE
    assert "You are not on the list of people who may retry RunPod jobs. Ask one of: <@U9>." in message_text(view)
    assert not view.get("submit"), "nothing to fill in, nothing to submit"
    assert not [b for b in view["blocks"] if b.get("type") == "input"]
    assert runpod.calls == []


async def test_the_shortcut_refuses_at_once_in_a_channel_where_retries_are_off(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_CHANNELS="COPS")
    before = len(slack.open_views(actions.RETRY_MODAL))

    await app.interact(message_action({"ts": MSG_TS, "text": f"{EP}/{JOB} failed"}, callback_id=actions.SHORTCUT,
                                      channel_id="C1", user_id="U1", response_url=slack.new_response_url()))
    view = await opened(app, before)

    assert "Retries are not enabled in this channel. Use one of: <#COPS>." in message_text(view)
    assert not view.get("submit") and runpod.calls == []


async def test_jobs_on_a_second_endpoint_come_with_a_command_that_retries_them_when_pasted(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.05")
    for endpoint, job in ((EP, JOB), (EP, JOB2), (EP2, JOB3), (EP2, "job-10")):
        runpod.add_job(endpoint, job)
    before = len(slack.open_views(actions.RETRY_MODAL))
    message = {"ts": MSG_TS, "text": f"{EP}/{JOB} {EP}/{JOB2} {EP2}/{JOB3} and endpoint {EP2} job: job-10"}

    await app.interact(message_action(message, callback_id=actions.SHORTCUT, channel_id="C1", user_id="U1",
                                      response_url=slack.new_response_url()))
    view = await opened(app, before)
    found = message_text(view)

    assert "Found 2 jobs on endpoint `abc123xyz4567`" in found
    assert "shortcut again" not in found
    [command] = [line for line in found.splitlines() if line.startswith("• `/runpod-retry ")]
    pasted = command.removeprefix("• `").removesuffix("`").removeprefix("/runpod-retry ")
    assert pasted == f"{EP2} {JOB3} job-10"

    await app.command(pasted, user="U1", channel="C1")  # what the person does with the advice
    await app.settle()

    assert sorted((c.endpoint, c.job) for c in runpod.calls_to("retry")) == sorted([(EP2, JOB3), (EP2, "job-10")])


async def test_ten_ids_with_one_problem_are_one_line_under_the_field(make_app, runpod, slack):
    app = await make_app("http")
    before = len(slack.open_views(actions.RETRY_MODAL))
    await app.command("", user="U1", channel="C1")
    view = await opened(app, before)

    ack = await app.interact(view_submission(view, endpoint=EP, jobs=" ".join(f"job!{n}" for n in range(10))))

    body = ack.body if isinstance(ack.body, dict) else json.loads(ack.body or "{}")
    error = body["errors"][actions.JOBS_BLOCK]
    assert error.count("it contains '!'") + error.count("they contain '!'") == 1, error
    assert "10 job IDs (“job!0”, “job!1”, “job!2” and 7 more): they contain '!'" in error
    assert runpod.calls == []
