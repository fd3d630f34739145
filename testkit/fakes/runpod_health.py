"""`GET /v2/{endpoint}/health` for FakeRunPod: job counts from its job table, worker counts as configured.

    runpod.set_health("ep1", "no_workers")                       # a preset (HEALTH_PRESETS)
    runpod.set_health("ep1", Health(workers={"unhealthy": 3}))   # merged onto the healthy worker counts
    runpod.set_health("ep1", jobs={"inQueue": 5000})             # keyword form; jobs merged onto derived counts
    runpod.set_health("ep1", "error")                            # 500; also "unauthorized", "garbage", "empty"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]

# None: derived from the job table (jobs IN_PROGRESS / RUNNING).
HEALTHY_WORKERS: dict[str, int | None] = {
    "idle": 1, "initializing": 0, "ready": 1, "running": None, "throttled": 0, "unhealthy": 0,
}
NO_WORKERS = dict.fromkeys(HEALTHY_WORKERS, 0)


@dataclass(frozen=True)
class Health:
    """What /health answers for one endpoint.

    workers: merged onto HEALTHY_WORKERS unless `replace_workers` (then exactly these keys: e.g. the older
        `{"idle", "running"}` shape). A None value is derived from the job table (`running`).
    jobs: merged onto the counts derived from the job table.
    status/body: anything but 200, or a body, replaces the whole answer (dict: JSON; str: text, HTML if "<...").
    """

    workers: dict[str, int | None] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    replace_workers: bool = False
    status: int = 200
    body: JSONDict | str | None = None


HEALTH_PRESETS: dict[str, Health] = {
    "healthy": Health(),
    "no_workers": Health(workers=dict(NO_WORKERS)),
    "mostly_unhealthy": Health(workers={"idle": 0, "ready": 0, "running": 1, "unhealthy": 4}),
    "throttled": Health(workers={"idle": 0, "ready": 0, "running": 0, "throttled": 3}),
    "initializing": Health(workers={"idle": 0, "ready": 0, "running": 0, "initializing": 2}),
    "legacy": Health(workers={"idle": 1, "running": None}, replace_workers=True),
    "empty": Health(body={}),
    "error": Health(status=500, body="Internal Server Error"),
    "unauthorized": Health(status=401, body="Unauthorized"),
    "garbage": Health(body="<html>oops</html>"),
}


def health_body(health: Health, statuses: Iterable[str], retried: int) -> JSONDict:
    """The 200 body for `health`, with job counts from the endpoint's live jobs' statuses."""
    statuses = list(statuses)

    def count(*wanted: str) -> int:
        return sum(s in wanted for s in statuses)

    running = count("IN_PROGRESS", "RUNNING")
    jobs = {"completed": count("COMPLETED"), "failed": count("FAILED", "TIMED_OUT"), "inProgress": running,
            "inQueue": count("IN_QUEUE"), "retried": retried} | health.jobs
    workers = dict(health.workers) if health.replace_workers else HEALTHY_WORKERS | health.workers
    return {"jobs": jobs, "workers": {k: running if v is None else v for k, v in workers.items()}}


__all__ = ["HEALTHY_WORKERS", "HEALTH_PRESETS", "NO_WORKERS", "Health", "health_body"]
