"""Bulk retry (issue 5): `/runpod-retry <endpoint> <job> <job> …` and `/runpod-retry failed <endpoint> [30m]`.
Everything over real loopback HTTP: one parent with paced progress, one summary reply, bounded concurrency."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from bot.core import actions
from testkit.env import SECRETS
from testkit.harness import ACK_DEADLINE, backlog_ahead, job_calls, message_text, queue_edit_backlog, restart_and_end
from testkit.polling import wait_until

EP = "ep1"
CHANNEL = "C1"
CONCURRENCY = 16
FAST = {"RUNPOD_BULK_CONCURRENCY": str(CONCURRENCY), "RUNPOD_FOLLOW_INTERVAL": "0.05"}


# ---------------------------------------------------------------- helpers


def add_jobs(runpod, n: int, prefix: str = "job", **options: Any) -> list[str]:  # type: ignore[no-untyped-def]
    jobs = [f"{prefix}-{i:04d}-u1" for i in range(n)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED", **options)
    return jobs


def retried_jobs(runpod) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(c.job for c in runpod.calls_to("retry"))


def update_times(slack, ts: str) -> list[float]:  # type: ignore[no-untyped-def]
    return [c.at for c in slack.calls_to("chat.update") if c.args.get("ts") == ts]


def assert_paced(slack, ts: str) -> list[str]:  # type: ignore[no-untyped-def]
    """chat.update of one message about once per second (of the test clock) at most; returns each update's text.
    The app paces when it queues an update; Slack's lane may hold one back until the next is due, so two can land
    close together once, never more: n updates span at least n - 2 intervals (an unpaced run would send them all at
    once)."""
    times = update_times(slack, ts)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) < 3 or times[-1] - times[0] >= 0.9 * (len(times) - 2) * slack.time_scale, \
        f"updates of {ts} came too close: {gaps}"
    return [message_text(c.args) for c in slack.calls_to("chat.update") if c.args.get("ts") == ts]


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


async def bulk(app, jobs: list[str], user: str = "U1") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run a bulk retry to its very end; returns the parent message as it looks then."""
    ack = await app.command(f"{EP} " + " ".join(jobs), user=user, channel=CHANNEL)
    assert ack.status == 200 and ack.latency < ACK_DEADLINE, ack
    await app.settle(timeout=60)  # RunPod's /retry limit (100 per 10 s) sets the pace of a long list
    [parent] = app.top_level(CHANNEL)
    return parent


# ---------------------------------------------------------------- the command


async def test_fifty_jobs_one_parent_one_summary_every_job_retried_once_audited_and_followed(
        make_app, mode, runpod, slack):
    app = await make_app(mode, **FAST)
    jobs = add_jobs(runpod, 50)

    parent = await bulk(app, jobs)

    assert retried_jobs(runpod) == jobs, "every job exactly once"
    assert runpod.max_in_flight_by_op["retry"] <= CONCURRENCY
    text = message_text(parent)
    assert "All 50 jobs requeued* on endpoint `ep1`, requested by <@U1>" in text  # not "Retrying" once all answered
    assert "Retrying" not in text and "50 completed" in text and "failed again" not in text
    assert "still running" not in text and "Every requeued job has ended" in text
    [summary] = app.thread(CHANNEL, parent["ts"])
    summary_text = message_text(summary)
    for job in jobs:
        assert f"{job}  requeued, completed" in summary_text, "the table keeps up as jobs end"
    # RunPod's JSON answers are attached, not poured into the thread under the table.
    assert '"job":' not in summary_text and "attached" in summary_text
    [upload] = slack.uploads.values()
    assert [r["job"] for r in json.loads(upload)["results"]] == jobs
    assert_paced(slack, parent["ts"])
    rows = await app.rt.store.history(50)
    assert sorted(r["job"] for r in rows) == jobs
    assert {(r["source"], r["outcome"], r["user"]) for r in rows} == {("bulk", "requeued", "U1")}
    assert not slack.rejected()
    assert not any(secret in app.everything_sent_to_slack() for secret in SECRETS)


