"""(a) 10 clicks on one job spread over 3 replicas (OS processes) on one PostgreSQL: exactly one /retry.

The workflow ID (retry:<ep>:<job>:<failure>) is the idempotency key: every start after the first returns the
first one's handle. Also: the second round fires all 10 clicks in the same ~millisecond.
"""

from __future__ import annotations

import asyncio
import random
import time

from fakes import pct
from harness import Stage, tracebacks


async def main() -> None:
    async with Stage(pg=True, delay=0.3) as st:
        t = time.perf_counter()
        reps = [await st.replica(f"a{i}") for i in range(3)]
        print(f"3 replicas up in {time.perf_counter() - t:.1f}s; launch() ms: {[r.launch_ms for r in reps]}")
        ok = True
        for rnd, spread in enumerate((0.5, 0.0)):
            job = f"job-{rnd}-u1"
            wid = f"retry:ep1:{job}:failure-{rnd}"

            async def one(i: int) -> dict:
                await asyncio.sleep(random.uniform(0, spread))
                return await st.post(reps[i % 3], "/click", {"ep": "ep1", "job": job, "who": f"user{i}",
                                                            "channel": "C1", "id": wid})
            acks = await asyncio.gather(*(one(i) for i in range(10)))
            lat = [(a["t_started"] - a["t_ack"]) * 1000 for a in acks]
            await asyncio.sleep(3)
            await st.fakes.refresh()
            calls = [c for c in st.fakes.retries if c["job"] == job]
            posts = [p for p in st.fakes.posts if job in p["text"]]
            print(f"round {rnd} (clicks spread over {spread}s): /retry calls={len(calls)} by {[c['who'] for c in calls]}"
                  f"; outcome posts={len(posts)}; start_workflow_async ms p50={pct(lat, 50):.0f} max={max(lat):.0f}")
            ok &= len(calls) == 1 and len(posts) == 1
        tb = sum(tracebacks(r.name) for r in reps)
        print(f"tracebacks in replica logs: {tb}")
        print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    asyncio.run(main())
