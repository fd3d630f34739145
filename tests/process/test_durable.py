"""What the app remembers across a restart on the same database, and a clean stop on SIGTERM.

In-process restarts use Harness.restart() (a new App on the same SQLite file); the SIGTERM test runs a real
`python -m bot` process against the loopback stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import aiohttp

from bot.core import actions
from bot.store import AuditEntry
from testkit.env import SIGNING_SECRET, WEBHOOK_SECRET
from testkit.fakes.slack import block_actions_payload, form_encode, interaction_form_body, sign, slash_command_body
from testkit.harness import alert_completed, button_value, message_text
from testkit.process import AppProcess


def history_lines(app: Any, url: str) -> list[str]:
    """One text per attempt `history` showed: its two cells (when, who, where | what happened, to which job)."""
    [reply] = app.responses(url)
    assert reply.get("response_type") == "ephemeral"
    cells = [f["text"] for block in reply["blocks"] for f in block.get("fields") or []]
    return [cells[n] + "\n" + cells[n + 1] for n in range(0, len(cells), 2)]


# ---------------------------------------------------------------- restart on the same database


async def test_audit_trail_and_budget_survive_a_restart(make_app, runpod):
    runpod.add_job("ep1", "job-1", status="FAILED", after_retry=("FAILED",))
    app = await make_app(RUNPOD_RETRY_MAX_PER_JOB="2")
    await app.command("ep1 job-1", user="U1", channel="C1")
    await app.settle()
    await app.command("ep1 job-1", user="U2", channel="C1")
    await app.settle()

    await app.restart()
    ack = await app.command("history", user="U3", channel="C2")
    refused = await app.command("ep1 job-1", user="U3", channel="C1")
    await app.settle()

    lines = history_lines(app, ack.response_url)
    assert len(lines) == 2, lines
    assert "<@U2>" in lines[0] and "requeued" in lines[0] and "`ep1` · `job-1`" in lines[0]
    assert "<@U1>" in lines[1] and "requeued" in lines[1] and "<#C1>" in lines[1]
    assert len(runpod.calls_to("retry")) == 2  # the budget counted the retries made before the restart
    [told] = app.responses(refused.response_url)
    assert "already retried 2 times in the last hour" in message_text(told)


async def test_webhook_redelivered_after_a_restart_posts_no_second_alert(make_app, runpod, slack):
    app = await make_app()
    body = {"id": "job-1", "status": "FAILED", "error": "CUDA out of memory"}
    assert (await app.webhook("ep1", body))[0] == 200
    await app.settle()
    assert len(app.top_level("CALERTS")) == 1

    await app.restart()
    status, answer = await app.webhook("ep1", body)
    await app.settle()

    assert status == 200 and answer.get("result") == "accepted"
    assert len(app.top_level("CALERTS")) == 1, slack.describe()
    assert slack.calls_to("chat.postMessage")[1:] == []


async def test_click_on_an_alert_posted_before_the_restart_updates_that_message(make_app, runpod, slack):
    runpod.add_job("ep1", "job-1", status="FAILED")
    app = await make_app()
    await app.webhook("ep1", {"id": "job-1", "status": "FAILED", "error": "CUDA out of memory"})
    await app.settle()
    [alert] = app.top_level("CALERTS")

    await app.restart()
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U4")
    await app.settle()

    assert [c.job for c in runpod.calls_to("retry")] == ["job-1"]
    [same] = app.top_level("CALERTS")  # no second alert, no new top-level message
    assert same["ts"] == alert["ts"]
    assert "<@U4>" in message_text(same) and alert_completed(same)
    assert {c.args.get("ts") for c in slack.calls_to("chat.update")} == {alert["ts"]}
    thread = app.thread_text("CALERTS", alert["ts"])
    assert "HTTP 200" in thread and "completed" in thread


async def test_a_job_followed_when_the_app_stopped_is_followed_again_and_its_outcome_posted(make_app, runpod, slack):
    job = runpod.add_job("ep1", "job-1", status="FAILED", after_retry=("IN_PROGRESS",))
    app = await make_app()
    await app.command("ep1 job-1", user="U1", channel="C1")
    await runpod.wait_for(lambda f: len(f.calls_to("status")) >= 2)  # being followed, still running
    [parent] = app.top_level("C1")

    await app.restart()
    await slack.wait_for(lambda _: "again" in app.thread_text("C1", parent["ts"]))
    text = app.thread_text("C1", parent["ts"])
    assert "restarted" in text and "following job `job-1`" in text and "again" in text
    assert "completed" not in text

    job.status = "COMPLETED"
    await slack.wait_for(lambda _: "completed" in app.thread_text("C1", parent["ts"]))
    await app.settle()
    replies = [message_text(m) for m in app.thread("C1", parent["ts"])]
    assert sum("again" in r for r in replies) == 1
    assert "The retry worked" in replies[-1] and "job-1" in replies[-1]
    assert [c.job for c in runpod.calls_to("retry")] == ["job-1"]  # following never retries again


# ---------------------------------------------------------------- SIGTERM on a real process


async def signed_command(http: aiohttp.ClientSession, port: int, slack: Any, text: str,
                         user: str = "U1") -> tuple[int, str]:
    fields = slash_command_body(text, user_id=user, channel_id="C1", response_url=slack.new_response_url())
    body = form_encode(fields)
    async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                         headers=sign(body, SIGNING_SECRET)) as response:
        return response.status, await response.text()


async def test_sigterm_finishes_the_retry_in_flight_hands_over_the_follow_and_exits(make_app, runpod, slack,
                                                                                      tmp_path):
    runpod.add_job("ep1", "job-1", status="FAILED")
    runpod.add_job("ep1", "job-2", status="FAILED")
    async with AppProcess(slack, runpod, tmp_path, RUNPOD_ALERT_CHANNEL="CALERTS",
                          RUNPOD_FOLLOW_INTERVAL="0.05") as proc, aiohttp.ClientSession() as http:
        port, log = proc.port, proc.log
        runpod.latency = 1.0
        status, _ = await signed_command(http, port, slack, "ep1 job-1")
        assert status == 200
        await runpod.wait_calls("retry")  # RunPod has the request and answers in about a second
        proc.signal(signal.SIGTERM)
        stopped_at = time.monotonic()

        await slack.wait_for(lambda _: any("stopping" in line for line in log), timeout=5)
        status, late = await signed_command(http, port, slack, "ep1 job-2", user="U2")
        failure = {"id": "job-3", "status": "FAILED", "error": "worker lost"}
        async with http.post(f"http://127.0.0.1:{port}/runpod/webhook/ep1?token={WEBHOOK_SECRET}",
                             json=failure) as response:
            webhook_status = response.status
        code = await proc.wait(timeout=10)
        took = time.monotonic() - stopped_at

    text = "".join(log)
    assert code == 0, text
    assert took < 10
    assert "Traceback" not in text and " ERROR " not in text, text
    assert status == 200 and "restarting" in late
    assert webhook_status == 503  # not taken on while stopping: RunPod delivers it again
    assert [ts for (channel, ts) in slack.messages if channel == "CALERTS"] == []
    assert [c.job for c in runpod.calls_to("retry")] == ["job-1"]  # nothing done for the late command
    [parent] = [m for m in slack.messages.values() if not m.get("thread_ts")]
    replies = [message_text(m) for m in slack.messages.values() if m.get("thread_ts") == parent["ts"]]
    assert len(replies) == 1 and "HTTP 200" in replies[0] and "IN_QUEUE" in replies[0], replies

    # The job it was about to follow is picked up by the next start on the same database.
    runpod.latency = 0.0
    app = await make_app()
    await slack.wait_for(lambda _: "completed" in app.thread_text("C1", parent["ts"]))
    thread = app.thread_text("C1", parent["ts"])
    assert "following job `job-1` on endpoint `ep1` again" in thread
    assert (await app.webhook("ep1", failure))[0] == 200  # RunPod's redelivery reaches the new instance
    await app.settle()
    assert any("job-3" in message_text(m) for m in app.top_level("CALERTS"))


async def test_a_restart_forgets_week_old_alerts_but_keeps_the_audit_trail(make_app, runpod, slack):
    app = await make_app()
    runpod.add_job("ep1", "job-old", status="FAILED")
    await app.webhook("ep1", {"id": "job-old", "status": "FAILED", "error": "boom"})
    await app.settle()
    long_ago = time.time() - 8 * 24 * 3600
    await app.rt.store.db.execute("UPDATE alerts SET updated = ?", (long_ago,))
    await app.rt.store.db.execute("UPDATE failures SET seen_at = ?", (long_ago,))
    await app.rt.store.db.commit()
    await app.rt.store.audit(AuditEntry("U1", "C1", "ep1", "job-old", "command", "requeued", True, 200,
                                        at=long_ago))

    await app.restart()

    assert await app.rt.store.load_alert("ep1", "job-old") is None
    assert await app.rt.store.recent_failures("ep1", 0) == []
    assert [r["job"] for r in await app.rt.store.history(10)] == ["job-old"]


async def test_a_bulk_retry_cut_off_by_kill_9_is_finished_by_the_next_start_each_job_once(slack, runpod, tmp_path):
    from testkit.fakes.limits import SlackLimits
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    jobs = [f"job-k{n:02d}" for n in range(16)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")
    runpod.fault("retry", delay=0.5, times=len(jobs))  # slow enough to be cut off half way
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, RUNPOD_BULK_CONCURRENCY="4") as app:
        assert (await app.command(f"ep1 {' '.join(jobs)}", user="U1")).status == 200
        await wait_until(lambda: len(runpod.calls_to("retry")) >= 6, 20, "the first retries")
        await app.kill(0)
        # RunPod answers what it received, whoever is left to hear it: the retries in flight take effect.
        await asyncio.sleep(1.0)
        await app.start(0)

        def parent() -> str:
            return "\n".join(message_text(m) for (c, _), m in slack.messages.items()
                             if c == "C1" and not m.get("thread_ts") and "16 jobs" in message_text(m))

        await wait_until(lambda: "16 completed" in parent(), 60,
                         lambda: f"the run finished after the restart; the parent shows: {parent()}\n"
                                 f"{runpod.describe()}\n{app.logs()}")
    assert set(runpod.requeued("ep1")) == {("ep1", job) for job in jobs}, "every job retried"
    assert set(runpod.requeued("ep1").values()) == {1}, "none twice"
    assert sum("Results for 16 jobs" in message_text(m) for m in slack.messages.values()) == 1


ALERTS = "CALERTS"
FAILED_BODY = {"status": "FAILED", "error": "CUDA out of memory", "delayTime": 567, "executionTime": 1234}


async def test_a_sigterm_during_a_slow_retry_does_not_leave_the_alert_retrying_after_the_next_start(
        make_app, slack, runpod, tmp_path):
    job = runpod.add_job("ep1", "job-s", status="FAILED", after_retry=("IN_PROGRESS",))
    # RUNPOD_TIMEOUT: the default 10 s
    async with AppProcess(slack, runpod, tmp_path, RUNPOD_ALERT_CHANNEL=ALERTS) as proc, \
            aiohttp.ClientSession() as http:
        base, log = proc.base, proc.log
        async with http.post(f"{base}/runpod/webhook/ep1?token={WEBHOOK_SECRET}",
                             json={"id": "job-s", **FAILED_BODY}) as r:
            assert r.status == 200
        await slack.wait_for(lambda s: [m for (c, _), m in s.messages.items() if c == ALERTS])
        [(_, ts)] = [k for k in slack.messages if k[0] == ALERTS]
        alert = slack.messages[(ALERTS, ts)]

        runpod.fault("retry", delay=9.0)   # RunPod answers in 9 s: inside the app's own 10 s timeout
        payload = block_actions_payload(actions.RETRY, button_value(alert, actions.RETRY), user_id="U1",
                                        channel_id=ALERTS, message_ts=ts, thread_ts=None,
                                        response_url=slack.new_response_url())
        body = interaction_form_body(payload)
        headers = sign(body, SIGNING_SECRET)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with http.post(f"{base}/slack/events", data=body, headers=headers) as r:
            assert r.status == 200
        await runpod.wait_calls("retry")
        proc.signal(signal.SIGTERM)            # a deploy
        t0 = time.monotonic()
        code = await proc.wait(timeout=15)
        print(f"\n[R4] exit code {code} after {time.monotonic() - t0:.1f} s")
    await asyncio.sleep(1.5)   # RunPod finishes the request the app gave up on
    print("[R4] log:", "".join(line for line in log if "WARNING" in line or "ERROR" in line).strip()[:400])
    print("[R4] RunPod's view of the job:", job.status, "| retries:", job.retries)
    print("[R4] alert in Slack:", message_text(slack.messages[(ALERTS, ts)])[:150].replace("\n", " "))

    # The next start, same database.
    app = await make_app("http", RUNPOD_RETRY_DB=str(tmp_path / "runpod-retry.db"))
    await asyncio.sleep(0.5)
    stored = json.loads(await app.rt.store.load_alert("ep1", "job-s"))
    print("[R4] after restart: stored phase", stored["phase"], "| follows stored:", len(await app.rt.store.follows()))
    job.status, job.error = "FAILED", "worker lost"   # the requeued job later fails again; RunPod says so
    code2, answer = await app.webhook("ep1", {"id": "job-s", "status": "FAILED", "error": "worker lost"})
    await app.settle()
    app.rt.desk.clock = lambda: time.time() + 3600  # an hour later: the expiry sweep
    await app.rt.desk.sweep_expired()
    shown = message_text(slack.messages[(ALERTS, ts)])
    print("[R4] new failure webhook:", code2, answer, "| alert still:", shown[:120].replace("\n", " "))
    print("[R4] thread replies:", len(app.thread(ALERTS, ts)))
    assert "Retrying" not in shown, "alert stuck in 'Retrying' forever after a SIGTERM"



async def test_a_bulk_retry_acknowledged_then_cut_off_by_kill_9_before_any_retry_is_run_by_the_next_start(
        slack, runpod, tmp_path):
    """The command was answered 200 (Slack shows it as taken), then the replica died while the run's parent message
    was still on its way to Slack: nothing had reached RunPod yet. The next start runs the whole request: one
    parent, every job retried once, one summary."""
    from testkit.fakes.limits import SlackLimits
    from testkit.fakes.slack import SlackFault
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    jobs = [f"job-a{n:02d}" for n in range(6)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")
    slack.script("chat.postMessage", SlackFault(delay=30.0))  # the parent: Slack is slow to take it
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1) as app:
        assert (await app.command(f"ep1 {' '.join(jobs)}", user="U1")).status == 200
        await wait_until(lambda: slack.calls_to("chat.postMessage"), 10, "the parent on its way to Slack")
        await app.kill(0)
        assert not runpod.calls_to("retry"), "cut off before any retry"
        await app.start(0)

        def parents() -> list[str]:
            return [message_text(m) for (c, _), m in slack.messages.items()
                    if c == "C1" and not m.get("thread_ts") and "6 jobs" in message_text(m)]

        await wait_until(lambda: any("6 completed" in p for p in parents()), 30, "the run finished after the restart")
    assert set(runpod.requeued("ep1")) == {("ep1", job) for job in jobs}, "every job retried"
    assert set(runpod.requeued("ep1").values()) == {1}, "none twice"
    assert len(parents()) == 1, "one parent message"
    assert sum("Results for 6 jobs" in message_text(m) for m in slack.messages.values()) == 1, "one summary"


async def test_a_cut_off_bulk_retry_whose_settling_outlasts_the_wait_still_reports_every_job_as_runpod_answered(
        slack, runpod, tmp_path):
    """After the restart RunPod is slow on /status: settling the retries the dead process had sent takes longer
    than the run waits before its summary (RUNPOD_BULK_SETTLE_WAIT). The late answers still reach the run: its
    summary and its parent message end up saying what RunPod did with every job, and the tally completes."""
    from testkit.fakes.limits import SlackLimits
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    jobs = [f"job-w{n:02d}" for n in range(16)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")
    runpod.fault("retry", delay=1.0, times=len(jobs))  # slow enough to be cut off with retries in flight
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, RUNPOD_BULK_CONCURRENCY="8",
                        RUNPOD_TIMEOUT="30") as app:
        assert (await app.command(f"ep1 {' '.join(jobs)}", user="U1")).status == 200
        await wait_until(lambda: len(runpod.calls_to("retry")) >= 8, 20, "the first retries")
        await app.kill(0)
        await asyncio.sleep(1.5)  # RunPod answers what it received: the retries in flight take effect
        runpod.fault("status", delay=10.0, times=8)  # longer than the run's wait for them (6 s at this scale)
        await app.start(0)

        def thread() -> str:
            return "\n".join(message_text(m) for (c, _), m in slack.messages.items() if c == "C1")

        await wait_until(lambda: "16 completed" in thread(), 45,
                         lambda: f"the run finished after the restart: {thread()}")
        summaries = [m for m in slack.messages.values() if "Results for 16 jobs" in message_text(m)]
        assert len(summaries) == 1, "one summary"
        await wait_until(lambda: "no answer before the app restarted" not in message_text(summaries[0]), 10,
                         lambda: f"the summary still says a job had no answer: {message_text(summaries[0])}")
    assert set(runpod.requeued("ep1")) == {("ep1", job) for job in jobs}, "every job retried"
    assert set(runpod.requeued("ep1").values()) == {1}, "none twice"


async def test_a_retry_all_acknowledged_then_cut_off_by_kill_9_before_any_retry_is_run_by_the_next_start(
        slack, runpod, tmp_path):
    """Retry all was clicked on a grouped alert and answered 200 (Slack shows the click as taken), then the replica
    died while it was still checking with Slack that the clicker may retry: nothing had reached RunPod yet. The next
    start carries the click out: every job of the grouped alert retried once, one summary in the alert's thread."""
    from bot.core import messages
    from bot.core.groups import JobResult
    from testkit.fakes.limits import SlackLimits
    from testkit.fakes.slack import SlackFault
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    slack.usergroups["S1"] = ["U1"]  # who may retry is asked of Slack at the click: the window after the ack
    jobs = [f"job-r{n:02d}" for n in range(6)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, RUNPOD_STORM_THRESHOLD="3",
                        RUNPOD_RETRY_ALLOWED_USERGROUPS="S1") as app:
        for job in jobs:
            assert await app.webhook("ep1", {"id": job, "status": "FAILED", "error": "CUDA out of memory"}) == 200

        def grouped() -> dict[str, Any] | None:
            return next((m for (c, _), m in slack.messages.items() if c == "CALERTS" and not m.get("thread_ts")
                         and any(el.get("action_id") == actions.RETRY_ALL for b in m.get("blocks") or []
                                 for el in b.get("elements") or [])), None)

        await wait_until(lambda: grouped() and "6" in message_text(grouped() or {}), 15, "the grouped alert of 6")
        await asyncio.sleep(1.5)  # its paced redraws have landed
        storm = grouped()
        assert storm is not None
        slack.script("usergroups.users.list", SlackFault(delay=30.0))  # Slack is slow to say who is in the group
        ack = await app.click(actions.RETRY_ALL, button_value(storm, actions.RETRY_ALL), message_ts=storm["ts"])
        assert ack.status == 200
        await wait_until(lambda: slack.calls_to("usergroups.users.list"), 10, "the click being carried out")
        await app.kill(0)
        assert not runpod.calls_to("retry"), "cut off before any retry"
        await app.start(0)

        head = messages.bulk_summary("ep1", [JobResult(j, "requeued") for j in jobs], "x.json")[0]["text"]
        head = head.split(":")[0]

        def summaries() -> list[dict[str, Any]]:
            return [m for m in slack.messages.values()
                    if m.get("thread_ts") == storm["ts"] and message_text(m).startswith(head)]

        await wait_until(lambda: len(runpod.requeued("ep1")) == len(jobs) and summaries(), 30,
                         lambda: f"every job retried after the restart and summarised: {runpod.requeued('ep1')}\n"
                                 + app.logs())
        await asyncio.sleep(3.0)  # a second retry or summary would be out by now
    assert set(runpod.requeued("ep1")) == {("ep1", job) for job in jobs}, "every job retried"
    assert set(runpod.requeued("ep1").values()) == {1}, "none twice"
    assert len(summaries()) == 1, "one summary in the grouped alert's thread"



