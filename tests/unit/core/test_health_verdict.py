"""What an endpoint's /health means for a retry now, in words. Zero workers is normal for an endpoint that scales to
zero: only jobs waiting with no worker ready, running or starting, throttled workers, or mostly unhealthy workers
warn. Every field of RunPod's answer is optional (the older {"idle", "running"} shape, and the newer one)."""

from __future__ import annotations

import pytest

from bot.core import messages
from bot.core.health import Verdict, health_warning, parse_health, read_health, unlikely_reason
from testkit.fakes.worker_shapes import RUNPOD_DOCS_HEALTH

ZERO = {"idle": 0, "initializing": 0, "ready": 0, "running": 0, "throttled": 0, "unhealthy": 0}


def reading(body: dict):  # type: ignore[no-untyped-def]
    return read_health(parse_health("ep1", body, 1000.0))


def test_runpods_docs_example_is_healthy_and_says_so_first():
    health = parse_health("ep1", RUNPOD_DOCS_HEALTH, 1000.0)
    read = read_health(health)

    assert read.verdict is Verdict.HEALTHY and read.reason is None and health_warning(health) is None
    assert read.headline == "Healthy: retries should run now (2 ready, 2 running; 14 jobs in the queue ahead of them)"
    msg = messages.health_message("ep1", health)
    assert msg["blocks"][0]["text"]["text"].startswith(":white_check_mark: *Healthy: retries should run now")
    assert msg["text"].startswith("Endpoint ep1: Healthy: retries should run now")


@pytest.mark.parametrize("body", [
    {"jobs": {"inQueue": 0, "inProgress": 0, "failed": 3}, "workers": ZERO},     # today's shape, scaled to zero
    {"jobs": {"inQueue": 0}, "workers": {"idle": 0, "running": 0}},              # the older shape
    {"workers": {"idle": 0, "running": 0}},                                      # no job counts at all
])
def test_an_endpoint_scaled_to_zero_with_nothing_waiting_is_idle_not_a_warning(body):
    read = reading(body)

    assert read.verdict is Verdict.IDLE and read.reason is None
    assert read.headline == ("Idle: no worker is running, and RunPod starts one when a job arrives; retries should "
                             "run")
    health = parse_health("ep1", body, 1000.0)
    assert messages.confirm_warning("Retry?", health) == "Retry?"
    [line] = messages.health_blocks(health)
    assert line["type"] == "context" and line["elements"][0]["text"].startswith(":zzz: *Idle: no worker is running")


@pytest.mark.parametrize(("body", "verdict", "says"), [
    ({"jobs": {"inQueue": 14}, "workers": ZERO}, Verdict.STUCK,
     "Stuck: 14 jobs wait in the queue and no worker is ready, running or starting"),
    ({"jobs": {"inQueue": 1}, "workers": {"idle": 0, "running": 0}}, Verdict.STUCK,
     "Stuck: 1 job waits in the queue and no worker is ready, running or starting"),
    ({"jobs": {"inQueue": 3}, "workers": ZERO | {"throttled": 3}}, Verdict.THROTTLED,
     "Throttled: no GPU of this endpoint's type is free right now (3 workers waiting for one)"),
    ({"workers": ZERO | {"running": 1, "unhealthy": 4}}, Verdict.UNHEALTHY,
     "Unhealthy: most workers of this endpoint are unhealthy (4 of 5)"),
    ({"workers": {"unhealthy": 2}}, Verdict.UNHEALTHY, "Unhealthy: every worker of this endpoint is unhealthy (2)"),
])
def test_warnings_only_when_retrying_now_is_unlikely_to_work(body, verdict, says):
    health = parse_health("ep1", body, 1000.0)
    read = read_health(health)

    assert read.verdict is verdict and verdict.warns and read.headline == says
    assert (health_warning(health) or "").startswith(f"{says}. Retrying now is unlikely to work")
    assert messages.confirm_warning("Retry?", health).startswith(f"⚠️ Unlikely to work now: {unlikely_reason(health)}")
    warning, counts = messages.health_blocks(health)
    assert warning["type"] == "section" and warning["text"]["text"].startswith(f":warning: *{says}.*")
    assert counts["type"] == "context" and "Workers:" in counts["elements"][0]["text"]


@pytest.mark.parametrize(("body", "verdict"), [
    ({"jobs": {"inQueue": 5}, "workers": ZERO | {"initializing": 2}}, Verdict.STARTING),  # RunPod is on it
    ({"jobs": {"inQueue": 5}, "workers": {"idle": 1, "running": 0}}, Verdict.HEALTHY),    # the older shape
    ({"workers": ZERO | {"running": 3, "unhealthy": 1}}, Verdict.HEALTHY),                # a minority unhealthy
    ({"jobs": {"inQueue": 5}}, Verdict.UNKNOWN),                                          # no worker counts
])
def test_no_warning_when_a_worker_is_there_or_coming_or_nothing_is_known(body, verdict):
    read = reading(body)

    assert read.verdict is verdict and read.reason is None and not verdict.warns