async def test_three_hundred_jobs_progress_is_paced_and_the_json_results_come_as_a_file(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 300)
    runpod.latency = 0.06  # the retries take about a second and a half at 16 at a time

    parent = await bulk(app, jobs)

    assert retried_jobs(runpod) == jobs
    assert CONCURRENCY // 2 <= runpod.max_in_flight_by_op["retry"] <= CONCURRENCY
    assert len(app.top_level(CHANNEL)) == 1
    [summary] = app.thread(CHANNEL, parent["ts"])
    assert len(summary["blocks"]) <= 50
    assert "Results for 300 jobs" in message_text(summary) and "attached" in message_text(summary)
    [upload] = slack.uploads.values()
    results = json.loads(upload)
    assert results["endpoint"] == EP
    assert [r["job"] for r in results["results"]] == jobs
    assert {r["http_status"] for r in results["results"]} == {200}
    texts = assert_paced(slack, parent["ts"])
    assert any("of 300 jobs answered so far" in t and "300 of 300" not in t for t in texts), \
        f"no progress shown: {texts}"
    assert "300 completed" in message_text(parent)
    assert not slack.rejected()


async def test_duplicates_are_dropped_whatever_the_separators(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 3)

    ack = await app.command(f"{EP} {jobs[0]} {jobs[1]},{jobs[0]}\n{jobs[2]} , {jobs[1]}", channel=CHANNEL)
    assert ack.status == 200
    await app.settle()

    assert retried_jobs(runpod) == jobs
    [parent] = app.top_level(CHANNEL)
    assert "All 3 jobs requeued" in message_text(parent)


async def test_an_invalid_id_in_a_long_list_runs_nothing_and_names_the_bad_ids_privately(make_app, mode, runpod,
                                                                                         slack):
    app = await make_app(mode, **FAST)
    jobs = add_jobs(runpod, 120)
    text = f"{EP} " + " ".join(jobs[:60]) + " job;rm-rf " + " ".join(jobs[60:]) + " " + "x" * 200

    ack = await app.command(text, channel=CHANNEL)
    await app.settle()

    assert ack.status == 200
    said = message_text(ack.body)
    assert "Nothing was retried" in said and "job;rm-rf" in said and "';'" in said
    assert "200 characters long" in said
    assert ack.body.get("response_type", "ephemeral") == "ephemeral"
    assert not runpod.calls, "nothing may reach RunPod"
    assert not app.posts(CHANNEL)
    assert not slack.rejected()


async def test_a_429_storm_during_a_bulk_retry_is_waited_out_and_every_job_is_requeued(make_app, runpod, slack):
    # In a bulk run a 429 is a wait, not an outcome: every job goes through once RunPod lets it.
    app = await make_app("http", RUNPOD_MAX_ATTEMPTS="2", **FAST)
    jobs = add_jobs(runpod, 40)
    runpod.fault("retry", status=429, headers={"Retry-After": "0"}, times=40)

    parent = await bulk(app, jobs)

    calls = runpod.calls_to("retry")
    assert len(calls) == 40 + 40, "each job: one 429, then requeued"
    assert sorted({c.job for c in calls if c.status == 200}) == jobs
    assert sorted(c.job for c in calls if c.status == 200) == jobs, "each job requeued exactly once"
    rows = await app.rt.store.history(200)
    outcomes = {r["job"]: r["outcome"] for r in rows}
    assert sorted(outcomes) == jobs, "every job has an audited outcome"
    assert set(outcomes.values()) == {"requeued"}
    [summary] = app.thread(CHANNEL, parent["ts"])
    summary_text = message_text(summary)
    for job in jobs:
        assert job in summary_text
    assert "rate-limited" not in summary_text and "limiting requests" not in summary_text
    assert "40 completed" in message_text(parent) and "not retried" not in message_text(parent)
    assert not slack.rejected()


async def test_a_restart_in_the_middle_of_a_bulk_retry_hands_it_over_and_the_next_start_retries_the_rest(
        make_app, runpod, slack):
    app = await make_app("http", RUNPOD_BULK_CONCURRENCY="4", RUNPOD_FOLLOW_INTERVAL="0.05")
    jobs = add_jobs(runpod, 60)
    runpod.latency = 0.2  # 60 jobs at 4 at a time: three seconds, if nothing stopped it

    await app.command(f"{EP} " + " ".join(jobs), channel=CHANNEL)
    await runpod.wait_calls("retry", 4)
    await app.restart()
    reached_before = {c.job for c in runpod.calls_to("retry")}
    assert len(reached_before) < 60, "the restart came half way"

    await wait_until(lambda: len({c.job for c in runpod.calls_to("retry")}) == 60, 30,
                     "the next start retries the jobs the first one did not reach")
    await app.settle()
    calls = runpod.calls_to("retry")
    assert sorted(c.job for c in calls if c.status == 200) == jobs, "each job requeued exactly once"
    outcomes = {r["job"]: r["outcome"] for r in await app.rt.store.history(100)}
    assert sorted(outcomes) == jobs and set(outcomes.values()) == {"requeued"}
    [parent] = app.top_level(CHANNEL)
    [summary] = [m for m in app.thread(CHANNEL, parent["ts"]) if "Results for" in message_text(m)]
    assert "not retried" not in message_text(summary) and "restarting" not in message_text(summary)
    assert all(job in message_text(summary) for job in jobs)
    assert not slack.rejected()