PICKED = "1699999999.000100"  # another monitor's message the message shortcut is run on
SHORTCUT_EP = "abc123xyz4567"


async def submit_shortcut(app: Any, slack: Any, jobs: list[str], *, before_submit: Any = None) -> None:
    """The message shortcut on a message naming `jobs`, and its form submitted as it opened (pre-filled)."""
    from testkit.surfaces_payloads import message_action, view_submission

    message = {"type": "message", "user": "UDATADOG", "ts": PICKED, "text": "[Triggered] RunPod job failures\n"
               + "\n".join(f"https://api.runpod.ai/v2/{SHORTCUT_EP}/status/{job}" for job in jobs)}
    opened = await app.interact(message_action(message, callback_id=actions.SHORTCUT, channel_id="C1",
                                               user_id="U4", response_url=slack.new_response_url()))
    assert opened.status == 200
    [form] = await slack.wait_for(lambda s: s.open_views(actions.RETRY_MODAL))
    if before_submit is not None:
        before_submit()
    assert (await app.interact(view_submission(form, user_id="U4"))).status == 200


def in_the_thread(slack: Any) -> list[str]:
    return [message_text(m) for (c, _), m in slack.messages.items() if c == "C1" and m.get("thread_ts") == PICKED]


def outside_the_thread(slack: Any) -> list[str]:
    return [message_text(m) for (c, _), m in slack.messages.items() if c == "C1" and m.get("thread_ts") != PICKED]


