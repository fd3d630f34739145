"""One replica: DBOS on a system database, a tiny HTTP control surface standing in for Slack's clicks.

    python replica.py <sys_db_url> <executor_id> <fakes_base>   (prints "READY <port>" when it listens)

POST /click      {ep, job, who, channel, id}  start retry_wf directly with workflow ID `id` (the ack path)
POST /enqueue    {ep, job, who, channel, id}  the same through the runpod queue, partition = ep
POST /member     {ep, job, bulk_id}           member_wf on the runpod queue (limits test)
POST /say        {channel, text, id}          send_wf on the slack queue, partition = channel
POST /follow     {ep, job, channel, every, id}
POST /bulk       {bulk_id, ep, jobs, channel}
GET  /wf/{id}    the workflow's status
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from aiohttp import web

os.environ["SPIKE_FAKES"] = sys.argv[3]

import wf
from dbos import DBOS, SetEnqueueOptions, SetWorkflowID


async def click(req: web.Request) -> web.Response:
    b = await req.json()
    t0 = time.time()
    with SetWorkflowID(b["id"]):
        h = await DBOS.start_workflow_async(wf.retry_wf, b["ep"], b["job"], b["who"], b.get("channel", ""),
                                            float(b.get("follow_every", 0.0)))
    return web.json_response({"t_ack": t0, "t_started": time.time(), "wf": h.get_workflow_id()})


async def enqueue(req: web.Request) -> web.Response:
    b = await req.json()
    t0 = time.time()
    with SetWorkflowID(b["id"]), SetEnqueueOptions(queue_partition_key=b["ep"]):
        await wf.QUEUES["runpod"].enqueue_async(wf.retry_wf, b["ep"], b["job"], b["who"], b.get("channel", ""))
    return web.json_response({"t_ack": t0, "t_started": time.time()})


async def member(req: web.Request) -> web.Response:
    b = await req.json()
    with SetWorkflowID(f"retry:{b['ep']}:{b['job']}:{b['bulk_id']}"), SetEnqueueOptions(queue_partition_key=b["ep"]):
        await wf.QUEUES["runpod"].enqueue_async(wf.member_wf, b["ep"], b["job"], b["bulk_id"])
    return web.json_response({"ok": True})


async def say(req: web.Request) -> web.Response:
    b = await req.json()
    with SetWorkflowID(b["id"]), SetEnqueueOptions(queue_partition_key=b["channel"]):
        await wf.QUEUES["slack"].enqueue_async(wf.send_wf, b["channel"], b["text"])
    return web.json_response({"ok": True})


async def follow(req: web.Request) -> web.Response:
    b = await req.json()
    with SetWorkflowID(b["id"]):
        await DBOS.start_workflow_async(wf.follow_wf, b["ep"], b["job"], b["channel"], float(b.get("every", 1.0)))
    return web.json_response({"ok": True})


async def bulk(req: web.Request) -> web.Response:
    b = await req.json()
    with SetWorkflowID(f"bulk:{b['bulk_id']}"):
        await DBOS.start_workflow_async(wf.bulk_wf, b["bulk_id"], b["ep"], b["jobs"], b["channel"])
    return web.json_response({"ok": True})


async def status(req: web.Request) -> web.Response:
    st = await DBOS.get_workflow_status_async(req.match_info["id"])
    return web.json_response({"status": st.status if st else None, "executor": st.executor_id if st else None})


async def main() -> None:
    sys_db, me = sys.argv[1], sys.argv[2]
    polling = float(os.environ.get("SPIKE_POLLING", "0.1"))
    version = os.environ.get("SPIKE_VERSION", "spike-1")
    ms = await wf.launch(sys_db, me, polling=polling, version=version)
    tasks = []
    if sys_db.startswith("postgres"):
        import asyncpg
        pool = await asyncpg.create_pool(sys_db, min_size=1, max_size=4)
        if not os.environ.get("SPIKE_NO_MARKER"):   # spike_b.py --no-marker shows what the marker prevents
            wf.APP_POOL = pool
        await pool.execute(wf.SENT_DDL)
        tasks.append(asyncio.create_task(wf.heartbeat(pool, me, version)))
    app = web.Application()
    for path, fn in (("/click", click), ("/enqueue", enqueue), ("/member", member), ("/say", say),
                     ("/follow", follow), ("/bulk", bulk)):
        app.router.add_post(path, fn)
    app.router.add_get("/wf/{id}", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port} launch_ms={ms:.0f}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