async def test_mixed_outcomes_are_listed_job_by_job(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1", **FAST)
    runpod.add_job(EP, "job-ok", status="FAILED")
    runpod.add_job(EP, "job-again", status="FAILED", after_retry=("IN_PROGRESS", "FAILED"),
                   final_error="CUDA out of memory again")
    runpod.add_job(EP, "job-done", status="COMPLETED")
    runpod.add_job(EP, "job-spent", status="FAILED")
    await app.command(f"{EP} job-spent", channel="C2")  # uses up job-spent's budget of 1 retry per hour
    await app.settle()
    runpod.job(EP, "job-spent").status = "FAILED"

    parent = await bulk(app, ["job-ok", "job-gone", "job-done", "job-again", "job-spent"], user="U2")

    assert [c.job for c in runpod.calls_to("retry")].count("job-spent") == 1, "the budget held"
    summary, mention = app.thread(CHANNEL, parent["ts"])  # job-again failed again after the summary: a mention
    assert "<@U2>, job `job-again` you retried" in message_text(mention) and "failed again" in message_text(mention)
    lines = message_text(summary).splitlines()

    def row(job: str) -> str:
        return next(line for line in lines if line.startswith(job + " "))

    assert row("job-ok").split()[1:] == ["requeued,", "completed"]
    assert row("job-again").split()[1:] == ["requeued,", "failed", "again"]
    assert "not retried: RunPod does not know it" in row("job-gone")
    assert "not retried: the job already completed" in row("job-done")
    assert "Retry limit reached (1 retry per job per hour); next allowed at" in row("job-spent")
    text = message_text(parent)
    assert "1 completed" in text and "1 failed again" in text and "3 not retried" in text
    assert "*2 of 5 jobs requeued · 3 not retried* on endpoint `ep1`, requested by <@U2>" in text
    assert "Failed again:* `job-again`" in text
    rows = {r["job"]: r["outcome"] for r in await app.rt.store.history(20) if r["user"] == "U2"}
    assert rows == {"job-ok": "requeued", "job-again": "requeued", "job-gone": "not_found",
                    "job-done": "not_retryable", "job-spent": "refused:budget"}
    assert not slack.rejected()


async def test_someone_not_allowed_is_refused_privately_and_nothing_runs(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_ALLOWED_USERS="U9", **FAST)
    jobs = add_jobs(runpod, 5)

    ack = await app.command(f"{EP} " + " ".join(jobs), user="U1", channel=CHANNEL)
    await app.settle()

    assert not runpod.calls and not app.posts(CHANNEL)
    assert any("<@U9>" in message_text(r) or "allowed" in message_text(r).lower()
               for r in app.responses(ack.response_url))
    rows = await app.rt.store.history(10)
    assert sorted(r["job"] for r in rows) == jobs and {r["outcome"] for r in rows} == {"refused:access"}


# ---------------------------------------------------------------- `failed`: what failed recently


async def fail_via_webhook(app, runpod, jobs: list[str]) -> None:  # type: ignore[no-untyped-def]
    for job in jobs:
        status, _ = await app.webhook(EP, {"id": job, "status": "FAILED", "error": "CUDA out of memory"})
        assert status == 200
    await app.settle()


async def test_failed_shows_the_count_privately_then_confirm_runs_it_as_a_bulk_retry(make_app, mode, runpod, slack):
    app = await make_app(mode, **FAST)
    jobs = add_jobs(runpod, 3)
    await fail_via_webhook(app, runpod, jobs)

    ack = await app.command(f"failed {EP} 30m", user="U1", channel=CHANNEL)
    await app.settle()

    assert not job_calls(runpod) and not app.posts(CHANNEL), "nothing runs before Confirm"
    [offer] = app.responses(ack.response_url)
    offer_text = message_text(offer)
    assert "3 jobs" in offer_text and "30 minutes" in offer_text and all(job in offer_text for job in jobs)
    assert "3× `CUDA out of memory`" in offer_text
    confirm = buttons(offer)[actions.CONFIRM_FAILED]
    assert actions.CANCEL_FAILED in buttons(offer)

    click = await app.click(actions.CONFIRM_FAILED, confirm["value"], message_ts="1700000000.000999",
                            channel=CHANNEL)
    assert click.status == 200
    await app.settle()

    assert retried_jobs(runpod) == jobs
    [answer] = app.responses(click.response_url)
    assert answer.get("replace_original") is True and "Retrying 3 jobs" in message_text(answer)
    [parent] = app.top_level(CHANNEL)
    assert "All 3 jobs requeued* on endpoint `ep1`" in message_text(parent) and "3 completed" in message_text(parent)
    assert len(app.thread(CHANNEL, parent["ts"])) == 1
    rows = await app.rt.store.history(10)
    assert {r["source"] for r in rows} == {"bulk"}

    again = await app.command(f"failed {EP} 30m", channel=CHANNEL)
    await app.settle()
    assert "No job of endpoint `ep1` was seen failing" in message_text(app.responses(again.response_url)[0])
    assert not slack.rejected()


async def test_failed_with_nothing_recent_is_told_privately(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    await fail_via_webhook(app, runpod, add_jobs(runpod, 2))  # on ep1, not on ep2

    ack = await app.command("failed ep2", channel=CHANNEL)
    await app.settle()

    [told] = app.responses(ack.response_url)
    assert "No job of endpoint `ep2`" in message_text(told) and "30 minutes" in message_text(told)
    assert not job_calls(runpod) and not app.posts(CHANNEL)


async def test_failed_leaves_out_jobs_already_retried_and_cancel_runs_nothing(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 3)
    await fail_via_webhook(app, runpod, jobs)
    await app.command(f"{EP} {jobs[0]}", channel="C2")  # retried by hand already
    await app.settle()

    ack = await app.command(f"failed {EP} 1h", channel=CHANNEL)
    await app.settle()
    [offer] = app.responses(ack.response_url)
    assert "2 jobs" in message_text(offer) and jobs[0] not in message_text(offer)

    click = await app.click(actions.CANCEL_FAILED, buttons(offer)[actions.CANCEL_FAILED]["value"],
                            message_ts="1700000000.000999", channel=CHANNEL)
    await app.settle()
    assert click.status == 200
    assert "nothing was retried" in message_text(app.responses(click.response_url)[0]).lower()
    assert retried_jobs(runpod) == [jobs[0]] and not app.posts(CHANNEL)


async def test_a_restart_while_bulk_jobs_run_keeps_the_parents_tally_going(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 4, after_retry=("IN_PROGRESS",) * 6 + ("COMPLETED",))
    await app.command(f"{EP} " + " ".join(jobs), user="U1", channel=CHANNEL)
    await slack.wait_for(lambda s: app.top_level(CHANNEL) and app.thread(CHANNEL, app.top_level(CHANNEL)[0]["ts"]))
    [parent] = app.top_level(CHANNEL)
    assert not any(runpod.job(EP, job).status == "COMPLETED" for job in jobs), "still running at the restart"

    await app.restart()  # the follows resume quietly and report to the same parent message
    await app.settle(timeout=20)

    assert len(runpod.calls_to("retry")) == 4
    shown = message_text(slack.messages[(CHANNEL, parent["ts"])])
    assert "4 completed" in shown and "still running" not in shown, shown
    assert "following job" not in app.thread_text(CHANNEL, parent["ts"]), "quiet follows post nothing of their own"
    assert_paced(slack, parent["ts"])
    assert not slack.rejected()


def refuse_claims(app, failures: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """The database refuses to take these jobs' claims, this many times each (PostgreSQL restarting)."""
    from bot.store import StoreUnavailable

    real_claim = app.rt.store.claim

    async def claim(endpoint: str, job: str, user: str, now: float) -> Any:
        if failures.get(job):
            failures[job] -= 1
            raise StoreUnavailable("PostgreSQL is restarting")
        return await real_claim(endpoint, job, user, now)

    app.rt.store.claim = claim


async def test_a_bulk_job_the_database_stops_before_its_retry_is_sent_is_retried_once_it_is_back(
        make_app, runpod, slack):
    """A PostgreSQL restart in the middle of a run: jobs whose claim the database could not take are tried again
    when it is back, not summarised "not retried" for an outage the run outlived. Nothing had reached RunPod."""

    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 4)
    refuse_claims(app, {jobs[1]: 2, jobs[2]: 1})
    await bulk(app, jobs)
    assert retried_jobs(runpod) == jobs, "every job exactly once"
    summary = "\n".join(message_text(m) for m in app.thread(CHANNEL, app.top_level(CHANNEL)[0]["ts"]))
    assert "unreachable" not in summary and "not retried" not in summary, summary


async def test_a_bulk_job_whose_claim_outlived_the_outage_is_retried_not_refused_as_already_being_retried(
        make_app, runpod, slack):
    """The database went away after a job's claim was taken (or wrote the claim and lost its answer), before its
    retry was sent, and stayed away for the claim's release too. Tried again once it is back, the job meets no claim
    of its own: it is retried, not summarised "already being retried (by you, a moment ago)"."""
    from bot.store import StoreUnavailable

    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 4)
    store = app.rt.store
    real_claim, real_accept, real_release = store.claim, store.accept, store.release
    claim_answer_lost = {jobs[2]}
    record_fails = {jobs[1]}
    release_fails = {jobs[1]: 3, jobs[2]: 3}

    async def claim(endpoint: str, job: str, user: str, now: float) -> Any:
        taken = await real_claim(endpoint, job, user, now)
        if job in claim_answer_lost:  # written, and then the connection dropped before the answer came
            claim_answer_lost.discard(job)
            raise StoreUnavailable("connection lost at the commit")
        return taken

    async def accept(kind: str, payload: dict[str, Any], now: float) -> int:
        if kind == "retry" and payload.get("job") in record_fails:
            record_fails.discard(str(payload["job"]))
            raise StoreUnavailable("PostgreSQL is restarting")
        return await real_accept(kind, payload, now)

    async def release(endpoint: str, job: str, at: float | None = None) -> None:
        if release_fails.get(job):
            release_fails[job] -= 1
            raise StoreUnavailable("PostgreSQL is restarting")
        await (real_release(endpoint, job) if at is None else real_release(endpoint, job, at))

    store.claim, store.accept, store.release = claim, accept, release  # type: ignore[method-assign]
    await bulk(app, jobs)
    assert retried_jobs(runpod) == jobs, "every job exactly once"
    summary = "\n".join(message_text(m) for m in app.thread(CHANNEL, app.top_level(CHANNEL)[0]["ts"]))
    assert "already being retried" not in summary and "not retried" not in summary, summary
    # The claim whose answer was lost is not left behind either: every job can be retried again once it ended.
    for _ in range(100):
        held = [job for job in jobs if await store.claimed(EP, job) is not None]
        if not held:
            break
        await asyncio.sleep(0.1)
    assert not held, f"claims left behind: {held}"


async def test_a_bulk_job_waiting_out_an_outage_leaves_its_slot_to_the_runs_other_jobs(make_app, runpod, slack):
    """One RunPod call at a time (RUNPOD_BULK_CONCURRENCY=1) and the first job's claim refused by the database: while
    that job pauses for the database, the others go ahead; it is retried after them, once."""

    app = await make_app("http", RUNPOD_BULK_CONCURRENCY="1", RUNPOD_FOLLOW_INTERVAL="0.05")
    jobs = add_jobs(runpod, 3)
    refuse_claims(app, {jobs[0]: 1})
    await bulk(app, jobs)
    assert [c.job for c in runpod.calls_to("retry")] == [jobs[1], jobs[2], jobs[0]]


async def test_endings_told_after_a_restart_redraw_the_tally_ahead_of_edits_queued_since_the_retry(
        make_app, runpod, slack):
    """Chaos seed 130: a bulk run's follows, taken over after two deaths, told their endings late, and the tally that
    shows them queued behind every edit queued since (chat.update is ~50 a minute for the whole app): shown 46-51 s
    after the jobs ended. Late already, the tally now takes the retry's turn among the edits."""
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 4, after_retry=("IN_PROGRESS",))
    await app.command(f"{EP} " + " ".join(jobs), user="U1", channel=CHANNEL)
    await wait_until(lambda: len(app.rt.follower) == 4, 5, "the jobs retried and followed")
    await app.rt.outbox.idle()
    [parent] = app.top_level(CHANNEL)
    await queue_edit_backlog(app, slack)

    await restart_and_end(app, runpod, EP, jobs)

    # Only what left in Slack's burst before the resumed follows looked at RunPod goes ahead of it (all 20 did).
    assert backlog_ahead(slack, parent["ts"], "4 completed") <= 10
