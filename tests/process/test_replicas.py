"""Several replicas on PostgreSQL (issue 11): 3 real `python -m bot` processes, one real PostgreSQL, requests spread
over them (HTTP: a random replica per request; Socket Mode: each envelope to a random live socket)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from bot.core import actions
from bot.infra.timing import REAL
from bot.store.postgres import PostgresStore
from testkit.env import TEST_TIME_SCALE
from testkit.fakes import SlackFault
from testkit.fakes.limits import SlackLimits
from testkit.harness import ACK_DEADLINE, alert_completed, button_value, message_text
from testkit.polling import wait_until
from testkit.replicas import Replicas

EP = "ep1"
ALERTS = "CALERTS"
FAILED = {"status": "FAILED", "error": "CUDA out of memory", "executionTime": 1200, "delayTime": 300}


def top_level(slack: Any, channel: str = ALERTS) -> list[dict[str, Any]]:
    return [m for (c, _), m in slack.messages.items() if c == channel and not m.get("thread_ts")]


def thread(slack: Any, channel: str, ts: str) -> list[dict[str, Any]]:
    return [m for (c, _), m in slack.messages.items() if c == channel and m.get("thread_ts") == ts]


def thread_replies(slack: Any, channel: str) -> list[dict[str, Any]]:
    return [m for (c, _), m in slack.messages.items() if c == channel and m.get("thread_ts")]


def alerts_of(slack: Any, job: str) -> list[dict[str, Any]]:
    return [m for m in top_level(slack) if job in message_text(m)]


def retry_value(msg: dict[str, Any]) -> str:
    for block in msg.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == actions.RETRY:
                return str(element["value"])
    raise AssertionError(f"no Retry button on {message_text(msg)!r}")


def told_privately(slack: Any, response_url: str) -> str:
    return "\n".join(message_text(r) for r in slack.responses.get(response_url, []))


def no_duplicate_posts(slack: Any) -> None:
    """Each message the app posted reached Slack once: no two accepted posts with the same place and words."""
    seen = Counter((c.channel, c.args.get("thread_ts"), c.args.get("text")) for c in slack.accepted())
    doubled = {k: n for k, n in seen.items() if n > 1}
    assert not doubled, doubled


async def one_alert(cluster: Replicas, slack: Any, runpod: Any, job: str) -> dict[str, Any]:
    runpod.add_job(EP, job, status="FAILED")
    assert await cluster.webhook(EP, {"id": job, **FAILED}) == 200
    [alert] = await wait_until(lambda: alerts_of(slack, job), 10, f"the alert for {job}")
    return alert


@pytest.fixture
async def cluster(request, slack, runpod, pg_url, tmp_path):  # type: ignore[no-untyped-def]
    """3 replicas on one PostgreSQL database; `request.param` is the mode (default HTTP)."""
    slack.limits = SlackLimits.off()
    mode = getattr(request, "param", "http")
    replicas = Replicas(slack, runpod, pg_url, tmp_path, mode=mode, n=3)
    await replicas.start_all()
    try:
        yield replicas
    finally:
        await replicas.close()


# ---------------------------------------------------------------- alerts and storms


async def test_one_failure_gives_one_alert_when_its_deliveries_reach_every_replica(cluster, slack, runpod):
    jobs = [f"job-{n}-u1" for n in range(4)]  # under the storm threshold (5)
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")

    # Each failure delivered 3 times at once, one to each replica, then redelivered twice to random replicas.
    statuses = await asyncio.gather(*(cluster.webhook(EP, {"id": job, **FAILED}, replica=i)
                                      for job in jobs for i in range(3)))
    statuses += await asyncio.gather(*(cluster.webhook(EP, {"id": job, **FAILED}) for job in jobs for _ in range(2)))
    assert set(statuses) == {200}
    await wait_until(lambda: all(alerts_of(slack, job) for job in jobs), 15, "every alert")
    await asyncio.sleep(1.5 * slack.time_scale + 0.5)  # anything doubled would have been posted by now

    for job in jobs:
        assert len(alerts_of(slack, job)) == 1, job
    assert len(top_level(slack)) == len(jobs)
    no_duplicate_posts(slack)


async def test_a_storm_spread_over_three_replicas_is_grouped_as_on_one(cluster, slack, runpod):
    jobs = [f"job-{n:02d}-u1" for n in range(40)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    gate = asyncio.Semaphore(8)

    async def fail(job: str) -> int:
        async with gate:
            return await cluster.webhook(EP, {"id": job, **FAILED})

    assert set(await asyncio.gather(*(fail(job) for job in jobs))) == {200}

    def grouped() -> list[dict[str, Any]]:
        return [m for m in top_level(slack) if "jobs failed on endpoint" in message_text(m)]

    [storm] = await wait_until(grouped, 20, "the grouped alert")
    await wait_until(lambda: "40 jobs failed" in message_text(slack.messages[(ALERTS, storm["ts"])]), 20,
                     "the grouped alert counting all 40 failures")
    await asyncio.sleep(2.5 * slack.time_scale + 0.5)  # the paced redraws of every replica have landed

    assert len(top_level(slack)) <= 5, [message_text(m)[:80] for m in top_level(slack)]
    assert len(grouped()) == 1
    listed = "\n".join(message_text(m) for m in thread(slack, ALERTS, storm["ts"]))
    assert all(job in listed for job in jobs)
    assert "40 jobs failed" in message_text(slack.messages[(ALERTS, storm["ts"])])
    no_duplicate_posts(slack)


# ---------------------------------------------------------------- exactly once


@pytest.mark.parametrize("cluster", ["http", "socket"], indirect=True)
async def test_ten_clicks_on_one_retry_spread_over_replicas_make_one_runpod_call(cluster, slack, runpod):
    alert = await one_alert(cluster, slack, runpod, "job-c10-u1")
    value = retry_value(alert)
    users = [f"U{n}" for n in range(10)]

    acks = await asyncio.gather(*(cluster.click(actions.RETRY, value, message_ts=alert["ts"], user=u)
                                  for u in users))
    assert all(a.status == 200 and a.latency < ACK_DEADLINE for a in acks)
    await wait_until(lambda: sum(bool(slack.responses.get(a.response_url)) for a in acks) >= 9, 15,
                     "the nine others told")
    await wait_until(lambda: alert_completed(slack.messages[(ALERTS, alert["ts"])]), 15,
                     "the alert showing the retried job completed")

    assert len(runpod.calls_to("retry")) == 1, runpod.describe()
    [winner] = [u for u in users if f"<@{u}>" in message_text(slack.messages[(ALERTS, alert["ts"])])]
    for user, ack in zip(users, acks, strict=True):
        told = told_privately(slack, ack.response_url)
        if user != winner:
            assert f"<@{winner}> already retried" in told, (user, told)
    if cluster.mode == "socket":
        assert len(set(slack.socket_sent_to.values())) > 1  # the envelopes really were spread


async def test_the_same_bulk_command_on_two_replicas_retries_each_job_once(cluster, slack, runpod):
    jobs = [f"job-b{n}-u1" for n in range(12)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    text = f"{EP} {' '.join(jobs)}"

    acks = await asyncio.gather(cluster.command(text, user="U1", replica=0), cluster.command(text, user="U2",
                                                                                             replica=1))
    assert all(a.status == 200 for a in acks)
    await wait_until(lambda: sum("Results for 12 jobs" in message_text(m) for m in slack.messages.values()) == 2,
                     30, "both summaries")

    assert len(runpod.calls_to("retry")) == 12, runpod.describe()
    assert set(runpod.requeued(EP).values()) == {1} and len(runpod.requeued(EP)) == 12


async def test_a_bulk_retry_whose_replica_dies_is_finished_by_another_each_job_once(cluster, slack, runpod):
    jobs = [f"job-d{n:02d}-u1" for n in range(24)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    # RunPod answers each retry after half a second: the run is a third of the way through when its replica dies,
    # with some retries sent and not answered yet.
    runpod.fault("retry", delay=0.5, times=len(jobs))
    ack = await cluster.command(f"{EP} {' '.join(jobs)}", user="U1", replica=0)
    assert ack.status == 200
    await wait_until(lambda: len(runpod.calls_to("retry")) >= 8, 20, "the first retries")
    await cluster.kill(0)
    killed = time.monotonic()

    def parent() -> dict[str, Any] | None:
        found = [m for m in top_level(slack, "C1") if "24 jobs" in message_text(m)]
        return found[0] if found else None

    await wait_until(lambda: any("Results for 24 jobs" in message_text(m) for m in slack.messages.values()), 60,
                     "the summary, posted by the replica that took the run over")
    await wait_until(lambda: "24 completed" in message_text(parent() or {}), 30,
                     lambda: f"the tally completed; the parent shows: {message_text(parent() or {})}\n"
                             f"{runpod.describe()}\n{cluster.logs()}")
    print(f"run finished {time.monotonic() - killed:.1f} s after kill -9")

    assert set(runpod.requeued(EP)) == {(EP, job) for job in jobs}, "every job retried"
    assert set(runpod.requeued(EP).values()) == {1}, "none twice"
    summaries = [m for m in slack.messages.values() if "Results for 24 jobs" in message_text(m)]
    assert len(summaries) == 1
    shown = message_text(parent() or {})
    assert shown.startswith("All 24 jobs requeued"), shown
    no_duplicate_posts(slack)


async def test_a_bulk_job_the_dead_replica_had_claimed_but_not_sent_is_retried_by_the_one_taking_over(
        slack, runpod, pg_url, tmp_path):
    """At the instant of a kill -9 the dying replica had claimed a job of its run and not yet written it down as
    sent (so it never sent it). Its claim outlives the run's inbox row by up to a third of a lease (taken after the
    last renewal); the replica taking the run over waits it out and retries the job, instead of summarising it as
    "already being retried (by you, a moment ago)"."""
    jobs = [f"job-c{n:02d}-u1" for n in range(12)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    runpod.fault("retry", delay=0.5, times=len(jobs))
    async with Replicas(slack, runpod, pg_url, tmp_path, n=2, RUNPOD_BULK_CONCURRENCY="4") as cluster:
        ack = await cluster.command(f"{EP} {' '.join(jobs)}", user="U1", replica=0)
        assert ack.status == 200
        await wait_until(lambda: len(runpod.calls_to("retry")) >= 4, 20, "the first retries")
        dying = PostgresStore(pg_url, owner="the-replica-being-killed", timeout=5.0)
        dying.lease = 2 * REAL.scaled(TEST_TIME_SCALE).lease  # claimed after its last renewal: outlives its rows
        await dying.open()
        try:
            assert await dying.claim(EP, jobs[-1], "U1", time.time()) is None
        finally:
            await dying.close()
        await cluster.kill(0)
        await wait_until(lambda: any("Results for 12 jobs" in message_text(m) for m in slack.messages.values()), 60,
                         "the summary, posted by the replica that took the run over")
    summary = next(message_text(m) for m in slack.messages.values() if "Results for 12 jobs" in message_text(m))
    assert "not retried" not in summary and "already being retried" not in summary, summary
    assert set(runpod.requeued(EP)) == {(EP, job) for job in jobs}, runpod.describe()
    assert set(runpod.requeued(EP).values()) == {1}, "none twice"


async def test_a_retry_all_whose_replica_dies_is_finished_by_another_each_job_once(cluster, slack, runpod):
    jobs = [f"job-s{n:02d}-u1" for n in range(24)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    for job in jobs:
        assert await cluster.webhook(EP, {"id": job, **FAILED}) == 200

    def grouped() -> list[dict[str, Any]]:
        return [m for m in top_level(slack) if "jobs failed on endpoint" in message_text(m)]

    [storm] = await wait_until(grouped, 20, "the grouped alert")
    await wait_until(lambda: "24 jobs failed" in message_text(slack.messages[(ALERTS, storm["ts"])]), 20,
                     "the grouped alert counting all 24 failures")
    # Every replica's redraw has landed: the Retry all button carries the whole storm.
    await asyncio.sleep(2.5 * slack.time_scale + 0.5)
    storm = slack.messages[(ALERTS, storm["ts"])]

    runpod.fault("retry", delay=0.5, times=len(jobs))
    await cluster.click(actions.RETRY_ALL, button_value(storm, actions.RETRY_ALL), message_ts=storm["ts"],
                        user="U1", replica=0)
    await wait_until(lambda: len(runpod.calls_to("retry")) >= 8, 20, "the first retries")
    await cluster.kill(0)

    def shown() -> str:
        return message_text(slack.messages[(ALERTS, storm["ts"])])

    # The first failures also got alerts of their own; the grouped alert counts them, and Retry all takes them on.
    await wait_until(lambda: "24 completed" in shown(), 60,
                     lambda: f"every job of the grouped alert retried and completed, by the replicas left: the alert "
                             f"says {shown()!r}; RunPod requeued {len(runpod.requeued(EP))} of {len(jobs)}\n"
                             + cluster.logs())
    assert set(runpod.requeued(EP)) == {(EP, job) for job in jobs}, "every job retried"
    assert set(runpod.requeued(EP).values()) == {1}, "none twice"
    no_duplicate_posts(slack)


async def test_a_retry_all_taken_from_a_replica_that_stalled_past_its_lease_posts_one_summary(cluster, slack, runpod):
    """On a busy machine a replica can stall past its lease in the middle of finishing a Retry all it took over: a
    third replica takes the run from it and finishes it, and the stalled one, running again, finishes it too. The
    summary is posted once (it was twice: the failure of the test above on a loaded machine)."""
    jobs = [f"job-p{n}-u1" for n in range(6)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
        assert await cluster.webhook(EP, {"id": job, **FAILED}) == 200
    [storm] = await wait_until(lambda: [m for m in top_level(slack) if "jobs failed on endpoint" in message_text(m)],
                               20, "the grouped alert")
    await wait_until(lambda: "6 jobs failed" in message_text(slack.messages[(ALERTS, storm["ts"])]), 20,
                     "the grouped alert counting all 6 failures")
    await asyncio.sleep(2.5 * slack.time_scale + 0.5)
    storm = slack.messages[(ALERTS, storm["ts"])]
    head = "Results for 6 jobs"

    def summaries() -> list[Any]:
        return [c for c in slack.accepted("chat.postMessage") if str(c.args.get("text") or "").startswith(head)]

    # Replica 0 sends every retry and dies before RunPod answers; the replica taking the run over settles them with
    # /status, which RunPod answers slowly: it is still finishing the run when it stalls.
    runpod.fault("retry", delay=1.0, times=len(jobs))
    runpod.fault("status", delay=1.5, times=3 * len(jobs))
    await cluster.click(actions.RETRY_ALL, button_value(storm, actions.RETRY_ALL), message_ts=storm["ts"],
                        user="U1", replica=0)
    await wait_until(lambda: len(runpod.calls_to("retry")) == len(jobs), 20, "every retry sent")
    await cluster.kill(0)

    def taking_over(i: int) -> bool:
        return "taking over a bulk retry" in cluster[i].text()

    first = await wait_until(lambda: next((i for i in (1, 2) if taking_over(i)), None), 30,
                             lambda: "a replica taking the Retry all over\n" + cluster.logs())
    process = cluster[first].process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # stalled: its leases run out
    try:
        await wait_until(lambda: taking_over(3 - first), 30,
                         lambda: "the other replica taking the run over from the stalled one\n" + cluster.logs())
        await wait_until(summaries, 30, lambda: "the summary, from the replica that took the run over last\n"
                         + cluster.logs())
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # Running again, the stalled replica goes on finishing the run: its settles are answered, its wait ends.
    await asyncio.sleep(5.0)
    assert len(summaries()) == 1, [c.at for c in summaries()]
    assert set(runpod.requeued(EP)) == {(EP, job) for job in jobs}, "every job retried"
    assert set(runpod.requeued(EP).values()) == {1}, "none twice"
    no_duplicate_posts(slack)


async def test_failed_confirmed_on_two_replicas_at_once_runs_once_and_tells_the_other_who_started_it(
        cluster, slack, runpod):
    for n in range(3):
        await one_alert(cluster, slack, runpod, f"job-c{n}-u1")
    runpod.fault("retry", delay=0.5, times=3)  # the run is still under way when the second Confirm arrives
    ack = await cluster.command(f"failed {EP}", user="U1", replica=0)
    await wait_until(lambda: slack.responses.get(ack.response_url), 10, "the offer")
    [offer] = slack.responses[ack.response_url]
    value = next(str(el["value"]) for block in offer.get("blocks") or [] for el in block.get("elements") or []
                 if el.get("action_id") == actions.CONFIRM_FAILED)

    first, second = await asyncio.gather(
        cluster.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user="U1",
                      replica=0),
        cluster.click(actions.CONFIRM_FAILED, value, message_ts="1700000000.000999", channel="C1", user="U2",
                      replica=1))
    await wait_until(lambda: any("Results for 3 jobs" in message_text(m) for m in slack.messages.values()), 30,
                     "the summary")

    answers = [told_privately(slack, first.response_url), told_privately(slack, second.response_url)]
    assert sum("under way" in a for a in answers) == 1, answers
    assert any("<@U" in a and "started retrying" in a for a in answers), answers
    assert len(runpod.calls_to("retry")) == 3, "each job once"
    assert sum("Results for 3 jobs" in message_text(m) for m in slack.messages.values()) == 1


@pytest.mark.parametrize("cluster", ["socket"], indirect=True)
async def test_history_and_failed_are_shared_whichever_replica_answers(cluster, slack, runpod):
    for n in range(3):
        await one_alert(cluster, slack, runpod, f"job-h{n}-u1")
    for n in range(3):
        ack = await cluster.command(f"status {EP} job-h{n}-u1", user=f"U{n}")
        assert ack.status == 200
    runpod.add_job(EP, "job-r-u1", status="FAILED")
    await cluster.command(f"{EP} job-r-u1", user="U9")
    await wait_until(lambda: runpod.calls_to("retry"), 10, "the retry")
    # The attempt is recorded before its result is posted in the command's thread: wait for that, or `history`
    # below may be asked before the record (seen on a loaded machine).
    await wait_until(lambda: any("job-r-u1" in message_text(m) for m in thread_replies(slack, "C1")), 15,
                     "the retry's result")

    # Asked several times: each answer comes from whichever replica got the envelope, and all agree.
    answers = []
    for _ in range(4):
        ack = await cluster.command(f"failed {EP}", user="U5")
        await wait_until(lambda a=ack: slack.responses.get(a.response_url), 10, "the answer to failed")
        answers.append(told_privately(slack, ack.response_url))
    # The endpoint-health line is each replica's own 30-second snapshot (worker counts move while a job runs):
    # the jobs offered are what must agree.
    offered = {"\n".join(line for line in a.splitlines() if "Workers:" not in line) for a in answers}
    assert len(offered) == 1, answers
    assert all(f"job-h{n}-u1" in answers[0] for n in range(3)) and "job-r-u1" not in answers[0], answers[0]
    ack = await cluster.command("history 5", user="U6")
    await wait_until(lambda: slack.responses.get(ack.response_url), 10, "the history")
    assert "job-r-u1" in told_privately(slack, ack.response_url)


# ---------------------------------------------------------------- follow-through has an owner


async def test_a_replica_killed_while_following_a_job_is_replaced_and_the_ending_is_posted(cluster, slack, runpod):
    job = "job-k9-u1"
    runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS",))
    alert = await one_alert(cluster, slack, runpod, job)
    await cluster.click(actions.RETRY, retry_value(alert), message_ts=alert["ts"], user="U1", replica=0)
    # "the job is running", not just "running": the alert's endpoint-health line counts running workers too.
    await wait_until(lambda: "the job is running" in message_text(slack.messages[(ALERTS, alert["ts"])]), 10,
                     "the alert showing the job running")
    assert (await cluster.healthz(0))[1]["following"] == 1

    await cluster.kill(0)
    killed = time.monotonic()
    job_state = runpod.job(EP, job)
    job_state.status, job_state.output = "COMPLETED", {"ok": True}

    await wait_until(lambda: "The retry worked" in "\n".join(message_text(m) for m in
                                                             thread(slack, ALERTS, alert["ts"])), 30,
                     "the ending in the thread within 30 s of the kill")
    took = time.monotonic() - killed
    assert took < 30
    await wait_until(lambda: alert_completed(slack.messages[(ALERTS, alert["ts"])]), 5,
                     "the alert showing completed")
    print(f"ending posted {took:.1f} s after kill -9")


async def test_a_webhook_for_a_job_another_replica_follows_ends_the_follow_at_once(slack, runpod, pg_url, tmp_path):
    slack.limits = SlackLimits.off()
    job = "job-n1-u1"
    runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS",))
    # Polls 60 s apart: only the webhook can end the follow within the test.
    async with Replicas(slack, runpod, pg_url, tmp_path, n=2, RUNPOD_FOLLOW_INTERVAL="60") as cluster:
        alert = await one_alert(cluster, slack, runpod, job)
        await cluster.click(actions.RETRY, retry_value(alert), message_ts=alert["ts"], user="U1", replica=0)
        await wait_until(lambda: runpod.calls_to("retry") and (0 < len(thread(slack, ALERTS, alert["ts"]))), 10,
                         "the retry")
        await asyncio.sleep(0.5)
        job_state = runpod.job(EP, job)
        job_state.status, job_state.output = "COMPLETED", {"ok": True}

        sent = time.monotonic()
        assert await cluster.webhook(EP, {"id": job, "status": "COMPLETED", "output": {"ok": True}},
                                     replica=1) == 200
        await wait_until(lambda: "The retry worked" in "\n".join(
            message_text(m) for m in thread(slack, ALERTS, alert["ts"])), 5, "the ending, at once")
        assert time.monotonic() - sent < 5
        # The follow ends just after the ending is posted: on a loaded machine, a moment after the post is seen.
        for _ in range(100):
            if not (await cluster.healthz(0))[1]["following"] or time.monotonic() - sent >= 5:
                break
            await asyncio.sleep(0.05)
        assert (await cluster.healthz(0))[1]["following"] == 0


# ---------------------------------------------------------------- outbox, restarts


@pytest.mark.real_time  # the queue at SIGTERM is built by Slack's real pace
async def test_a_clean_sigterm_with_messages_queued_sends_each_once(slack, runpod, pg_url, tmp_path):
    # Slack's real per-channel pace (about one post a second): commands in 3 channels queue up their replies.
    async with Replicas(slack, runpod, pg_url, tmp_path, n=3) as cluster:
        jobs = [f"job-q{n}-u1" for n in range(12)]
        for job in jobs:
            runpod.add_job(EP, job, status="FAILED", after_retry=("COMPLETED",))
        acks = await asyncio.gather(*(cluster.command(f"status {EP} {job}", channel=f"C{n % 3}", replica=n % 3)
                                      for n, job in enumerate(jobs)))
        assert all(a.status == 200 for a in acks)
        await asyncio.sleep(1.0)
        await cluster.term(0)

        def answered() -> int:
            return sum(any(job in message_text(m) and "failed" in message_text(m).lower() and m.get("thread_ts")
                           for m in slack.messages.values()) for job in jobs)

        await wait_until(lambda: answered() == len(jobs), 40, "every status answered")
        await asyncio.sleep(1.0)
        no_duplicate_posts(slack)
        assert cluster[0].exits == [0]


@pytest.mark.real_time  # leases of their real length: only the hand-over lets the other replica adopt the post
async def test_an_alert_on_its_way_to_slack_at_a_sigterm_is_posted_once(slack, runpod, pg_url, tmp_path):
    """Chaos seed 889256: a failure delivered to two replicas was alerted twice, 0.4 s apart. The replica sending
    the alert was stopped while Slack was taking it; its outbox cut the call off, the row stayed 'sending', was
    handed over, and the other replica sent it again."""
    slack.limits = SlackLimits.off()
    job = "job-t1-u1"
    runpod.add_job(EP, job, status="FAILED")
    async with Replicas(slack, runpod, pg_url, tmp_path, n=2) as cluster:
        # Slack takes the alert but answers late: the SIGTERM comes while the post is on its way.
        slack.script("chat.postMessage", SlackFault(delay=2.0))
        sent = time.monotonic()
        assert await cluster.webhook(EP, {"id": job, **FAILED}, replica=0) == 200
        await wait_until(lambda: slack.calls_to("chat.postMessage"), 10, "the alert on its way to Slack")
        # RunPod's second delivery reaches the other replica meanwhile: the same failure.
        assert await cluster.webhook(EP, {"id": job, **FAILED}, replica=1) == 200
        await cluster.term(0)
        await wait_until(lambda: alerts_of(slack, job), 10, "the alert")
        # What replica 0 handed over, the other adopts within a third of a lease (5 s): anything sent again is by now.
        await asyncio.sleep(6.0)

        assert len(alerts_of(slack, job)) == 1, [round(c.at - sent, 1) for c in slack.accepted("chat.postMessage")]
        assert cluster[0].exits == [0]
        # The alert's ts was recorded: a click on it is answered in its thread, on the replica left.
        [alert] = alerts_of(slack, job)
        await cluster.click(actions.RETRY, retry_value(alert), message_ts=alert["ts"], user="U1", replica=1)
        await wait_until(lambda: runpod.calls_to("retry") and thread(slack, ALERTS, alert["ts"]), 10,
                         "the retry reported in the alert's thread")


async def test_rolling_restart_while_failures_keep_arriving_alerts_each_exactly_once(slack, runpod, pg_url, tmp_path):
    slack.limits = SlackLimits.off()
    jobs = [f"job-r{n:02d}-u1" for n in range(36)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED")
    async with Replicas(slack, runpod, pg_url, tmp_path, n=3, RUNPOD_STORM_THRESHOLD="1000") as cluster:
        statuses: dict[str, list[int]] = {}

        async def failures() -> None:
            async def one(job: str) -> None:
                statuses[job] = await cluster.deliver(EP, {"id": job, **FAILED}, gap=2.0)

            sending = []
            for job in jobs:
                sending.append(asyncio.create_task(one(job)))
                await asyncio.sleep(0.25)
            await asyncio.gather(*sending)

        async def rolling() -> None:
            for i in range(3):
                await asyncio.sleep(1.0)
                await cluster.term(i)
                await cluster.start(i)

        await asyncio.gather(failures(), rolling())
        await wait_until(lambda: all(alerts_of(slack, job) for job in jobs), 30, "every failure alerted")
        await asyncio.sleep(2.0)

        assert all(200 in s for s in statuses.values()), statuses
        doubled = {job: len(alerts_of(slack, job)) for job in jobs if len(alerts_of(slack, job)) != 1}
        assert not doubled, doubled
        assert len(top_level(slack)) == len(jobs)
        assert all(r.exits == [0] and r.starts == 2 for r in cluster.replicas)
        print("webhook statuses:", json.dumps(Counter(str(s) for s in statuses.values())))


# ---------------------------------------------------------------- the database lost while running


async def test_postgresql_lost_while_running_is_said_plainly_and_the_app_recovers(slack, runpod, tmp_path):
    from testkit.pg import PostgresServer

    slack.limits = SlackLimits.off()
    runpod.add_job(EP, "job-db-u1", status="FAILED")
    runpod.add_job(EP, "job-db2-u1", status="FAILED")
    with PostgresServer() as server:
        url = server.create_database("outage")
        async with Replicas(slack, runpod, url, tmp_path, n=2) as cluster:
            server.halt("fast")  # "immediate" with the test server's fsync=off can lose the fresh tables
            started = time.monotonic()
            first = await cluster.command(f"{EP} job-db-u1", replica=0)
            assert first.status == 200 and first.latency < ACK_DEADLINE
            words = "cannot reach its database right now; try again in a minute"
            await wait_until(lambda: words in json.dumps(first.body) + told_privately(slack, first.response_url),
                             15, "the first command told the database is away")
            status, body = await cluster.healthz(1)
            assert status == 503 and body["database"] == "unreachable" and "database" in body["reason"]
            for i in range(2):
                ack = await cluster.click(actions.RETRY, f"{EP}/job-db-u1", message_ts="1.1", replica=i)
                assert ack.status == 200 and ack.latency < ACK_DEADLINE
                await wait_until(lambda a=ack: words in json.dumps(a.body) + told_privately(slack, a.response_url),
                                 15, "the click told the database is away")
            assert not runpod.calls_to("retry")
            print(f"told within {time.monotonic() - started:.1f} s of the outage")

            server.resume()
            back = time.monotonic()
            for i in range(2):
                deadline = time.monotonic() + 30
                while (await cluster.healthz(i))[0] != 200:
                    assert time.monotonic() < deadline, cluster.logs()
                    await asyncio.sleep(0.2)
            print(f"healthy again {time.monotonic() - back:.1f} s after the database returned")
            ack = await cluster.command(f"{EP} job-db2-u1", replica=0)
            assert ack.status == 200 and words not in json.dumps(ack.body)
            await wait_until(lambda: runpod.calls_to("retry"), 15, "the retry after recovery")
