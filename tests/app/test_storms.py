"""Alert storms (issue 5): many failures of one endpoint in a short time give one grouped alert, kept current
in a paced way, with Retry all and Status. Everything over real loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import pytest

from bot.core import actions
from testkit.harness import (
    ACK_DEADLINE,
    alert_completed,
    backlog_ahead,
    database_held,
    job_calls,
    message_text,
    queue_edit_backlog,
    restart_and_end,
)
from testkit.polling import wait_until

EP = "ep1"
ALERTS = "CALERTS"
FAST = {"RUNPOD_BULK_CONCURRENCY": "16", "RUNPOD_FOLLOW_INTERVAL": "0.05"}
DATE = re.compile(r"<!date\^(\d+)\^")


# ---------------------------------------------------------------- helpers


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


async def fail(app, jobs: list[str], errors: list[str] | None = None, concurrency: int = 1) -> None:  # type: ignore[no-untyped-def]
    """RunPod's webhook reports each job FAILED, `concurrency` requests at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: str, error: str) -> None:
        async with gate:
            status, answer = await app.webhook(EP, {"id": job, "status": "FAILED", "error": error})
            assert status == 200, answer

    errors = errors or ["CUDA out of memory"] * len(jobs)
    await asyncio.gather(*(one(job, error) for job, error in zip(jobs, errors, strict=True)))


def add_jobs(runpod, n: int, **options: Any) -> list[str]:  # type: ignore[no-untyped-def]
    jobs = [f"job-{i:04d}-u1" for i in range(n)]
    for job in jobs:
        runpod.add_job(EP, job, status="FAILED", **options)
    return jobs


def grouped(app) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]


def singles(app) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" not in message_text(m)]


