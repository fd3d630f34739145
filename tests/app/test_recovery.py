"""Issue 13 at depth, beyond its reproductions (test_regressions.py): what the app records before it acts, and how
it settles what a stop, an outage or an error cut off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

from bot.core import actions
from bot.core.alerts import retrying
from bot.store import Queued, SqliteStore, StoreUnavailable
from bot.work.settle import settle
from testkit.fakes.slack import SlackFault
from testkit.harness import button_value, message_text
from testkit.polling import wait_until

EP = "ep1"
ALERTS = "CALERTS"
FAILED_BODY = {"status": "FAILED", "error": "CUDA out of memory", "delayTime": 567, "executionTime": 1234}


def inbox_rows(app: Any) -> list[tuple[str, int]]:
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
        return [(kind, done) for kind, done in db.execute("SELECT kind, done FROM inbox ORDER BY id")]


def told(app: Any, ack: Any) -> str:
    return "\n".join(message_text(r) for r in app.responses(ack.response_url))


async def post_alert(app: Any, runpod: Any, job: str, **opts: Any) -> dict[str, Any]:
    runpod.add_job(EP, job, status="FAILED", **opts)
    status, answer = await app.webhook(EP, {"id": job, **FAILED_BODY})
    assert status == 200, answer
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


# ---------------------------------------------------------------- the webhook's inbox


async def test_a_failure_is_stored_before_the_200_and_done_once_its_alert_is_queued(make_app, runpod, slack):
    app = await make_app()
    release = asyncio.Event()
    real_failure = app.rt.failure

    async def held_failure(*args: Any, **kwargs: Any) -> Any:
        await release.wait()
        return await real_failure(*args, **kwargs)

    app.rt.failure = held_failure
    status, answer = await app.webhook(EP, {"id": "job-1", **FAILED_BODY})
    assert (status, answer["result"]) == (200, "accepted")
    assert inbox_rows(app) == [("webhook", 0)]  # stored when RunPod was answered, not handled yet
    release.set()
    await app.settle()
    assert inbox_rows(app) == [("webhook", 1)]
    assert len(app.top_level(ALERTS)) == 1


async def test_a_failure_accepted_but_not_handled_before_a_stop_is_alerted_at_the_next_start(make_app, runpod,
                                                                                            slack):
    app = await make_app()
    await app.stop()
    app.app = None
    previous = SqliteStore(app.env["RUNPOD_RETRY_DB"], owner="previous-run")  # the run that answered RunPod 200
    await previous.open()
    await previous.accept("webhook", {"endpoint": EP, "body": {"id": "job-2", **FAILED_BODY}}, time.time())
    await previous.close()

    await app.start()
    await app.settle()
    [alert] = app.top_level(ALERTS)
    assert "job-2" in message_text(alert) and "CUDA out of memory" in message_text(alert)
    assert inbox_rows(app) == [("webhook", 1)]
    await app.restart()  # done work is not taken up again
    await app.settle()
    assert len(app.top_level(ALERTS)) == 1


async def test_a_webhook_the_store_cannot_take_is_answered_503_so_runpod_sends_it_again(make_app, runpod, slack):
    app = await make_app()
    real_accept = app.rt.store.accept

    async def down(*_args: Any, **_kwargs: Any) -> int:
        raise StoreUnavailable("the database is restarting")

    app.rt.store.accept = down
    status, answer = await app.webhook(EP, {"id": "job-3", **FAILED_BODY})
    assert status == 503 and "send again" in answer["error"]
    await app.settle()
    assert not app.top_level(ALERTS)

    app.rt.store.accept = real_accept  # RunPod's next delivery, 10 s later
    status, _ = await app.webhook(EP, {"id": "job-3", **FAILED_BODY})
    await app.settle()
    assert status == 200 and len(app.top_level(ALERTS)) == 1


async def test_an_alert_slack_has_not_taken_survives_a_restart_and_is_posted_once(make_app, runpod, slack):
    app = await make_app()
    slack.script("chat.postMessage", *[SlackFault(status=503)] * 50)  # Slack is down for a while
    status, _ = await app.webhook(EP, {"id": "job-4", **FAILED_BODY})
    assert status == 200
    await slack.wait_calls("chat.postMessage", 2)
    stored = json.loads(await app.rt.store.load_alert(EP, "job-4"))
    assert stored["ts"] is None and stored["posting"]
    status, answer = await app.webhook(EP, {"id": "job-4", **FAILED_BODY})  # a redelivery meanwhile
    assert (status, answer["result"]) == (200, "accepted")  # stored; its alert is the one on its way
    await app.stop()
    app.app = None

    slack._faults.clear()  # Slack is back
    await app.start()
    await app.settle()
    [alert] = app.top_level(ALERTS)
    stored = json.loads(await app.rt.store.load_alert(EP, "job-4"))
    assert stored["ts"] == alert["ts"] and not stored["posting"]
    # Its buttons work: the app knows where it is.
    runpod.add_job(EP, "job-4", status="FAILED", after_retry=("COMPLETED",))
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"])
    await app.settle()
    assert "The retry worked" in app.thread_text(ALERTS, alert["ts"])


# ---------------------------------------------------------------- a retry cut off by a shutdown


async def cut_off(app: Any, runpod: Any, alert: dict[str, Any], job_id: str) -> Any:
    """Retry clicked, then the app stopped while RunPod still holds the retry (slower than the shutdown grace): a
    deploy cancels the click's work, and RunPod carries the retry out with nobody left to hear its answer."""
    job = runpod.job(EP, job_id)
    runpod.fault("retry", delay=9.0)
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await runpod.wait_calls("retry")
    await app.stop()
    app.app = None
    with contextlib.suppress(AssertionError):  # polled; asserted below
        await runpod.wait_for(lambda _: job.retries)
    assert job.retries == 1
    return job


