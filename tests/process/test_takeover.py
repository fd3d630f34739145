"""Defects the chaos run (test_chaos.py) found, each reproduced on its own with real replicas on a real PostgreSQL:
a job's ending through a database outage and through a kill -9, and the retry budget through an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core import actions, messages
from bot.core.groups import JobResult
from testkit.env import BOT_TOKEN, RUNPOD_KEY
from testkit.fakes import FakeRunPod, FakeSlack, SlackFault, SlackLimits
from testkit.harness import button_value, message_text
from testkit.pg import PostgresServer
from testkit.polling import wait_until
from testkit.replicas import Replicas
from tests.process.chaos import app_tracebacks

EP = "ep1"
ALERTS = "CALERTS"
FAILED = {"status": "FAILED", "error": "CUDA out of memory", "executionTime": 1200, "delayTime": 300}
DONE = {"marker": "ending-5f1c9a"}  # in RunPod's final answer: the ending's post quotes it


@pytest.fixture
async def stand_ins() -> AsyncIterator[tuple[FakeSlack, FakeRunPod]]:
    slack = FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits.off())
    runpod = FakeRunPod(default_key=RUNPOD_KEY)
    await slack.start()
    await runpod.start()
    yield slack, runpod
    await slack.stop()
    await runpod.stop()


@pytest.fixture
def server() -> Any:
    """A PostgreSQL of this test's own: it is stopped and started again under the replicas."""
    with PostgresServer() as pg:
        yield pg


def endings(slack: FakeSlack) -> list[Any]:
    """Posts that said how the job ended (they quote RunPod's final answer)."""
    return [c for c in slack.accepted("chat.postMessage") if DONE["marker"] in message_text(c.args)]


async def alerted_and_retried(cluster: Replicas, slack: FakeSlack, runpod: FakeRunPod, job: str,
                              replica: int) -> dict[str, Any]:
    runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS",))
    assert await cluster.webhook(EP, {"id": job, **FAILED}, replica=replica) == 200

    def alert() -> dict[str, Any] | None:
        return next((m for (c, _), m in slack.messages.items() if c == ALERTS and not m.get("thread_ts")
                     and job in message_text(m)), None)

    posted = await wait_until(alert, 10, "the alert")
    await cluster.click(actions.RETRY, button_value(posted, actions.RETRY), message_ts=posted["ts"], replica=replica)
    await wait_until(lambda: runpod.requeued()[(EP, job)] == 1, 10, "the retry")
    await wait_until(lambda: any(c.job == job for c in runpod.calls_to("status")), 10, "the follow's first check")
    return posted


def complete(runpod: FakeRunPod, job: str) -> None:
    state = runpod.job(EP, job)
    state.status, state.output = "COMPLETED", dict(DONE)


async def test_a_job_that_ends_while_the_database_is_away_has_its_ending_posted_once_it_is_back(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any) -> None:
    """Issue 17, defect 2: the follow used to die when it could neither queue the ending nor drop the follow, and
    its replica, still alive, kept the follow leased: nobody posted the ending."""
    slack, runpod = stand_ins
    url = server.create_database("ending")
    async with Replicas(slack, runpod, url, tmp_path, n=1, RUNPOD_FOLLOW_INTERVAL="0.3") as cluster:
        alert = await alerted_and_retried(cluster, slack, runpod, "job-out-u1", 0)
        server.halt("fast")
        complete(runpod, "job-out-u1")
        # The follow sees the job end while the database is away (its checks go on: RunPod is reachable).
        await wait_until(lambda: any(c.job == "job-out-u1" and (c.body or {}).get("status") == "COMPLETED"
                                     for c in runpod.calls_to("status")), 15, "the follow seeing the job end")
        await asyncio.sleep(3.0)
        assert not endings(slack)
        server.resume()
        back = time.monotonic()
        await wait_until(lambda: endings(slack), 30, "the ending, once the database is back")
        print(f"ending posted {time.monotonic() - back:.1f} s after the database came back")
        # The alert itself says so too: its redraw was skipped during the outage, and the alert stayed "requeued".
        await wait_until(lambda: "Retried RunPod job completed" in message_text(slack.messages[(ALERTS, alert["ts"])]),
                         15, "the alert showing the job completed")
        await asyncio.sleep(2.0)
        assert len(endings(slack)) == 1
        assert not app_tracebacks(cluster[0].text()), app_tracebacks(cluster[0].text())