async def test_a_thread_bulk_retry_acknowledged_then_cut_off_by_kill_9_before_any_retry_is_run_by_the_next_start(
        slack, runpod, tmp_path):
    """The message shortcut's form was submitted with several jobs and answered 200 (Slack closed the form: the
    request is taken), then the replica died while the run's progress message was still on its way to the
    message's thread: nothing had reached RunPod yet. The next start runs the whole request in that thread: one
    progress message, every job retried once, one summary, nothing posted outside the thread."""
    from testkit.fakes.limits import SlackLimits
    from testkit.fakes.slack import SlackFault
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    jobs = [f"{n:08x}-08a1-426e-9cb9-9eaec90f5e2b-u1" for n in range(6)]
    for job in jobs:
        runpod.add_job(SHORTCUT_EP, job, status="FAILED")
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1) as app:
        # The progress message: Slack is slow to take it.
        await submit_shortcut(app, slack, jobs,
                              before_submit=lambda: slack.script("chat.postMessage", SlackFault(delay=30.0)))
        await wait_until(lambda: slack.calls_to("chat.postMessage"), 10, "the progress message on its way to Slack")
        await app.kill(0)
        assert not runpod.calls_to("retry"), "cut off before any retry"
        await app.start(0)

        def progress() -> list[str]:
            return [t for t in in_the_thread(slack) if "6 jobs" in t and "Results for" not in t]

        await wait_until(lambda: any("6 completed" in p for p in progress()), 30,
                         lambda: f"the run finished after the restart in the thread: {in_the_thread(slack)}\n"
                                 + app.logs())
        await asyncio.sleep(2.0)  # a second retry, progress message or summary would be out by now
    assert set(runpod.requeued(SHORTCUT_EP)) == {(SHORTCUT_EP, job) for job in jobs}, "every job retried"
    assert set(runpod.requeued(SHORTCUT_EP).values()) == {1}, "none twice"
    assert len(progress()) == 1, "one progress message in the thread"
    assert sum("Results for 6 jobs" in t for t in in_the_thread(slack)) == 1, "one summary in the thread"
    assert outside_the_thread(slack) == [], "nothing posted outside the message's thread"