def assert_paced(slack, ts: str) -> None:  # type: ignore[no-untyped-def]
    """The grouped alert and its job list pages are written about once per second (of the test clock) at most, per
    Slack method (Slack limits chat.update per method and chat.postMessage per channel, not the two together). On
    average: on the shrunk clock, a few milliseconds of latency are a good part of a pacing interval."""
    pages = {m["ts"] for m in slack.messages.values() if m.get("thread_ts") == ts and "Failed jobs" in m["text"]}
    for method, wrote in (("chat.update", lambda c: c.args.get("ts") in {ts, *pages}),
                          ("chat.postMessage", lambda c: c.args.get("thread_ts") == ts
                           and "Failed jobs" in c.args.get("text", ""))):
        times = [c.at for c in slack.calls if c.method == method and wrote(c)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert not gaps or sum(gaps) / len(gaps) >= 0.9 * slack.time_scale, f"{method} came too close: {gaps}"


async def storm_of(app, runpod, n: int, **options: Any) -> tuple[list[str], dict[str, Any]]:  # type: ignore[no-untyped-def]
    jobs = add_jobs(runpod, n, **options)
    await fail(app, jobs)
    await app.settle()
    [alert] = grouped(app)
    return jobs, alert


def current(app, msg: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return app.slack.messages[(ALERTS, msg["ts"])]


# ---------------------------------------------------------------- grouping


@pytest.mark.real_time  # how many redraws and health checks a storm of this length takes is counted in real time
async def test_three_hundred_failure_webhooks_give_one_grouped_alert_with_counts_errors_and_the_job_list(
        make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = [f"job-{i:04d}-u1" for i in range(300)]
    errors = (["CUDA out of memory. Tried to allocate 2.00 GiB\nTraceback (most recent call last): …"] * 200
              + ["ValueError: width must be divisible by 64"] * 60 + ["Worker exited unexpectedly"] * 30
              + ["TimeoutError: model load"] * 10)
    started = time.time()

    await fail(app, jobs, errors, concurrency=25)
    await fail(app, jobs[:20], errors[:20], concurrency=5)  # RunPod redelivers some
    await app.settle()

    assert len(singles(app)) == 4, "the failures before the threshold keep their own alerts"
    [alert] = grouped(app)
    text = message_text(alert)
    assert "300 jobs failed on endpoint ep1" in text
    assert "200× `CUDA out of memory. Tried to allocate 2.00 GiB`" in text
    assert "60× `ValueError: width must be divisible by 64`" in text and "30× `Worker exited unexpectedly`" in text
    assert "TimeoutError" not in text, "the top three errors only"
    assert "The first 4 also got alerts of their own" in text
    deadline_line = next(line for line in text.splitlines() if line.startswith("Retry before"))
    assert abs(int(DATE.findall(deadline_line)[0]) - (started + 30 * 60)) < 10
    retry_all = buttons(alert)[actions.RETRY_ALL]
    assert retry_all["style"] == "primary" and "Retry 300 jobs?" in message_text({"blocks": [retry_all["confirm"]]})
    assert actions.STORM_STATUS in buttons(alert)
    # The job list's pages follow the grouped alert; on a busy machine the second was seen still on its way when
    # settle() returned (a run with `pytest -n 4`): wait for it (up to 10 s) before looking at them.
    def list_pages() -> list[dict[str, Any]]:
        return [m for m in app.thread(ALERTS, alert["ts"]) if m["text"].startswith("Failed jobs")]

    await slack.wait_for(lambda s: len(list_pages()) >= 2, 10)
    pages = list_pages()
    assert len(pages) == 2 and "Failed jobs 1–200 of 300" in message_text(pages[0])
    listed = app.thread_text(ALERTS, alert["ts"])
    assert all(job in listed for job in jobs)
    assert len(slack.calls_to("chat.postMessage")) == 4 * 2 + 1 + 2 + 1, \
        "four singles (each with its whole error in its thread), one grouped alert, two pages, one whole error of " \
        "each kind"
    assert len(slack.calls_to("chat.update")) <= 10
    assert_paced(slack, alert["ts"])
    assert not job_calls(runpod)
    assert len(runpod.calls_to("health")) == 1, "300 alerts, one health check: it is cached per endpoint"
    assert not slack.rejected()


async def test_failures_spread_out_or_on_several_endpoints_keep_single_alerts(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_STORM_WINDOW="1", **FAST)
    for endpoint in ("ep1", "ep2"):
        for n in range(3):
            await app.webhook(endpoint, {"id": f"{endpoint}-job-{n}", "status": "FAILED", "error": "boom"})
    await asyncio.sleep(1.1)  # past the storm window
    for n in range(3, 6):
        await app.webhook("ep1", {"id": f"ep1-job-{n}", "status": "FAILED", "error": "boom"})
    await app.settle()

    assert not grouped(app)
    assert len(singles(app)) == 9


# ---------------------------------------------------------------- Retry all


async def test_retry_all_retries_every_job_once_follows_each_to_its_end_and_shows_the_tally(
        make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs = add_jobs(runpod, 36)
    for job in add_jobs(runpod, 40)[36:]:  # four more, that will fail again after the retry
        runpod.add_job(EP, job, status="FAILED", after_retry=("IN_PROGRESS", "FAILED"), final_error="OOM again")
        jobs.append(job)
    await fail(app, jobs)
    [alert] = await slack.wait_for(lambda s: [m for m in grouped(app) if "40 jobs failed" in message_text(m)])
    retry_all = buttons(alert)[actions.RETRY_ALL]
    assert "Retry 40 jobs?" in message_text({"blocks": [retry_all["confirm"]]})

    click = await app.click(actions.RETRY_ALL, retry_all["value"], message_ts=alert["ts"], user="U7")
    assert click.status == 200 and click.latency < ACK_DEADLINE
    await app.settle(timeout=20)

    assert sorted(c.job for c in runpod.calls_to("retry")) == jobs, "every job exactly once"
    rows = await app.rt.store.history(100)
    assert {(r["source"], r["user"]) for r in rows} == {("retry_all", "U7")} and len(rows) == 40
    final = message_text(current(app, alert))
    assert "*Retry all* by <@U7>" in final
    assert "36 completed · :red_circle: 4 failed again" in final and "still running" not in final
    assert all(job in final for job in jobs[36:]), "the jobs that failed again are named"
    assert actions.RETRY_ALL not in buttons(current(app, alert)), "nothing is left to retry"
    thread = app.thread(ALERTS, alert["ts"])
    summaries = [m for m in thread if "Results for 40 jobs" in message_text(m)]
    assert len(summaries) == 1
    listed = message_text(thread[0])
    assert f"{jobs[0]}" in listed and "→ requeued, completed" in listed and "→ requeued, failed again" in listed
    for single in singles(app):  # alerted before the storm; retried by Retry all, and kept current
        assert alert_completed(current(app, single))
    assert_paced(slack, alert["ts"])
    assert not slack.rejected()


async def test_retry_all_clicked_twice_at_once_runs_once(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs, alert = await storm_of(app, runpod, 20)
    runpod.latency = 0.05
    value = buttons(alert)[actions.RETRY_ALL]["value"]

    first, second = await asyncio.gather(app.click(actions.RETRY_ALL, value, message_ts=alert["ts"], user="U7"),
                                         app.click(actions.RETRY_ALL, value, message_ts=alert["ts"], user="U8"))
    await app.settle(timeout=20)

    assert sorted(c.job for c in runpod.calls_to("retry")) == jobs
    told = [message_text(r) for ack in (first, second) for r in app.responses(ack.response_url)]
    assert len(told) == 1 and ("under way" in told[0] or "already retried" in told[0]), told
    summaries = [m for m in app.thread(ALERTS, alert["ts"]) if "Results for" in message_text(m)]
    assert len(summaries) == 1


async def test_status_posts_a_tally_of_the_jobs_states_in_the_thread(make_app, mode, runpod, slack):
    app = await make_app(mode, **FAST)
    jobs, alert = await storm_of(app, runpod, 8)
    runpod.job(EP, jobs[0]).status = "COMPLETED"
    runpod.expire(EP, jobs[1])

    click = await app.click(actions.STORM_STATUS, buttons(alert)[actions.STORM_STATUS]["value"],
                            message_ts=alert["ts"], user="U3")
    await app.settle()

    assert click.status == 200
    assert sorted(c.job for c in runpod.calls_to("status")) == sorted(jobs) and not runpod.calls_to("retry")
    [status] = [m for m in app.thread(ALERTS, alert["ts"]) if "Status of the 8 jobs" in message_text(m)]
    text = message_text(status)
    assert "6 failed" in text and "1 completed" in text and "1 no longer known to RunPod" in text and "<@U3>" in text
    assert not slack.rejected()


async def test_a_storm_survives_a_restart_keeps_collecting_and_retry_all_still_works(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs, alert = await storm_of(app, runpod, 6)

    await app.restart()
    late = add_jobs(runpod, 7)[6]
    await fail(app, [late])
    await app.settle()

    assert len(grouped(app)) == 1 and len(singles(app)) == 4, "no new alert after the restart"
    assert "7 jobs failed on endpoint ep1" in message_text(current(app, alert))
    assert late in app.thread_text(ALERTS, alert["ts"])
    await app.click(actions.RETRY_ALL, buttons(current(app, alert))[actions.RETRY_ALL]["value"],
                    message_ts=alert["ts"])
    await app.settle(timeout=20)
    assert sorted(c.job for c in runpod.calls_to("retry")) == sorted([*jobs, late])
    assert "7 completed" in message_text(current(app, alert))
    assert not slack.rejected()


async def test_retry_all_followed_jobs_are_counted_after_a_restart(make_app, runpod, slack):
    app = await make_app("http", **FAST)
    jobs, alert = await storm_of(app, runpod, 5, after_retry=("IN_PROGRESS",) * 8 + ("COMPLETED",))
    await app.click(actions.RETRY_ALL, buttons(alert)[actions.RETRY_ALL]["value"], message_ts=alert["ts"])
    await runpod.wait_calls("retry", 5)
    await slack.wait_for(lambda s: any("Results for 5 jobs" in message_text(m)
                                       for m in app.thread(ALERTS, alert["ts"])))

    assert not any(runpod.job(EP, job).status == "COMPLETED" for job in jobs), "still running at the restart"
    polled = len(runpod.calls_to("status"))

    await app.restart()  # the jobs are still running: their follows resume, and report to the grouped alert
    await app.settle(timeout=20)

    assert len(runpod.calls_to("status")) > polled, "the follows resumed after the restart"
    assert len(runpod.calls_to("retry")) == 5
    assert "5 completed" in message_text(current(app, alert))
    assert not slack.rejected()


async def test_retry_all_endings_told_after_a_restart_redraw_the_grouped_alert_ahead_of_edits_queued_since(
        make_app, runpod, slack):
    """As a bulk run's tally (test_bulk.py): endings told late take the retry's turn among the edits, so the grouped
    alert that counts them does not wait behind every edit queued since (chat.update is ~50 a minute for the app)."""
    app = await make_app("http", **FAST)
    jobs, alert = await storm_of(app, runpod, 5, after_retry=("IN_PROGRESS",))
    await app.click(actions.RETRY_ALL, buttons(alert)[actions.RETRY_ALL]["value"], message_ts=alert["ts"])
    await runpod.wait_calls("retry", 5)
    await wait_until(lambda: len(app.rt.follower) == 5, 5, "the jobs followed")
    await app.rt.outbox.idle()
    await queue_edit_backlog(app, slack)

    await restart_and_end(app, runpod, EP, jobs)

    assert backlog_ahead(slack, alert["ts"], "5 completed") <= 10


def test_the_biggest_groups_stay_inside_slacks_block_kit_limits():
    """1000 jobs with the longest IDs and errors: every grouped message is one Slack accepts."""
    from bot.core import messages
    from bot.core.groups import JobResult, Storm, StormJob
    from bot.work.storms import PAGE_SIZE
    from testkit.fakes.slack import block_problems

    jobs = [f"{n:04d}-" + "j" * 123 for n in range(1000)]
    error = "RuntimeError: " + "&<>`*_~ " * 400
    storm = Storm("e" * 128, ALERTS, 1.0, 2.0, {job: StormJob("FAILED", f"{n % 7} {error}", 1.0)
                                                for n, job in enumerate(jobs)}, singles=4)
    storm.requested = jobs
    storm.results = {job: JobResult(job, "not_found", 404, None, "not found: " + error[:200]) for job in jobs}
    results = list(storm.results.values())
    summary, attachment = messages.bulk_summary(storm.endpoint, results, "f.json")
    built = [messages.storm_alert(storm, 3.0), summary,
             *(messages.storm_jobs_page(storm, page, PAGE_SIZE) for page in range(storm.page_count(PAGE_SIZE))),
             messages.bulk_parent("U1", storm.endpoint, storm.tally(), jobs),
             messages.failed_offer(storm.endpoint, 1800, [{"job": job, "error": error} for job in jobs], 5)]
    for msg in built:
        assert not block_problems(msg["blocks"]), block_problems(msg["blocks"])
        assert len(msg["text"]) <= 3000
    assert attachment is not None and all(job in attachment for job in jobs), "the file has every job"


async def test_retry_all_clicked_while_the_database_cannot_write_it_down_in_time_is_refused_and_never_run(
        make_app, runpod, slack, tmp_path):
    """The click is written down before it is acknowledged. The database is held by another writer longer than the
    app waits (`accept_within`): the clicker is told plainly that nothing started and to click again in a minute,
    and the click, written down late, is never carried out, not even by the next start. Clicked again once the
    database answers, Retry all runs."""

    app = await make_app("http", **FAST)
    jobs, alert = await storm_of(app, runpod, 6)
    value = buttons(alert)[actions.RETRY_ALL]["value"]
    with database_held(tmp_path / "runpod-retry.db"):  # the app's writes wait
        click = await app.click(actions.RETRY_ALL, value, message_ts=alert["ts"], user="U7")
        assert click.status == 200 and click.latency < ACK_DEADLINE
        await slack.wait_for(lambda s: s.responses.get(click.response_url))
        await asyncio.sleep(0.5)
    [told] = [message_text(r) for r in app.responses(click.response_url)]
    assert "Retry all* did not start" in told and "cannot reach its database" in told, told
    assert "6 jobs" in told and "`ep1`" in told and "again in a minute" in told, told
    await app.settle(timeout=20)
    await app.restart()
    await app.settle(timeout=20)
    assert runpod.calls_to("retry") == [], "a click refused is not carried out behind the clicker's back"

    again = await app.click(actions.RETRY_ALL, value, message_ts=alert["ts"], user="U7")
    await app.settle(timeout=20)
    assert again.status == 200 and app.responses(again.response_url) == []
    assert sorted(c.job for c in runpod.calls_to("retry")) == jobs, "every job once"
    assert len([m for m in app.thread(ALERTS, alert["ts"]) if "Results for 6 jobs" in message_text(m)]) == 1
