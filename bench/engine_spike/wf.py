"""The spike's workflows (the shape the rebuilt app would have) and the replica's start-up: DBOS launch inside
the running loop, queues, and the heartbeat that notices a dead executor and has DBOS recover its workflows.

Every replica imports this same module, so every replica can run (and recover) every workflow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import httpx
from dbos import DBOS, DBOSConfig, SetEnqueueOptions, SetWorkflowID

log = logging.getLogger("spike")

BASE = os.environ.get("SPIKE_FAKES", "http://127.0.0.1:9")   # the stand-ins' base URL
_http: httpx.AsyncClient | None = None
QUEUES: dict[str, Any] = {}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


def http() -> httpx.AsyncClient:
    global _http
    if _http is None:
        _http = httpx.AsyncClient(base_url=BASE, timeout=10)
    return _http


# ---- steps: the only places that talk to RunPod or Slack --------------------------------------------------

APP_POOL: Any = None   # asyncpg pool on the app's own database (PostgreSQL replicas); None on SQLite
SENT_DDL = "CREATE TABLE IF NOT EXISTS retry_sent (workflow_id text PRIMARY KEY, at timestamptz DEFAULT now())"


@DBOS.step()
async def runpod_retry(ep: str, job: str, who: str) -> dict[str, Any]:
    """POST /retry at most once per workflow, even across a kill -9 between the call and its checkpoint.

    A step is at-least-once: if the process dies after RunPod took the call but before DBOS wrote the step's
    output, the recovered workflow runs the step again. So the step first writes a marker keyed by the
    workflow ID; finding the marker already there means an earlier attempt may have reached RunPod, and a
    /status decides: no longer FAILED/TIMED_OUT means RunPod took it, and it is not sent again."""
    wid = DBOS.workflow_id
    if APP_POOL is not None:
        first = await APP_POOL.fetchval(
            "INSERT INTO retry_sent(workflow_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true", wid)
        if not first:
            s = await http().get(f"/v2/{ep}/status/{job}")
            if s.json().get("status") not in ("FAILED", "TIMED_OUT"):
                return {"code": "reconciled", "body": s.json()}
    r = await http().post(f"/v2/{ep}/retry/{job}", headers={"x-who": who})
    return {"code": r.status_code, "body": r.json()}


@DBOS.step()
async def runpod_status(ep: str, job: str) -> str:
    r = await http().get(f"/v2/{ep}/status/{job}")
    return str(r.json()["status"])


@DBOS.step(retries_allowed=True, max_attempts=4, interval_seconds=0.5, backoff_rate=2.0)
async def slack_post(channel: str, text: str) -> str:
    r = await http().post("/api/chat.postMessage", json={"channel": channel, "text": text})
    r.raise_for_status()
    return str(r.json()["ts"])


# ---- workflows ---------------------------------------------------------------------------------------------

@DBOS.workflow()
async def send_wf(channel: str, text: str) -> str:
    """Sending one Slack message: runs on the slack queue, partition = channel (Slack's 1 post/s)."""
    return await slack_post(channel, text)


async def say(channel: str, text: str, msg_id: str) -> None:
    """Queue a message for a channel without waiting for it (called from a workflow: the enqueue is a step)."""
    with SetWorkflowID(msg_id), SetEnqueueOptions(queue_partition_key=channel):
        await QUEUES["slack"].enqueue_async(send_wf, channel, text)


@DBOS.workflow()
async def retry_wf(ep: str, job: str, who: str, channel: str, follow_every: float = 0.0) -> dict[str, Any]:
    """One retry: the RunPod call first, then the reply queued for Slack (never the other way round), then
    (when asked) the follow as a child workflow of its own."""
    answer = await runpod_retry(ep, job, who)
    if channel:
        await say(channel, f"retried {ep}/{job} for {who}: {answer['code']}", f"msg:{DBOS.workflow_id}:outcome")
    if follow_every > 0:
        with SetWorkflowID(f"follow:{DBOS.workflow_id}"):
            await DBOS.start_workflow_async(follow_wf, ep, job, channel or "C-follow", follow_every)
    return answer


@DBOS.workflow()
async def member_wf(ep: str, job: str, bulk_id: str) -> dict[str, Any]:
    """A bulk run's member: only the RunPod call, so the partition's concurrency counts RunPod calls."""
    return await runpod_retry(ep, job, f"bulk:{bulk_id}")


@DBOS.workflow()
async def follow_wf(ep: str, job: str, channel: str, every: float) -> str:
    """Follow a job to its end with durable sleeps, then post the ending once."""
    while True:
        status = await runpod_status(ep, job)
        if status in TERMINAL:
            break
        await DBOS.sleep_async(every)
    await slack_post(channel, f"ending {ep}/{job}: {status}")
    return status


@DBOS.workflow()
async def bulk_wf(bulk_id: str, ep: str, jobs: list[str], channel: str) -> dict[str, int]:
    """A bulk run: every member on the endpoint's queue, then one summary."""
    handles = []
    for job in jobs:
        with SetWorkflowID(f"retry:{ep}:{job}:{bulk_id}"), SetEnqueueOptions(queue_partition_key=ep):
            handles.append(await QUEUES["runpod"].enqueue_async(member_wf, ep, job, bulk_id))
    tally: dict[str, int] = {}
    for h in handles:
        answer = await h.get_result()
        key = str(answer["code"])
        tally[key] = tally.get(key, 0) + 1
    await slack_post(channel, f"summary {bulk_id}: {sorted(tally.items())}")
    return tally


# ---- start-up -----------------------------------------------------------------------------------------------

def config(sys_db: str, executor_id: str, version: str = "spike-1") -> DBOSConfig:
    return {
        "name": "runpod-retry",
        "system_database_url": sys_db,
        "executor_id": executor_id,
        "application_version": version,
        "log_level": os.environ.get("SPIKE_LOG_LEVEL", "WARNING"),
        "notification_listener_polling_interval_sec": 0.1,
    }


async def launch(sys_db: str, executor_id: str, *, polling: float = 0.1, version: str = "spike-1") -> float:
    """DBOS up inside the running loop (so queued and recovered async workflows run on THIS loop); the queues.

    Returns launch()'s duration in ms. launch() is synchronous: it blocks the loop while it runs.
    """
    DBOS(config=config(sys_db, executor_id, version))
    t = time.perf_counter()
    DBOS.launch()
    ms = (time.perf_counter() - t) * 1000
    QUEUES["runpod"] = await DBOS.register_queue_async(
        "runpod", partition_concurrency=int(os.environ.get("SPIKE_RUNPOD_CONC", "20")),
        partition_limiter={"limit": int(os.environ.get("SPIKE_RUNPOD_LIMIT", "100")), "period": 10.0},
        polling_interval_sec=polling)
    QUEUES["slack"] = await DBOS.register_queue_async(
        "slack", partition_concurrency=1, partition_limiter={"limit": 1, "period": 1.0},
        polling_interval_sec=polling)
    return ms


# ---- noticing a dead executor (PostgreSQL only) ------------------------------------------------------------

HEARTBEAT_DDL = """
CREATE TABLE IF NOT EXISTS app_executors (
    executor_id text PRIMARY KEY,
    app_version text NOT NULL,
    beat_at timestamptz NOT NULL DEFAULT now()
)"""


async def heartbeat(pool: Any, me: str, version: str, *, every: float = 1.0, stale_after: float = 5.0) -> None:
    """Beat every `every` s; whoever first sees another executor silent for `stale_after` s re-arms its row
    (so only one replica acts per period) and asks DBOS to recover that executor's PENDING workflows.
    Recovery only re-enqueues rows still PENDING under the dead executor ID, so doing it twice is harmless;
    the row is deleted once nothing is left to recover."""
    async with pool.acquire() as c:
        await c.execute(HEARTBEAT_DDL)
    while True:
        try:
            async with pool.acquire() as c:
                await c.execute("INSERT INTO app_executors(executor_id, app_version) VALUES ($1, $2) "
                                "ON CONFLICT (executor_id) DO UPDATE SET beat_at = now()", me, version)
                # Only a replica of the dead one's version can recover its workflows (DBOS filters on it).
                dead = await c.fetch(
                    "UPDATE app_executors SET beat_at = now() WHERE executor_id <> $1 AND app_version = $3 AND "
                    "beat_at < now() - make_interval(secs => $2) RETURNING executor_id", me, stale_after, version)
            for row in dead:
                ex = row["executor_id"]
                t = time.time()
                # Recovers only workflows of THIS replica's application_version (DBOS filters on it).
                handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [ex])
                print(f"RECOVERED {ex} {len(handles)} {t:.3f}", flush=True)
                if not handles:
                    # Forget the executor only when nothing of ANY version is left under it: a PENDING workflow
                    # of another version waits for a replica of that version to notice the row.
                    left = await DBOS.list_workflows_async(status="PENDING", executor_id=ex, load_input=False,
                                                           limit=1)
                    if not left:
                        async with pool.acquire() as c:
                            await c.execute("DELETE FROM app_executors WHERE executor_id = $1", ex)
        except Exception as exc:  # the database may be away: one line, try again next beat
            print(f"HEARTBEAT-ERROR {type(exc).__name__}: {exc}", flush=True)
        await asyncio.sleep(every)
