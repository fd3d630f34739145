"""An endpoint's health as RunPod reports it (`GET /v2/{endpointId}/health`), and whether retrying now can work.
Pure: RunPod's JSON in, a snapshot with plain words and a warning out. Every field of RunPod's answer is optional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bot.core import words
from bot.core.answers import RunPodBadResponse, RunPodError, RunPodTimeout, RunPodUnreachable

# RunPod's names and the words for them, in the order a person reads them.
JOB_COUNTS = (("inQueue", "in queue"), ("inProgress", "in progress"), ("failed", "failed"), ("retried", "retried"),
              ("completed", "completed"))
WORKER_COUNTS = (("ready", "ready"), ("idle", "idle"), ("running", "running"), ("initializing", "starting"),
                 ("throttled", "throttled"), ("unhealthy", "unhealthy"))
WORKING = ("ready", "idle", "running")  # workers that can take a job now


def _count(value: Any) -> int | None:
    """A count from RunPod's JSON: a non-negative whole number, else None (ignored)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or int(value) != value:
        return None
    return int(value)


def _counts(section: Any, names: tuple[tuple[str, str], ...]) -> dict[str, int]:
    if not isinstance(section, dict):
        return {}
    found = {name: _count(section.get(name)) for name, _ in names}
    return {name: n for name, n in found.items() if n is not None}


@dataclass(frozen=True)
class Health:
    """One snapshot of an endpoint's health. `jobs` and `workers` hold only the counts RunPod gave."""

    endpoint: str
    at: float
    jobs: Mapping[str, int] = field(default_factory=dict)
    workers: Mapping[str, int] = field(default_factory=dict)
    body: Any = None  # RunPod's JSON as it answered

    @property
    def known(self) -> bool:
        return bool(self.jobs or self.workers)


def parse_health(endpoint: str, body: Any, at: float) -> Health:
    body = body if isinstance(body, dict) else {}
    return Health(endpoint, at, _counts(body.get("jobs"), JOB_COUNTS), _counts(body.get("workers"), WORKER_COUNTS),
                  body)