def open_retry_record(app: Any, *, take: bool = False) -> Queued:
    """The cut-off retry's record ("retry sent", not answered), as the replica adopting it reads it. `take`: marked
    done, so that the next start does not settle it before the test does."""
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
        db.row_factory = sqlite3.Row
        [raw] = db.execute("SELECT * FROM inbox WHERE kind = 'retry' AND done = 0").fetchall()
        if take:
            db.execute("UPDATE inbox SET done = 1 WHERE id = ?", (raw["id"],))
    return Queued(id=raw["id"], kind="retry", payload=json.loads(raw["payload"]), created=raw["created"])


async def test_a_retry_cut_off_by_a_shutdown_is_settled_with_status_at_the_next_start(make_app, runpod, slack):
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-5", after_retry=("IN_PROGRESS",))
    job = runpod.job(EP, "job-5")
    runpod.fault("retry", delay=9.0)  # RunPod is slower than the shutdown grace
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await runpod.wait_calls("retry")
    await app.stop()  # a deploy: the click's work is cancelled while RunPod still has the retry
    app.app = None
    with contextlib.suppress(AssertionError):  # RunPod carries the retry out (polled; asserted below)
        await runpod.wait_for(lambda _: job.retries)
    assert job.retries == 1

    before = len(runpod.calls_to("status"))
    await app.start()
    await runpod.wait_for(lambda f: len(f.calls_to("status")) > before)
    await asyncio.sleep(0.5)
    stored = json.loads(await app.rt.store.load_alert(EP, "job-5"))
    assert stored["phase"] == "requeued" and stored["actor"] == "U1"
    [entry] = await app.rt.store.history(10)
    assert (entry["outcome"], entry["called"], entry["user"], entry["source"]) == ("requeued", 1, "U1", "button")
    assert len(app.rt.follower) == 1 and await app.rt.store.claimed(EP, "job-5") is not None
    assert "After the restart" in app.thread_text(ALERTS, alert["ts"])
    assert await app.rt.store.retries_since(EP, "job-5", 0) == 1

    job.status = "COMPLETED"
    await app.settle()
    assert "The retry worked" in app.thread_text(ALERTS, alert["ts"])
    assert await app.rt.store.claimed(EP, "job-5") is None  # the follow let go of the job when it ended
    await app.restart()  # settled once: nothing left to settle
    await app.settle()
    assert len(await app.rt.store.history(10)) == 1