async def test_an_ending_waiting_in_the_outbox_when_its_replica_dies_is_posted_once(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any) -> None:
    """Issue 17, defect 4: the ending was queued (Slack failing), its replica was killed -9; the replica that
    adopted the queued post sent it, and the one that adopted the follow ran it again and posted it again."""
    slack, runpod = stand_ins
    url = server.create_database("twice")
    async with Replicas(slack, runpod, url, tmp_path, n=2, RUNPOD_FOLLOW_INTERVAL="0.3") as cluster:
        await alerted_and_retried(cluster, slack, runpod, "job-k9-u1", 0)
        # Slack fails the next posts (the ending among them): it waits in replica 0's outbox, retried with back-off.
        slack.script("chat.postMessage", *[SlackFault(503)] * 4)
        complete(runpod, "job-k9-u1")
        await wait_until(lambda: any(DONE["marker"] in message_text(c.args) and not c.ok
                                     for c in slack.calls_to("chat.postMessage")), 15,
                         "the ending tried and refused by Slack")
        await cluster.kill(0)
        killed = time.monotonic()
        await wait_until(lambda: endings(slack), 40, "the ending, sent by the replica that adopted it")
        print(f"ending posted {time.monotonic() - killed:.1f} s after kill -9")
        # Replica 1 adopts the follow too (its lease ran out with the outbox row's, 15 s; adoption every 5 s), and
        # finishes it: nothing more may be posted.
        await asyncio.sleep(max(0.0, killed + 25 - time.monotonic()))
        deadline = time.monotonic() + 20
        while (await cluster.healthz(1))[1].get("following") != 0:
            assert time.monotonic() < deadline, cluster[1].tail(40)
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        assert len(endings(slack)) == 1, [message_text(c.args)[:100] for c in endings(slack)]


async def test_a_retry_answered_while_the_database_is_away_still_counts_toward_the_hourly_budget(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any) -> None:
    """Issue 17, defect 5: "could not write the audit record" (with a traceback) dropped the retry from the hourly
    budget, so the job could be retried once more than the limit allows."""
    slack, runpod = stand_ins
    url = server.create_database("budget")
    job = "job-bud-u1"
    async with Replicas(slack, runpod, url, tmp_path, n=1, RUNPOD_RETRY_MAX_PER_JOB="1",
                        RUNPOD_FOLLOW_INTERVAL="0.3") as cluster:
        runpod.add_job(EP, job, status="FAILED", after_retry=("FAILED",))
        assert await cluster.webhook(EP, {"id": job, **FAILED}) == 200
        # RunPod takes 2 s to answer the retry (within RUNPOD_TIMEOUT): the database goes away in the meantime.
        runpod.fault("retry", delay=2.0)
        first = await cluster.command(f"{EP} {job}")
        assert first.status == 200
        await wait_until(lambda: runpod.calls_to("retry"), 10, "the retry sent")
        server.halt("fast")
        await wait_until(lambda: runpod.requeued()[(EP, job)] == 1, 10, "RunPod taking the retry")
        await asyncio.sleep(3.0)
        server.resume()
        deadline = time.monotonic() + 30
        while (await cluster.healthz(0))[0] != 200 or (await cluster.healthz(0))[1].get("following"):
            assert time.monotonic() < deadline, cluster[0].tail(60)
            await asyncio.sleep(0.5)
        await asyncio.sleep(12.0)  # a record written again after the outage has been written by now

        # The retry is in the audit trail: `history` shows it, and the hourly budget (1) counts it.
        history = await cluster.command("history 5")
        await wait_until(lambda: slack.responses.get(history.response_url), 10, "the history")
        shown = "\n".join(message_text(r) for r in slack.responses[history.response_url])
        assert job in shown, shown
        second = await cluster.command(f"{EP} {job}")
        assert second.status == 200
        await asyncio.sleep(6.0)  # a second retry would have reached RunPod by now
        assert runpod.requeued()[(EP, job)] == 1, runpod.describe()


async def retry_all_with_summary_queued(cluster: Replicas, slack: FakeSlack, runpod: FakeRunPod, *,
                                       failures: list[int], faults: list[SlackFault]) -> tuple[list[str], Any]:
    """A grouped alert of 6 jobs (failure n delivered to replica `failures[n]`), Retry all clicked on replica 0, which
    retries every job and queues the summary while Slack answers posts with `faults`. Returns the jobs and a function
    listing the summary's posts."""
    jobs = [f"job-s{n}-u1" for n in range(6)]
    for job, replica in zip(jobs, failures, strict=True):
        runpod.add_job(EP, job, status="FAILED")
        assert await cluster.webhook(EP, {"id": job, **FAILED}, replica=replica) == 200

    def grouped() -> dict[str, Any] | None:
        return next((m for (c, _), m in slack.messages.items() if c == ALERTS and not m.get("thread_ts")
                     and any(el.get("action_id") == actions.RETRY_ALL for b in m.get("blocks") or []
                             for el in b.get("elements") or [])), None)

    storm = await wait_until(grouped, 15, "the grouped alert")
    listed = await wait_until(lambda: all(job in "\n".join(message_text(m) for (c, _), m in slack.messages.items()
                                                          if m.get("thread_ts") == storm["ts"]) for job in jobs)
                              and grouped(), 15, "every job listed")
    await wait_until(lambda: str(len(jobs)) in message_text(grouped() or {}), 15, "the grouped alert counting all")
    await asyncio.sleep(2.0)  # every replica's paced redraw has landed
    storm = grouped() or listed
    # Slack refuses posts for a while: the summary waits in replica 0's outbox when replica 0 dies.
    slack.script("chat.postMessage", *faults)
    await cluster.click(actions.RETRY_ALL, button_value(storm, actions.RETRY_ALL), message_ts=storm["ts"],
                        replica=0)
    head = messages.bulk_summary(EP, [JobResult(j, "requeued") for j in jobs], "x.json")[0]["text"].split(":")[0]

    def summaries() -> list[Any]:
        return [c for c in slack.calls_to("chat.postMessage") if str(c.args.get("text") or "").startswith(head)]

    await wait_until(lambda: len(runpod.requeued()) == len(jobs) and summaries(), 20,
                     "every job retried and the summary tried")
    return jobs, summaries


