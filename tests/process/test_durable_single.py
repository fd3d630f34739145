"""One job's retry acknowledged and then lost with its process: `/runpod-retry <endpoint> <job>`, an alert's Retry and
the message shortcut with one job are written down before Slack is told they were taken, so a kill -9 between the
acknowledgement and the retry reaching RunPod does not lose them: the next start carries them out, once, and the
answer goes where the person was looking.

The window after the ack is held open by Slack being slow to say who is in the user group allowed to retry (the access
check comes first); the app is killed there, before anything reached RunPod."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core import actions
from testkit.fakes.limits import SlackLimits
from testkit.fakes.slack import SlackFault
from testkit.harness import button_value, message_text
from testkit.polling import wait_until
from testkit.replicas import Replicas
from tests.process.test_durable import PICKED, SHORTCUT_EP, in_the_thread, outside_the_thread, submit_shortcut

ALERTS = "CALERTS"
ALLOWED = {"RUNPOD_RETRY_ALLOWED_USERGROUPS": "S1"}


def slow_access_check(slack: Any) -> None:
    """Who may retry is asked of Slack when the request is carried out, after the ack: Slack takes its time."""
    slack.script("usergroups.users.list", SlackFault(delay=30.0))


async def cut_off_after_the_ack(app: Replicas, slack: Any, runpod: Any) -> None:
    await wait_until(lambda: slack.calls_to("usergroups.users.list"), 10, "the request being carried out")
    await app.kill(0)
    assert not runpod.calls_to("retry"), "cut off before the retry reached RunPod"
    await app.start(0)


async def test_a_command_retry_acknowledged_then_cut_off_by_kill_9_before_it_reached_runpod_is_run_by_the_next_start(
        slack, runpod, tmp_path):
    """`/runpod-retry ep1 job-c1` was answered 200 (Slack shows it as taken), then the process died before the retry
    reached RunPod. The next start retries the job once and reports it as a command's retry is reported: one message
    in the channel naming the job, RunPod's answer in its thread."""
    slack.limits = SlackLimits.off()
    slack.usergroups["S1"] = ["U1"]
    runpod.add_job("ep1", "job-c1", status="FAILED")
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, **ALLOWED) as app:
        slow_access_check(slack)
        ack = await app.command("ep1 job-c1", user="U1")
        assert ack.status == 200 and not ack.body, "taken without a word: the retry is on its way"
        await cut_off_after_the_ack(app, slack, runpod)

        def parents() -> list[dict[str, Any]]:
            return [m for (c, _), m in slack.messages.items()
                    if c == "C1" and not m.get("thread_ts") and "job-c1" in message_text(m)]

        def answer() -> list[str]:
            return [message_text(m) for p in parents() for (c, _), m in slack.messages.items()
                    if c == "C1" and m.get("thread_ts") == p["ts"] and "was requeued" in message_text(m)]

        await wait_until(lambda: runpod.requeued("ep1") and answer(), 30,
                         lambda: f"the retry carried out after the restart: {runpod.describe()}\n{app.logs()}")
        await asyncio.sleep(2.0)  # a second retry or message would be out by now
    assert runpod.requeued("ep1") == {("ep1", "job-c1"): 1}, "retried once"
    [parent] = parents()
    assert "<@U1>" in message_text(parent), "the message says who asked"
    assert len(answer()) == 1, "RunPod's answer once, in the command's thread"


async def test_an_alert_retry_clicked_then_cut_off_by_kill_9_before_it_reached_runpod_is_run_by_the_next_start(
        slack, runpod, tmp_path):
    """An alert's Retry was clicked and answered 200, then the process died before the retry reached RunPod. The next
    start retries the job once: the alert says who retried it, and RunPod's answer is in the alert's thread."""
    slack.limits = SlackLimits.off()
    slack.usergroups["S1"] = ["U1"]
    runpod.add_job("ep1", "job-b1", status="FAILED")
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, **ALLOWED) as app:
        assert await app.webhook("ep1", {"id": "job-b1", "status": "FAILED", "error": "CUDA out of memory"}) == 200

        def alert() -> dict[str, Any] | None:
            return next((m for (c, _), m in slack.messages.items() if c == ALERTS and not m.get("thread_ts")), None)

        await wait_until(alert, 15, "the alert")
        await asyncio.sleep(1.0)  # its paced redraws have landed
        posted = alert()
        assert posted is not None
        slow_access_check(slack)
        ack = await app.click(actions.RETRY, button_value(posted, actions.RETRY), message_ts=posted["ts"])
        assert ack.status == 200
        await cut_off_after_the_ack(app, slack, runpod)

        def answer() -> list[str]:
            return [message_text(m) for (c, _), m in slack.messages.items()
                    if c == ALERTS and m.get("thread_ts") == posted["ts"] and "was requeued" in message_text(m)]

        await wait_until(lambda: runpod.requeued("ep1") and answer(), 30,
                         lambda: f"the click carried out after the restart: {runpod.describe()}\n{app.logs()}")
        await asyncio.sleep(2.0)  # a second retry or reply would be out by now
        shown = message_text(slack.messages[(ALERTS, posted["ts"])])
    assert runpod.requeued("ep1") == {("ep1", "job-b1"): 1}, "retried once"
    assert len(answer()) == 1, "RunPod's answer once, in the alert's thread"
    assert "<@U1>" in shown, f"the alert says who retried it: {shown}"