async def test_a_thread_bulk_retry_cut_off_by_kill_9_half_way_is_finished_in_its_thread_by_the_next_start(
        slack, runpod, tmp_path):
    """As the command's run cut off half way: the progress reply was posted and some retries had gone out when the
    replica died. The next start finishes the run in the message's thread, each job retried once, and keeps that
    same progress reply current to the end."""
    from testkit.fakes.limits import SlackLimits
    from testkit.polling import wait_until
    from testkit.replicas import Replicas

    slack.limits = SlackLimits.off()
    jobs = [f"{n:08x}-1111-4222-8333-444455556666" for n in range(12)]
    for job in jobs:
        runpod.add_job(SHORTCUT_EP, job, status="FAILED")
    runpod.fault("retry", delay=0.5, times=len(jobs))  # slow enough to be cut off half way
    async with Replicas(slack, runpod, str(tmp_path / "bot.db"), tmp_path, n=1, RUNPOD_BULK_CONCURRENCY="3") as app:
        await submit_shortcut(app, slack, jobs)
        await wait_until(lambda: len(runpod.calls_to("retry")) >= 4, 20, "the first retries")
        await app.kill(0)
        await asyncio.sleep(1.0)  # RunPod answers what it received: the retries in flight take effect
        await app.start(0)

        def progress() -> list[str]:
            return [t for t in in_the_thread(slack) if "12 jobs" in t and "Results for" not in t]

        await wait_until(lambda: any("12 completed" in p for p in progress()), 60,
                         lambda: f"the run finished after the restart in the thread: {in_the_thread(slack)}\n"
                                 f"{runpod.describe()}\n{app.logs()}")
    assert set(runpod.requeued(SHORTCUT_EP)) == {(SHORTCUT_EP, job) for job in jobs}, "every job retried"
    assert set(runpod.requeued(SHORTCUT_EP).values()) == {1}, "none twice"
    assert len(progress()) == 1, "one progress message in the thread"
    assert sum("Results for 12 jobs" in t for t in in_the_thread(slack)) == 1, "one summary in the thread"
    assert outside_the_thread(slack) == [], "nothing posted outside the message's thread"
