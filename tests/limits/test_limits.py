"""The worst night, under the platforms' real limits: nothing dropped, nothing given up (issue 10).

The stand-ins enforce Slack's per-channel posting rate and per-method tiers, and RunPod's per-endpoint windows
(testkit/fakes/limits.py). Each test says what a person would see, and what the limits let through.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from bot.core import actions
from bot.work.events import Ending, JobListener
from bot.work.follow import FollowTarget
from testkit.fakes.limits import RunPodLimits, SlackLimits
from testkit.harness import ACK_DEADLINE, button_value, message_text

ALERTS = "CALERTS"


def everything_in(app, channel: str) -> str:  # type: ignore[no-untyped-def]
    """Every word the channel shows: top-level messages and their threads."""
    texts = []
    for msg in app.top_level(channel):
        texts.append(message_text(msg))
        texts.extend(message_text(reply) for reply in app.thread(channel, msg["ts"]))
    return "\n".join(texts)


async def test_300_bulk_retries_under_runpods_retry_limit_are_each_requeued_once_and_none_is_stuck(
        make_app, runpod, slack):
    runpod.limits = RunPodLimits()  # /retry: 100 per 10 s, 20 at once
    app = await make_app("http", RUNPOD_BULK_CONCURRENCY="20")
    jobs = [f"job-{i:04d}-u1" for i in range(300)]
    for job in jobs:
        runpod.add_job("ep1", job, status="FAILED")

    started = time.monotonic()
    ack = await app.command("ep1 " + " ".join(jobs), channel="C1")
    assert ack.status == 200
    await runpod.wait_for(lambda rp: len(rp.requeued("ep1")) == 300, timeout=60)
    took = time.monotonic() - started
    await app.settle(timeout=60)

    assert set(runpod.requeued("ep1").values()) == {1}, "each job requeued exactly once"
    floor = 20.0  # 100 now, 100 ten seconds later, 100 twenty seconds later
    # How near the floor the app gets is a figure, measured by the benchmark (`python -m bench --only limits`: goal
    # within 1.3 × the floor). Here, on a machine that may be busy, only "not stuck behind the limit".
    assert took <= 3 * floor, f"{took:.1f} s against a floor of {floor} s"
    [parent] = app.top_level("C1")
    assert "0 not retried" in message_text(parent) or "not retried" not in message_text(parent)
    summary = everything_in(app, "C1")
    assert "limiting requests" not in summary and "rate-limited" not in summary
    assert not slack.rejected()


async def test_a_storm_of_150_failures_on_3_endpoints_reaches_slack_whole_and_retry_all_reports_every_job(
        make_app, runpod, slack):
    slack.limits = SlackLimits()  # chat.postMessage about 1 per second per channel, chat.update Tier 3
    app = await make_app("http", RUNPOD_STORM_THRESHOLD="5", RUNPOD_BULK_CONCURRENCY="16",
                         RUNPOD_FOLLOW_INTERVAL="0.05")
    jobs = {ep: [f"{ep}-job-{i:03d}" for i in range(50)] for ep in ("epa", "epb", "epc")}
    for ep, ids in jobs.items():
        for job in ids:
            runpod.add_job(ep, job, status="FAILED")

    started = time.monotonic()

    async def fail(ep: str, job: str) -> None:
        status, answer = await app.webhook(ep, {"id": job, "status": "FAILED", "error": "CUDA out of memory"})
        assert status == 200, answer

    await asyncio.gather(*(fail(ep, job) for ep, ids in jobs.items() for job in ids))
    # Each webhook was answered 200 (above); how fast the 150 are answered, and how soon every job is in Slack (goal:
    # 30 s), are the benchmark's figures (`python -m bench --only limits`). The bounds here say "not stuck".
    assert time.monotonic() - started < 10.0, "150 webhooks answered within 10 s"

    async def all_visible() -> bool:
        shown = everything_in(app, ALERTS)
        return all(job in shown for ids in jobs.values() for job in ids)

    deadline = time.monotonic() + 90
    while not await all_visible():
        assert time.monotonic() < deadline, "every failed job's ID is in Slack within 90 s"
        await asyncio.sleep(0.5)
    assert len(app.top_level(ALERTS)) <= 3 * 5 + 3, "grouped, not one alert each"
    # The app paces itself at Slack's rate; a 429 now and then is a clock's skew between two processes, not a flood.
    assert len(slack.rate_limited("chat.postMessage", ALERTS)) <= 2, slack.rate_limited("chat.postMessage", ALERTS)
    assert not slack.rejected(), "nothing Slack refused for good"

    grouped = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    assert len(grouped) == 3
    for alert in grouped:
        await app.click(actions.RETRY_ALL, button_value(alert, actions.RETRY_ALL), message_ts=alert["ts"])
    await app.settle(timeout=90)

    requeued = runpod.requeued()
    for ep, ids in jobs.items():
        grouped_jobs = {job for job in ids if (ep, job) in requeued}
        assert len(grouped_jobs) >= 50 - 5, f"{ep}: the grouped jobs were retried"
    assert set(requeued.values()) == {1}, "never twice"
    for alert in grouped:
        shown = message_text(app.slack.messages[(ALERTS, alert["ts"])])
        assert "completed" in shown, shown
    assert not slack.rejected()


async def test_20_people_retrying_20_jobs_in_one_channel_within_a_second_all_see_result_and_ending(
        make_app, runpod, slack):
    slack.limits = SlackLimits()
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.05")
    for i in range(20):
        runpod.add_job("ep1", f"job-{i:02d}", status="FAILED")

    acks = await asyncio.gather(*(app.command(f"ep1 job-{i:02d}", user=f"U{i:02d}", channel="C1")
                                  for i in range(20)))
    assert all(a.status == 200 and a.latency < ACK_DEADLINE for a in acks)
    await app.settle(timeout=120)

    parents = app.top_level("C1")
    assert len(parents) == 20
    for parent in parents:
        replies = [message_text(r) for r in app.thread("C1", parent["ts"])]
        assert any("was requeued" in r for r in replies), replies
        assert any("completed" in r for r in replies[1:]), replies
    assert len(slack.rate_limited("chat.postMessage", "C1")) <= 3, "paced, not pushed into 429s"
    assert not slack.rejected()


async def test_2000_followed_jobs_stay_under_runpods_status_limit_and_every_ending_is_seen(make_app, runpod, slack):
    runpod.limits = RunPodLimits()  # /status: 2000 per 10 s, 400 at once
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.2", RUNPOD_FOLLOW_MAX="120")
    ended: dict[str, Any] = {}
    class Endings(JobListener):
        async def ended(self, ending: Ending) -> None:
            ended[ending.job] = ending.final

    app.rt.events.subscribe(Endings())
    now = time.time()
    for i in range(2000):
        job = f"job-{i:04d}"
        runpod.add_job("ep1", job, status="IN_PROGRESS")
        runpod.job("ep1", job).pending = deque(["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"])  # three polls to end
        # As a bulk run follows its jobs: quietly, each ending reported to the run.
        await app.rt.follower.start(FollowTarget("ep1", job, "C1", None, "U1", "bulk", now, quiet=True))

    deadline = time.monotonic() + 120
    while len(ended) < 2000:
        assert time.monotonic() < deadline, f"{len(ended)} of 2000 endings seen"
        await asyncio.sleep(0.5)

    assert all((final or {}).get("status") == "COMPLETED" for final in ended.values())
    assert runpod.rate_limited("status") == [], "the limiter kept /status under RunPod's limit"
    assert runpod.peak_concurrency("status", "ep1") <= 400


async def test_messages_still_queued_at_a_restart_are_sent_after_it_once_each(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_STORM_THRESHOLD="100")
    for i in range(6):
        runpod.add_job("ep1", f"job-q{i}", status="FAILED")
    # Slack holds the alert channel back for a minute: the alerts wait in the outbox.
    slack.limits = SlackLimits(retry_after=60)
    slack.limits.post_per_channel = None
    slack.script("chat.postMessage", *[_ratelimited()] * 1)
    for i in range(6):
        status, _ = await app.webhook("ep1", {"id": f"job-q{i}", "status": "FAILED", "error": "boom"})
        assert status == 200
    await app.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) >= 1)
    deadline = time.monotonic() + 10
    while app.rt.outbox.depth() < 5:  # each accepted webhook queues its alert a moment after the 200
        assert time.monotonic() < deadline, "the alerts are queued behind Slack's Retry-After"
        await asyncio.sleep(0.05)

    await app.restart()
    await app.rt.outbox.idle(5)
    # After the restart Slack takes everything (the old process's pause is gone with it).
    await app.settle(timeout=30)

    shown = [message_text(m) for m in app.top_level(ALERTS)]
    for i in range(6):
        assert sum(f"job-q{i}" in text for text in shown) == 1, shown


def _ratelimited() -> Any:
    from testkit.fakes.slack import SlackFault

    return SlackFault(status=429, headers={"Retry-After": "60"}, error="ratelimited")
