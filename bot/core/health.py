"""An endpoint's health as RunPod reports it (`GET /v2/{endpointId}/health`), and whether retrying now can work.
Pure: RunPod's JSON in, a snapshot with plain words and a warning out. Every field of RunPod's answer is optional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


def unlikely_reason(health: Health) -> str | None:
    """Why retrying now is unlikely to work, in words; None when it can (or when RunPod said nothing of workers)."""
    w = health.workers
    if not w:
        return None
    working = sum(w.get(name, 0) for name in WORKING)
    unhealthy, throttled, starting = w.get("unhealthy", 0), w.get("throttled", 0), w.get("initializing", 0)
    total = working + unhealthy + throttled + starting
    if working == 0:
        if throttled:
            return f"RunPod is throttling this endpoint's workers ({throttled} throttled) and none is ready or running"
        if unhealthy and not starting:
            return f"every worker of this endpoint is unhealthy ({unhealthy})"
        if starting:
            return f"no worker of this endpoint is ready or running yet ({starting} starting)"
        return "this endpoint has no worker ready, idle or running"
    if unhealthy * 2 > total:
        return f"most workers of this endpoint are unhealthy ({unhealthy} of {total})"
    return None


def health_warning(health: Health) -> str | None:
    """The plain warning shown before or after a retry, or None."""
    reason = unlikely_reason(health)
    if reason is None:
        return None
    return (f"Retrying now is unlikely to work: {reason}. Retried jobs wait in the queue, or fail again, until "
            "the endpoint has healthy workers (check its workers and GPU availability in RunPod's console).")


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