async def test_a_shortcut_retry_of_one_job_cut_off_by_kill_9_before_it_reached_runpod_is_run_in_its_thread(
        slack, runpod, tmp_path):
    """The message shortcut's form was submitted with one job and closed (taken), then the process died before the
    retry reached RunPod. The next start retries it once, with its request and RunPod's answer in the picked message's
    thread and nothing outside it."""
    slack.limits = SlackLimits.off()
    slack.usergroups["S1"] = ["U4"]
    job = "0badf00d-08a1-426e-9cb9-9eaec90f5e2b-u1"
    runpod.add_job(SHORTCUT_EP, job, status="FAILED")
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, **ALLOWED) as app:
        # The form's own access check stops waiting for Slack after a second and the form opens; the submission then
        # waits for the same answer.
        slow_access_check(slack)
        await submit_shortcut(app, slack, [job])
        await cut_off_after_the_ack(app, slack, runpod)

        def answer() -> list[str]:
            return [t for t in in_the_thread(slack) if "was requeued" in t]

        await wait_until(lambda: runpod.requeued(SHORTCUT_EP) and answer(), 30,
                         lambda: f"the retry carried out after the restart in the thread: {in_the_thread(slack)}\n"
                                 + app.logs())
        await asyncio.sleep(2.0)  # a second retry or reply would be out by now
    assert runpod.requeued(SHORTCUT_EP) == {(SHORTCUT_EP, job): 1}, "retried once"
    assert len(answer()) == 1, "RunPod's answer once, in the picked message's thread"
    assert sum("<@U4>" in t for t in in_the_thread(slack)) >= 1, "the thread says who asked"
    assert outside_the_thread(slack) == [], "nothing posted outside the message's thread"
    assert PICKED not in {m.get("ts") for m in slack.messages.values()}, "the picked message is not the app's"


async def test_a_command_retry_cut_off_by_kill_9_after_it_reached_runpod_is_settled_not_sent_again(
        slack, runpod, tmp_path):
    """The retry had reached RunPod (slow to answer) when the process died. The next start does not carry the request
    out again: the retry's own record is settled with /status and reported in the command's thread (its message was
still on its way when the retry was written down), RunPod saw one /retry, and
    the person is not told the job was already being retried (by themselves)."""
    slack.limits = SlackLimits.off()
    runpod.add_job("ep1", "job-s1", status="FAILED")
    runpod.fault("retry", delay=3.0)  # RunPod takes the retry, and answers late
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1) as app:
        ack = await app.command("ep1 job-s1", user="U1")
        assert ack.status == 200
        await wait_until(lambda: runpod.calls_to("retry"), 10, "the retry on its way to RunPod")
        # The command's message is in Slack and written down as sent: a kill while Slack takes a post may post it
        # twice (README), which is not what this test is about.
        await wait_until(lambda: any("asked to retry job" in message_text(m) for m in slack.messages.values()), 10,
                         "the command's message")
        await asyncio.sleep(0.5)
        await app.kill(0)
        await asyncio.sleep(3.0)  # RunPod answers what it received: the retry took effect
        await app.start(0)

        def said() -> list[str]:
            return [message_text(m) for (c, _), m in slack.messages.items() if c == "C1"]

        await wait_until(lambda: any("After the restart" in t and "went through" in t for t in said()), 30,
                         lambda: f"the retry settled after the restart: {slack.describe()}")
        await asyncio.sleep(2.0)  # a second retry or message would be out by now
    assert len(runpod.calls_to("retry")) == 1, "one /retry: the request was not carried out twice"
    assert sum("asked to retry job" in t for t in said()) == 1, "one message about the request"
    [parent] = [m for (c, _), m in slack.messages.items() if c == "C1" and "asked to retry job" in message_text(m)]
    [settled] = [m for (c, _), m in slack.messages.items() if c == "C1" and "After the restart" in message_text(m)]
    assert not parent.get("thread_ts") and settled.get("thread_ts") == parent["ts"], "the answer in its thread"
    told = [message_text(c.args) for c in slack.calls if c.method in ("response_url", "chat.postEphemeral")]
    assert not any("already" in t for t in told), f"the person was told of a duplicate: {told}"