async def nothing_left_to_finish(cluster: Replicas) -> None:
    """Replica 1 has adopted the Retry all's row too and found its summary queued, so it finished nothing a second
    time; then a few seconds more, in which a second summary queued by mistake would be out."""
    await wait_until(lambda: "summary is queued already" in cluster[1].text(), 60,
                     lambda: "replica 1 taking the Retry all over and finding its summary queued\n" + cluster.logs())
    await asyncio.sleep(5.0)


async def test_a_retry_all_whose_replica_dies_with_its_summary_queued_posts_one_summary(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any) -> None:
    """The chaos run found a grouped alert's Retry all summarised three times: each replica that took the run over
    after a death posted the summary again, the first one's still queued or already sent."""
    slack, runpod = stand_ins
    url = server.create_database("storm")
    async with Replicas(slack, runpod, url, tmp_path, n=2, RUNPOD_STORM_THRESHOLD="3") as cluster:
        _jobs, summaries = await retry_all_with_summary_queued(cluster, slack, runpod, failures=[0] * 6,
                                                               faults=[SlackFault(503)] * 3)
        await cluster.kill(0)
        await wait_until(lambda: [c for c in summaries() if c.ok], 60, "the summary, posted after the takeover")
        await nothing_left_to_finish(cluster)
        assert len([c for c in summaries() if c.ok]) == 1, [c.at for c in summaries() if c.ok]
        assert set(runpod.requeued().values()) == {1}


@pytest.mark.parametrize("death", ["kill -9", "SIGTERM"])
async def test_a_retry_all_taken_over_by_a_replica_that_knows_the_storm_posts_one_summary(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any, death: str) -> None:
    """Seed 2 of the chaos run: a Retry all taken over after its replica stopped still posted its summary twice. The
    replica taking it over had the storm in memory already (failures of it had reached that replica too), and the
    storm it read back from the database lost the mark saying the summary was queued."""
    slack, runpod = stand_ins
    url = server.create_database("known")
    async with Replicas(slack, runpod, url, tmp_path, n=2, RUNPOD_STORM_THRESHOLD="3") as cluster:
        # The storm opens on replica 0; its later failures reach replica 1, which keeps the storm from then on.
        # A SIGTERM gives replica 0 8 s to finish: Slack holds the summary back longer than that, with rate limits (a
        # post failing with errors would be said through the click's response_url after 5 s instead).
        faults = [SlackFault(503)] * 3 if death == "kill -9" else [SlackFault(429, headers={"Retry-After": "3"})] * 4
        _jobs, summaries = await retry_all_with_summary_queued(cluster, slack, runpod, failures=[0, 0, 0, 1, 1, 1],
                                                               faults=faults)
        if death == "kill -9":
            await cluster.kill(0)
        else:
            await cluster.term(0)
        await wait_until(lambda: [c for c in summaries() if c.ok], 60,
                         lambda: "the summary, posted after the takeover\n" + cluster.logs())
        await nothing_left_to_finish(cluster)
        assert len([c for c in summaries() if c.ok]) == 1, [c.at for c in summaries() if c.ok]
        assert set(runpod.requeued().values()) == {1}
        assert "took on" in cluster[1].text(), "replica 1 took the run over"


async def test_a_dead_replicas_follow_is_taken_over_about_a_second_after_its_lease_runs_out(
        stand_ins: tuple[FakeSlack, FakeRunPod], server: PostgresServer, tmp_path: Any) -> None:
    """Chaos seed 130: a follow taken over twice in a row (its first adopter was killed too) showed its ending 36 s
    after the job ended. Adoption was looked for only at each lease renewal, every 5 s: up to 5 s more per takeover.
    It is looked for every second now."""
    import asyncpg

    slack, runpod = stand_ins
    url = server.create_database("adopt_soon")
    async with Replicas(slack, runpod, url, tmp_path, n=2, RUNPOD_FOLLOW_INTERVAL="0.3") as cluster:
        await alerted_and_retried(cluster, slack, runpod, "job-soon-u1", 0)
        await cluster.kill(0)
        complete(runpod, "job-soon-u1")
        conn = await asyncpg.connect(url)
        try:
            lease_until = float(await conn.fetchval("SELECT lease_until FROM follows WHERE job = $1", "job-soon-u1"))
        finally:
            await conn.close()
        [ending] = await wait_until(lambda: endings(slack), 40, "the ending, said by the replica that took over")
        shown = time.time() - (time.monotonic() - ending.at)  # the stand-in times calls on the monotonic clock
        print(f"ending posted {shown - lease_until:.1f} s after the dead replica's lease ran out")
        assert shown - lease_until < 3.5, cluster[1].tail(30)