def _listed(counts: Mapping[str, int], names: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{counts[name]} {words}" for name, words in names if name in counts)


def health_words(health: Health) -> str:
    """"Jobs: 14 in queue, 2 in progress, 7 failed. Workers: 1 ready, 0 idle, 2 running, 1 unhealthy."."""
    parts = []
    if health.jobs:
        parts.append(f"Jobs: {_listed(health.jobs, JOB_COUNTS)}.")
    if health.workers:
        parts.append(f"Workers: {_listed(health.workers, WORKER_COUNTS)}.")
    return " ".join(parts) or "RunPod's answer had no job or worker counts."


class Verdict(Enum):
    """What an endpoint's snapshot means for a retry now."""

    HEALTHY = "healthy"        # a worker is ready or running
    STARTING = "starting"      # RunPod is starting workers
    IDLE = "idle"              # scaled to zero with nothing waiting: normal, RunPod starts a worker for a job
    UNKNOWN = "unknown"        # no worker counts in RunPod's answer
    THROTTLED = "throttled"    # workers wait for a GPU of the endpoint's type
    UNHEALTHY = "unhealthy"    # most workers are unhealthy
    STUCK = "stuck"            # jobs wait and no worker is ready, running or starting

    @property
    def warns(self) -> bool:
        return self in (Verdict.THROTTLED, Verdict.UNHEALTHY, Verdict.STUCK)


@dataclass(frozen=True)
class Reading:
    """A snapshot read for a person: the verdict, its sentence (the headline of every health answer), and for a
    warning, why retrying now is unlikely to work (a phrase) and what to do about it."""

    verdict: Verdict
    headline: str
    reason: str | None = None
    advice: str | None = None


def _workers(n: int) -> str:
    return words.count(n, "worker")


def read_health(health: Health) -> Reading:
    """What the counts mean. Zero workers is normal for an endpoint that scales to zero (RunPod's default): only
    jobs waiting with no worker ready, running or starting, throttled workers, or mostly unhealthy ones warn."""
    w, queued = health.workers, health.jobs.get("inQueue", 0)
    working = sum(w.get(name, 0) for name in WORKING)
    unhealthy, throttled, starting = w.get("unhealthy", 0), w.get("throttled", 0), w.get("initializing", 0)
    total = working + unhealthy + throttled + starting
    console = "check its workers and GPU type in RunPod's console"
    if unhealthy and unhealthy * 2 > total:
        reason = (f"every worker of this endpoint is unhealthy ({unhealthy})" if unhealthy == total else
                  f"most workers of this endpoint are unhealthy ({unhealthy} of {total})")
        return Reading(Verdict.UNHEALTHY, f"Unhealthy: {reason}", reason,
                       "Retrying now is unlikely to work: retried jobs may fail again, or wait until it has healthy "
                       f"workers. {console.capitalize()}.")
    if throttled:
        reason = f"no GPU of this endpoint's type is free ({_workers(throttled)} throttled, waiting for one)"
        return Reading(Verdict.THROTTLED, f"Throttled: no GPU of this endpoint's type is free right now "
                                          f"({_workers(throttled)} waiting for one)", reason,
                       "Retrying now is unlikely to work: retried jobs wait in the queue until a GPU frees up, and "
                       f"retrying again does not help. If it lasts, {console} (another GPU type, or more of them, "
                       "can help).")
    if w and queued and not working and not starting:
        reason = (f"{words.jobs(queued)} {'waits' if queued == 1 else 'wait'} in the queue and no worker is ready, "
                  "running or starting")
        return Reading(Verdict.STUCK, f"Stuck: {reason}", reason,
                       "Retrying now is unlikely to work: retried jobs would wait behind them. "
                       f"{console.capitalize()} (max workers, an image that fails to start).")
    if working:
        busy = ", ".join(f"{n} {words}" for n, words in ((w.get("ready", 0) + w.get("idle", 0), "ready"),
                                                         (w.get("running", 0), "running")) if n)
        ahead = f"; {words.jobs(queued)} in the queue ahead of them" if queued else ""
        return Reading(Verdict.HEALTHY, f"Healthy: retries should run now ({busy}{ahead})")
    if starting:
        return Reading(Verdict.STARTING, f"Starting: RunPod is starting {_workers(starting)}; retries should run "
                                         "once they are up")
    if not w:
        return Reading(Verdict.UNKNOWN, "RunPod's answer has no worker counts, so whether a worker is free is not "
                                        "known")
    return Reading(Verdict.IDLE, "Idle: no worker is running, and RunPod starts one when a job arrives; retries "
                                 "should run")


def unlikely_reason(health: Health) -> str | None:
    """Why retrying now is unlikely to work, as a phrase; None when it can (an idle endpoint can)."""
    return read_health(health).reason


def health_warning(health: Health) -> str | None:
    """The plain warning shown before or after a retry, or None."""
    reading = read_health(health)
    if reading.reason is None:
        return None
    return f"{reading.headline}. {reading.advice}"


def health_problem(endpoint: str, error: RunPodError) -> str:
    """Why the health check gave no answer, in words."""
    if isinstance(error, RunPodTimeout):
        return "RunPod did not answer the health check in time"
    if isinstance(error, RunPodUnreachable):
        return "I could not reach RunPod"
    if isinstance(error, RunPodBadResponse):
        return "RunPod's answer was not the JSON it should be"
    if error.status is None:
        return f"the check failed ({error})"
    if error.status == 401 or error.status == 403:
        return (f"RunPod refused the API key for endpoint `{endpoint}` (HTTP {error.status}): check "
                "`RUNPOD_API_KEY` or `RUNPOD_ENDPOINT_KEYS`")
    if error.status == 404:
        return f"RunPod does not know endpoint `{endpoint}` (HTTP 404): check the endpoint ID"
    if error.status == 429:
        return "RunPod is limiting requests right now (HTTP 429); try again in a minute"
    if error.status is not None and error.status >= 500:
        return f"RunPod had a server error (HTTP {error.status}); try again in a minute"
    return f"RunPod answered HTTP {error.status}"
