"""Retry policies across real replicas on one PostgreSQL: one automatic retry per attempt, whichever replica gets
the webhook, and a replica killed (kill -9) or stopped (SIGTERM) during the policy's delay leaves its workflow to a
live one, which retries once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.core import actions
from testkit.harness import message_text
from testkit.polling import wait_until
from testkit.replicas import Replicas
from tests.process.chaos import app_tracebacks

EP = "ep1"
ALERTS = "CALERTS"
OOM = "torch.OutOfMemoryError: CUDA out of memory"
POLICY = """
[[policy]]
name = "oom-once"
endpoints = ["ep1"]
errors = ["CUDA out of memory"]
max_attempts = 1
delay = "{delay}"
mode = "on"
"""


def policy_file(tmp_path: Path, delay: str) -> str:
    path = tmp_path / "policies.toml"
    path.write_text(POLICY.format(delay=delay))
    return str(path)


def alert_of(slack: Any, job: str) -> dict[str, Any] | None:
    """The job's alert as it is now. A kill -9 at the instant Slack took the alert, before its replica recorded
    where it went, leaves that one orphaned and the replica taking over posts it again (at least once, never lost):
    the newest one is the alert the app keeps current."""
    alerts = [m for (c, _), m in slack.messages.items() if c == ALERTS and not m.get("thread_ts")
              and job in message_text(m)]
    return alerts[-1] if alerts else None


async def test_one_automatic_retry_whichever_replica_gets_the_webhooks(slack, runpod, pg_url: str,
                                                                        tmp_path: Path) -> None:
    jobs = [f"job-rep-{i}" for i in range(6)]
    async with Replicas(slack, runpod, pg_url, tmp_path, n=2,
                        RUNPOD_RETRY_POLICIES=policy_file(tmp_path, "2s")) as cluster:
        for job in jobs:
            runpod.add_job(EP, job, status="FAILED", error=OOM, after_retry=("IN_PROGRESS", "COMPLETED"))
        body = {"status": "FAILED", "error": OOM}
        # Each failure delivered to both replicas at once (RunPod redelivers; a load balancer picks anyone).
        await asyncio.gather(*(cluster.webhook(EP, {"id": job, **body}, replica=r) for job in jobs for r in (0, 1)))
        await wait_until(lambda: all(alert_of(slack, j) and "Completed after automatic retry"
                                     in message_text(alert_of(slack, j)) for j in jobs), 40, "every job completed")
        await asyncio.sleep(2.0)
        assert {job: runpod.requeued()[(EP, job)] for job in jobs} == dict.fromkeys(jobs, 1)
        assert len([m for (c, _), m in slack.messages.items() if c == ALERTS and not m.get("thread_ts")]) == 6


@pytest.mark.parametrize("how", ["kill", "term"])
async def test_a_replica_lost_during_the_delay_leaves_the_retry_to_another_which_sends_it_once(
        slack, runpod, pg_url: str, tmp_path: Path, how: str) -> None:
    async with Replicas(slack, runpod, pg_url, tmp_path, n=2,
                        RUNPOD_RETRY_POLICIES=policy_file(tmp_path, "60s")) as cluster:
        runpod.add_job(EP, "job-lost", status="FAILED", error=OOM, after_retry=("IN_PROGRESS", "COMPLETED"))
        assert await cluster.webhook(EP, {"id": "job-lost", "status": "FAILED", "error": OOM}, replica=0) == 200
        posted = await wait_until(lambda: alert_of(slack, "job-lost"), 15, "the quiet alert")
        assert "Auto-retrying (1 of 1)" in message_text(posted)
        assert actions.AUTO_STOP in message_text(posted) or posted.get("blocks")
        # The alert's replica records where Slack put it a moment after Slack took it; a kill in between leaves the
        # alert unrecorded (the outbox's own seam, not the policy's): this test kills during the delay, after that.
        await asyncio.sleep(1.0)
        lost = time.monotonic()
        if how == "kill":
            await cluster.kill(0)
        else:
            await cluster.term(0)
        # The delay is 60 s on the replicas' clock (time scale in replica_env); the live replica resumes the
        # workflow once replica 0 is silent long enough, and sends the retry when the delay is over.
        await wait_until(lambda: runpod.requeued()[(EP, "job-lost")] >= 1, 60, "the retry, sent by replica 1")
        print(f"retry sent {time.monotonic() - lost:.1f} s after the {how}")
        try:
            await wait_until(lambda: "Completed after automatic retry" in
                             message_text(alert_of(slack, "job-lost") or {}), 45, "the alert saying it completed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the alert says: {message_text(alert_of(slack, 'job-lost') or {})}\n"
                                 f"{cluster[1].tail(60)}") from None
        await asyncio.sleep(2.0)
        assert runpod.requeued()[(EP, "job-lost")] == 1
        assert not app_tracebacks(cluster[1].text()), app_tracebacks(cluster[1].text())