async def test_a_retry_cut_off_whose_job_failed_again_before_the_next_start_shows_how_it_ended(make_app, runpod,
                                                                                              slack):
    """Issue 17, defect 1 (the FAILED case): the job RunPod requeued ran and failed again while the app was down.
    The next start must not say the retry "has not taken effect (yet)": it went through, and this is its ending."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-6", after_retry=("FAILED",), final_error="worker crashed: lost GPU")
    job = await cut_off(app, runpod, alert, "job-6")
    job.status, job.error, job.pending = "FAILED", "worker crashed: lost GPU", type(job.pending)()  # it ran, failed

    await app.start()
    await app.settle()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "After the restart" in thread and "ran again since and failed again: the retry went through" in thread
    assert "worker crashed: lost GPU" in thread  # RunPod's final answer, shown
    assert "not taken effect" not in thread
    [entry] = await app.rt.store.history(10)
    assert (entry["outcome"], entry["called"], entry["user"]) == ("requeued", 1, "U1")
    final = slack.messages[(ALERTS, alert["ts"])]  # the alert: failed again, with Retry back
    assert "failed again" in message_text(final).lower() and actions.RETRY in str(final.get("blocks"))
    assert len(runpod.calls_to("retry")) == 1


async def test_a_cut_off_retry_of_a_job_without_an_alert_that_failed_again_is_known_to_have_gone_through(
        make_app, runpod, slack):
    """Chaos seed 87: a Retry all member (a grouped alert's job has no alert of its own) was cut off by a kill -9 after
    RunPod took its retry; by the time another replica settled it, the job had run and failed again. With no alert to
    compare runs with, it was summarised "no answer in time" and never followed. RunPod's `retries` counts one more
    retry than the app had made before: this one went through. Here, a command's retry, cut off the same way."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    job = runpod.add_job(EP, "job-r", status="FAILED", after_retry=("FAILED",), final_error="worker crashed: lost GPU")
    runpod.fault("retry", delay=9.0)  # RunPod is slower than the shutdown grace
    await app.command(f"{EP} job-r", user="U1", channel="CCMD")
    await runpod.wait_calls("retry")
    await app.stop()
    app.app = None
    await runpod.wait_for(lambda _: job.retries)
    job.advance()  # it ran, and failed again, while the app was down

    await app.start()
    await app.settle()
    [parent] = [m for m in app.top_level("CCMD") if "job-r" in message_text(m)]
    thread = app.thread_text("CCMD", parent["ts"])
    assert "ran again since and failed again: the retry went through" in thread, thread
    assert "worker crashed: lost GPU" in thread  # how it ended: the follow's
    assert len(runpod.calls_to("retry")) == 1
    [entry] = await app.rt.store.history(10)
    assert (entry["outcome"], entry["called"]) == ("requeued", 1)


async def test_a_cut_off_retry_settled_twice_is_told_once(make_app, runpod, slack):
    """Two replicas can settle one cut-off retry (the first one's lease ran out during a database outage while it
    worked, and the second adopted the row): the reply is posted once, and the retry counted once."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-7", after_retry=("COMPLETED",))
    await cut_off(app, runpod, alert, "job-7")
    row = open_retry_record(app)

    await app.start()  # settles it once ...
    await app.settle()
    await settle(app.rt.service, row)  # ... and a second replica that took the same row over settles it again
    await app.settle()
    thread = [message_text(m) for m in app.thread(ALERTS, alert["ts"])]
    assert sum("After the restart" in text for text in thread) == 1, thread
    assert await app.rt.store.retries_since(EP, "job-7", 0) == 1
    assert len(runpod.calls_to("retry")) == 1


async def test_a_cut_off_retry_whose_dead_replica_still_holds_the_claim_is_followed_to_its_end(make_app, runpod,
                                                                                                 slack):
    """Chaos seed 51: a replica killed -9 after RunPod took its retry kept the job's claim a little longer than its
    record of the retry (its leases are renewed one table at a time). The replica settling the record met that claim,
    took it for someone else's, and only replied: nobody followed the job, and its ending was never shown."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-9", after_retry=("IN_PROGRESS",))
    await cut_off(app, runpod, alert, "job-9")
    row = open_retry_record(app, take=True)  # settled below, by hand
    await app.start()
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:  # the dead replica's claim: 1.5 s of lease left
        db.execute("INSERT INTO claims (endpoint, job, user, at, owner, lease_until) VALUES (?, ?, 'U1', ?, "
                   "'killed-replica', ?)", (EP, "job-9", time.time(), time.time() + 1.5))

    await settle(app.rt.service, row)  # the replica that adopted the record
    assert len(app.rt.follower) == 1
    runpod.job(EP, "job-9").status = "COMPLETED"
    await app.settle()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "After the restart" in thread and "The retry worked" in thread, thread
    assert len(runpod.calls_to("retry")) == 1


async def test_a_cut_off_retry_whose_job_a_live_replica_holds_is_replied_to_without_waiting_out_the_claim(
        make_app, runpod, slack):
    """A replica settling a cut-off retry waited out any other replica's claim on the job (a lease and a half, 22 s):
    a live one's claim never runs out, and the reply waited for nothing. The claim renewed shows its holder alive: the
    reply goes at once, and the job stays theirs to follow."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-l", after_retry=("IN_PROGRESS",))
    await cut_off(app, runpod, alert, "job-l")
    row = open_retry_record(app, take=True)
    await app.start()
    lease = app.rt.service.claims.timing.lease
    claim = "INSERT OR REPLACE INTO claims (endpoint, job, user, at, owner, lease_until) VALUES (?, ?, 'U2', 1.0, " \
            "'live-replica', ?)"
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
        db.execute(claim, (EP, "job-l", time.time() + lease))

    async def renew_once() -> None:  # alive: renewed once early in its lease (then no more, so a wait would end)
        await asyncio.sleep(lease / 5)
        with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
            db.execute(claim, (EP, "job-l", time.time() + lease))

    renewing = asyncio.create_task(renew_once())
    await settle(app.rt.service, row)
    await renewing
    assert len(app.rt.follower) == 0, "followed here, after waiting out a live replica's claim"
    await app.settle()
    assert (await app.rt.store.claimed(EP, "job-l")).owner == "live-replica"
    assert "After the restart" in app.thread_text(ALERTS, alert["ts"])
    assert len(runpod.calls_to("retry")) == 1


async def test_the_follow_and_the_record_do_not_wait_for_the_reply_to_leave_a_busy_channel(make_app, runpod, slack):
    """Chaos seed 85: in an alert channel paced by Slack, a retry's reply waited its turn for many seconds, and the
    follow (and letting go of the retry's record) waited behind it. The replica was killed in that wait; the record
    was settled again by another replica a lease later, and six endings were shown 47-57 s after the jobs ended."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-p", after_retry=("IN_PROGRESS",))
    slack.script("chat.postMessage", SlackFault(status=429, headers={"Retry-After": "100"}))  # 10 s at test pace
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await runpod.wait_calls("retry")
    await wait_until(lambda: len(app.rt.follower) == 1 and ("retry", 1) in inbox_rows(app), 5,
                     "the follow started and the record let go while the reply waits")
    assert "was requeued" not in app.thread_text(ALERTS, alert["ts"])  # still waiting for the channel's turn

    await app.restart()  # a stop in that wait: the reply is queued, the retry answered, the job followed
    job = runpod.job(EP, "job-p")
    job.pending.clear()
    job.status = "COMPLETED"
    await app.settle()
    thread = [message_text(m) for m in app.thread(ALERTS, alert["ts"])]
    replies = [i for i, text in enumerate(thread) if "was requeued" in text]
    endings = [i for i, text in enumerate(thread) if "The retry worked" in text]
    assert len(replies) == 1 and len(endings) == 1 and replies[0] < endings[0], thread
    assert not any("After the restart" in text for text in thread) and len(runpod.calls_to("retry")) == 1


async def test_an_ending_said_after_a_restart_takes_its_turn_from_the_retry_not_behind_the_channels_backlog(
        make_app, runpod, slack):
    """Chaos seed 207735: a replica adopting a follow saw the job had ended and queued its ending behind a busy
    alert channel's backlog; it was shown 45 s after the job ended. Late already, it now goes ahead of every post
    queued after the retry."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-q", after_retry=("IN_PROGRESS",))
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await wait_until(lambda: len(app.rt.follower) == 1 and "was requeued" in app.thread_text(ALERTS, alert["ts"]), 5,
                     "the retry answered and its job followed")
    slack.script("chat.postMessage", SlackFault(status=429, headers={"Retry-After": "30"}))  # 3 s at test pace
    for n in range(10):  # what people asked for since, waiting its turn in the channel
        await app.rt.outbox.submit("post", {"channel": ALERTS, "thread_ts": "9.9", "text": f"backlog {n}"})

    await app.restart()
    job = runpod.job(EP, "job-q")
    job.pending.clear()
    job.status = "COMPLETED"
    await app.settle(20)
    order = [message_text(m) for m in app.posts(ALERTS)]
    ending = next((i for i, text in enumerate(order) if "The retry worked" in text), None)
    assert ending is not None, order
    backlog = [i for i, text in enumerate(order) if text.startswith("backlog")]
    # Only what left in Slack's burst before the resumed follow looked at RunPod goes ahead of it (all 10 did).
    assert len(backlog) == 10 and sum(i < ending for i in backlog) <= 3, order


async def test_an_ending_said_after_a_takeover_waits_for_the_retrys_reply_held_by_another_replica(
        make_app, runpod, slack):
    """A dead replica's follows and its queued calls can be adopted by two different replicas. The ending, said with
    the retry's turn, must still come after the reply the other replica is sending: the thread reads reply, ending."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-r", after_retry=("IN_PROGRESS",))
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await wait_until(lambda: len(app.rt.follower) == 1 and "was requeued" in app.thread_text(ALERTS, alert["ts"]), 5,
                     "the retry answered and its job followed")
    await app.restart()
    [target] = app.rt.follower._active.values()
    assert target.reply, "the follow knows its reply's key"
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:  # as if the reply were still another replica's to send
        db.execute("UPDATE outbox SET state = 'queued', owner = 'other-replica', lease_until = ? WHERE once_key = ?",
                   (time.time() + 3600, target.reply))
    job = runpod.job(EP, "job-r")
    job.pending.clear()
    job.status = "COMPLETED"
    checks = len(runpod.calls_to("status"))
    await runpod.wait_for(lambda f: len(f.calls_to("status")) > checks)  # it has seen the job end
    await asyncio.sleep(0.3)
    assert "The retry worked" not in app.thread_text(ALERTS, alert["ts"]), "the ending went before its reply"
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
        db.execute("UPDATE outbox SET state = 'sent' WHERE once_key = ?", (target.reply,))
    await app.settle()
    assert "The retry worked" in app.thread_text(ALERTS, alert["ts"])


async def test_a_retry_whose_reply_went_out_before_its_replica_stopped_is_not_told_again(make_app, runpod, slack):
    """Chaos seed 43: a replica was killed just after Slack took a retry's reply and before its record was let go; the
    replica adopting the record settled it and posted the same result again. The reply and the settling are one post
    (`reply_key`); the retry is counted once."""
    app = await make_app(RUNPOD_TIMEOUT="10")
    alert = await post_alert(app, runpod, "job-8", after_retry=("IN_PROGRESS",))
    stuck = asyncio.Event()

    async def never(work_id: int | None) -> None:  # the replica dies here: its record stays open
        stuck.set()
        await asyncio.Event().wait()

    app.rt.service.mark_answered = never  # type: ignore[method-assign]
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await asyncio.wait_for(stuck.wait(), 10)
    await app.rt.outbox.idle(10)
    replies = lambda: [m for m in app.thread(ALERTS, alert["ts"]) if "was requeued" in str(m.get("text"))]  # noqa: E731
    assert len(replies()) == 1, "the reply went out before the stop"

    await app.restart()  # the open record is settled with /status
    await runpod.wait_for(lambda f: len(f.calls_to("status")) >= 1)
    runpod.job(EP, "job-8").status = "COMPLETED"
    await app.settle()
    assert "The retry worked" in app.thread_text(ALERTS, alert["ts"])
    assert len(replies()) == 1 and "After the restart" not in app.thread_text(ALERTS, alert["ts"]), \
        app.thread_text(ALERTS, alert["ts"])
    assert len(runpod.calls_to("retry")) == 1 and await app.rt.store.retries_since(EP, "job-8", 0) == 1


async def test_an_unexpected_error_mid_retry_frees_the_claim_and_brings_the_retry_button_back(make_app, runpod,
                                                                                              slack):
    """Not only a Slack blip: any error between the claim and the end of the retry frees the claim and never
    leaves the alert "retrying"."""
    app = await make_app()
    alert = await post_alert(app, runpod, "job-c")
    real = app.rt.out.post_outcome

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk full")

    app.rt.out.post_outcome = broken
    first = await app.command(f"{EP} job-c", user="U1")
    await app.settle()
    app.rt.out.post_outcome = real
    assert "Something went wrong" in told(app, first)
    assert await app.rt.store.claimed(EP, "job-c") is None
    stored = json.loads(await app.rt.store.load_alert(EP, "job-c"))
    assert stored["phase"] != "retrying"
    assert actions.RETRY in json.dumps(app.slack.messages[(ALERTS, alert["ts"])])  # the button is back
    # Every row done (the request, the retry sent): neither carried out nor settled again at every start.
    assert inbox_rows(app) == [("webhook", 1), ("retry_request", 1), ("retry", 1)]


# ---------------------------------------------------------------- the budget


async def test_a_retry_whose_answer_was_lost_counts_toward_the_budget(make_app, runpod, slack):
    runpod.add_job(EP, "job-6", status="FAILED")
    app = await make_app(RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.fault("retry", status=503)   # the retry's answer is a 503...
    runpod.fault("status", status=503)  # ...and /status cannot tell whether it took effect
    await app.command(f"{EP} job-6", user="U1")
    await app.settle()
    [entry] = await app.rt.store.history(10)
    assert (entry["outcome"], entry["called"]) == ("server_error", 1)

    ack = await app.command(f"{EP} job-6", user="U2")
    await app.settle()
    assert "already retried once in the last hour" in told(app, ack)
    assert len(runpod.calls_to("retry")) == 1


async def test_a_retry_runpod_refused_does_not_count_toward_the_budget(make_app, runpod, slack):
    runpod.add_job(EP, "job-7", status="IN_PROGRESS")
    app = await make_app(RUNPOD_RETRY_MAX_PER_JOB="1")
    await app.command(f"{EP} job-7", user="U1")  # refused: the job is running
    await app.settle()
    runpod.job(EP, "job-7").status = "FAILED"
    await app.command(f"{EP} job-7", user="U2")
    await app.settle()
    assert [c.status for c in runpod.calls_to("retry")][-1] == 200
    assert [e["called"] for e in await app.rt.store.history(10)] == [1, 0]


# ---------------------------------------------------------------- follows, stale alerts, grouped alerts


async def test_a_follow_that_hits_an_unexpected_error_still_ends_and_lets_go_of_the_job(make_app, runpod, slack):
    app = await make_app()
    alert = await post_alert(app, runpod, "job-8", after_retry=("IN_QUEUE",))
    real_status = app.rt.runpod.status

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("a bug while following")

    app.rt.follower.runpod.status = broken
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await app.settle()
    app.rt.follower.runpod.status = real_status
    assert "unexpected error while following" in app.thread_text(ALERTS, alert["ts"])
    assert len(app.rt.follower) == 0 and await app.rt.store.follows() == []
    assert await app.rt.store.claimed(EP, "job-8") is None


async def test_a_follow_resumed_after_its_job_ended_posts_only_the_ending_at_once(make_app, runpod, slack):
    """The job ended while the app was down: the next start says how it ended, without "following it again" first
    (a post that would wait its turn in a busy channel) and without waiting a poll interval."""
    app = await make_app(RUNPOD_FOLLOW_INTERVAL="30")
    alert = await post_alert(app, runpod, "job-r1", after_retry=("IN_PROGRESS",))
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await slack.wait_for(lambda _: "was requeued" in app.thread_text(ALERTS, alert["ts"]), timeout=10)
    await app.stop()
    app.app = None
    job = runpod.job(EP, "job-r1")
    job.pending.clear()
    job.status = "COMPLETED"

    started = time.monotonic()
    await app.start()
    await slack.wait_for(lambda _: "The retry worked" in app.thread_text(ALERTS, alert["ts"]), timeout=10)
    assert time.monotonic() - started < 10, "looked at once, not after the 30 s interval"
    await app.settle()
    assert "again" not in app.thread_text(ALERTS, alert["ts"]).split("was requeued", 1)[1]
    assert await app.rt.store.follows() == []


async def test_a_follow_resumed_while_its_job_still_runs_says_so_once(make_app, runpod, slack):
    app = await make_app()
    alert = await post_alert(app, runpod, "job-r2", after_retry=("IN_PROGRESS",))
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await slack.wait_for(lambda _: "was requeued" in app.thread_text(ALERTS, alert["ts"]), timeout=10)
    await app.restart()
    await slack.wait_for(lambda _: "Following job job-r2 again" in app.thread_text(ALERTS, alert["ts"]), timeout=10)
    await app.restart()  # said already: a second restart does not say it again
    await asyncio.sleep(0.5)
    job = runpod.job(EP, "job-r2")
    job.pending.clear()
    job.status = "COMPLETED"
    await app.settle()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert thread.count("Following job job-r2 again") == 1 and "The retry worked" in thread


async def test_a_follow_the_database_cannot_store_yet_still_follows_the_job_once_it_is_back(make_app, runpod, slack):
    """The database went away between RunPod taking the retry and the follow being written down: the retry is still
    told as requeued (not as an error of the app's), and the job's ending is shown once the database is back."""
    app = await make_app()
    alert = await post_alert(app, runpod, "job-f1", after_retry=("IN_PROGRESS", "COMPLETED"))
    real_save = app.rt.store.save_follow
    away = [True, True]

    async def save_follow(*args: Any) -> None:
        if away:
            away.pop()
            raise StoreUnavailable("PostgreSQL is restarting")
        await real_save(*args)

    app.rt.store.save_follow = save_follow  # type: ignore[method-assign]
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await app.settle()
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "was requeued" in thread and "The retry worked" in thread, thread
    assert "unexpected error" not in thread and "went wrong" not in thread
    assert not away and await app.rt.store.follows() == []


async def test_a_new_failure_of_a_job_left_retrying_without_a_claim_updates_its_alert(make_app, runpod, slack):
    app = await make_app()
    alert = await post_alert(app, runpod, "job-9")
    stale = await app.rt.desk.get(EP, "job-9")
    await app.rt.desk.save(retrying(stale, "U1", time.time() - 600))  # work that was cut off long ago
    await app.settle()
    status, _ = await app.webhook(EP, {"id": "job-9", "status": "FAILED", "error": "worker lost"})
    await app.settle()
    stored = json.loads(await app.rt.store.load_alert(EP, "job-9"))
    assert status == 200 and stored["phase"] == "failed_again" and stored["retry_offered"]
    assert "Retrying" not in message_text(app.slack.messages[(ALERTS, alert["ts"])])


async def test_retry_all_clicked_after_the_deadline_is_refused_and_the_alert_redrawn(make_app, runpod, slack):
    app = await make_app(RUNPOD_STORM_THRESHOLD="3")
    for i in range(3):
        runpod.add_job(EP, f"job-{i}", status="FAILED")
        await app.webhook(EP, {"id": f"job-{i}", **FAILED_BODY})
    await app.settle()
    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    value = button_value(storm, actions.RETRY_ALL)
    app.rt.storms.clock = lambda: time.time() + 31 * 60  # before the sweep came round
    ack = await app.click(actions.RETRY_ALL, value, message_ts=storm["ts"])
    await app.settle()
    assert "Too late to retry" in told(app, ack)
    assert runpod.calls_to("retry") == []
    assert actions.RETRY_ALL not in json.dumps(app.slack.messages[(ALERTS, storm["ts"])])


# ---------------------------------------------------------------- start-up


def test_the_slack_client_retries_a_dropped_connection_twice_not_once():
    from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler

    from bot.slack.out import make_client

    client = make_client("xoxb-test", "http://127.0.0.1:9/api/")
    handlers = [h for h in client.retry_handlers if isinstance(h, AsyncConnectionErrorRetryHandler)]
    assert [h.max_retry_count for h in handlers] == [2]


async def test_a_port_in_use_is_still_named_at_start_up(runpod, slack, tmp_path, capsys):
    import socket

    from bot.app.server import serve
    from bot.infra.config import load_settings
    from testkit.harness import Harness

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = Harness(slack, runpod, tmp_path).env | {"PORT": str(port)}
        code = await asyncio.wait_for(serve(load_settings(env)), timeout=20)
    err = capsys.readouterr().err
    assert code == 2 and f"could not listen on port {port}" in err and "Set PORT to a free port" in err


async def test_a_bulk_jobs_retry_cut_off_before_it_reached_runpod_is_sent_at_the_next_start(make_app, runpod, slack):
    """A bulk run's retry written down as sent, then cut off by a shutdown before the request left the app: RunPod
    never got it and still shows the failure untouched. The next start sends it (the run promised every job one
    retry) instead of summarising the job as not retried."""
    app = await make_app()
    jobs = ["job-b1", "job-b2", "job-b3"]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    real_retry = app.rt.runpod.retry

    async def never_leaves(endpoint: str, job: str, **kwargs: Any) -> Any:
        if job == "job-b3":
            await asyncio.Event().wait()  # stuck before the request is sent (a slow connection, a full pool)
        return await real_retry(endpoint, job, **kwargs)

    app.rt.runpod.retry = never_leaves
    assert (await app.command(f"{EP} {' '.join(jobs)}")).status == 200
    await runpod.wait_for(lambda f: len(f.calls_to("retry")) >= 2)
    await app.restart()  # a deploy: the stuck retry is cancelled with its row written down as sent
    await app.settle()

    assert [c.job for c in runpod.calls_to("retry")].count("job-b3") == 1, runpod.describe()
    assert set(runpod.requeued(EP)) == {(EP, job) for job in jobs}
    assert set(runpod.requeued(EP).values()) == {1}
    summary = next(message_text(m) for m in slack.messages.values() if "Results for 3 jobs" in message_text(m))
    assert "All 3 jobs requeued" in summary, summary


async def test_a_click_whose_retry_record_the_database_took_as_the_connection_dropped_is_sent_after_the_restart(
        make_app, runpod, slack):
    """Chaos seed 145: PostgreSQL restarted as a click's "retry sent" record was written. The record landed but the
    connection dropped before the app heard so: the app never sent the retry, and told the person the database was
    unreachable. The replica that took the work over found the record, saw on /status that the failure was untouched,
    and only said the retry had not taken effect: a click acknowledged, never retried. It is sent now."""
    app = await make_app()
    alert = await post_alert(app, runpod, "job-drop")
    real_accept = app.rt.store.accept

    async def dropped_after_commit(kind: str, payload: dict[str, Any], now: float) -> int:
        work_id = await real_accept(kind, payload, now)
        if kind == "retry":
            raise StoreUnavailable("connection was closed in the middle of operation")
        return work_id

    app.rt.store.accept = dropped_after_commit
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await app.settle()
    assert not runpod.calls_to("retry"), "the app never sent it"

    await app.restart()
    await app.settle()
    assert len(runpod.calls_to("retry")) == 1, runpod.describe()
    assert runpod.requeued(EP) == {(EP, "job-drop"): 1}
    assert "After the restart" in app.thread_text(ALERTS, alert["ts"])
    assert "was requeued" in app.thread_text(ALERTS, alert["ts"])
