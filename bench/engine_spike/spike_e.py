"""(e) One process on SQLite, as a newcomer runs it: the system database a file next to the app's own SQLite
file, the app writing its own records through aiosqlite (another file) from inside steps.

1. 200 retry workflows started at once; meanwhile a 10 ms ticker measures the event loop's lag (how late it
   wakes up), against the same ticker with the loop idle.
2. kill -9 in the middle of a follow, restart with the same (default) executor ID: the process recovers its
   own workflow at launch; the ending is posted once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fakes import pct
from harness import RemoteFakes


async def lag_probe(stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        out.append((time.perf_counter() - t - 0.01) * 1000)


async def part1(data: str, fakes: RemoteFakes) -> bool:
    import aiosqlite
    import wf
    from dbos import DBOS, SetWorkflowID

    app_db = await aiosqlite.connect(os.path.join(data, "runpod-retry.sqlite"))
    await app_db.execute("CREATE TABLE IF NOT EXISTS audit (wf TEXT PRIMARY KEY, job TEXT, outcome TEXT)")
    await app_db.commit()

    @DBOS.step()
    async def audit(wid: str, job: str, outcome: str) -> None:
        await app_db.execute("INSERT OR IGNORE INTO audit VALUES (?, ?, ?)", (wid, job, outcome))
        await app_db.commit()

    @DBOS.workflow()
    async def retry_and_audit(ep: str, job: str) -> str:
        answer = await wf.runpod_retry(ep, job, "dana")
        await audit(DBOS.workflow_id, job, str(answer["code"]))
        return str(answer["code"])

    ms = await wf.launch(f"sqlite:///{data}/runpod-retry.dbos.sqlite", "local")  # decorators above: before launch
    print(f"  launch() {ms:.0f} ms; files: {sorted(os.listdir(data))}")
    idle: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(stop, idle))
    await asyncio.sleep(2)
    stop.set()
    await probe
    busy: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(stop, busy))
    t0 = time.perf_counter()
    handles = []
    for i in range(200):
        with SetWorkflowID(f"retry:ep{i % 4}:e-{i:03d}"):
            handles.append(await DBOS.start_workflow_async(retry_and_audit, f"ep{i % 4}", f"e-{i:03d}"))
    t_started = time.perf_counter() - t0
    results = await asyncio.gather(*(h.get_result() for h in handles))
    t_done = time.perf_counter() - t0
    stop.set()
    await probe
    rows = (await (await app_db.execute("SELECT count(*) FROM audit")).fetchone())[0]
    await fakes.refresh()
    print(f"  200 workflows: all started (sequential awaits) in {t_started:.2f}s, all done in {t_done:.2f}s "
          f"({200 / t_done:.0f}/s); results {sorted(set(results))}; /retry calls {len(fakes.retries)}; audit rows {rows}")
    print(f"  loop lag idle: p50 {pct(idle, 50):.1f} ms p99 {pct(idle, 99):.1f} ms max {max(idle):.1f} ms")
    print(f"  loop lag with 200 workflows: p50 {pct(busy, 50):.1f} ms p99 {pct(busy, 99):.1f} ms max {max(busy):.1f} ms"
          f" ({len(busy)} ticks)")
    await app_db.close()
    await asyncio.to_thread(DBOS.destroy)
    return rows == 200 and len(fakes.retries) == 200 and results == ["200"] * 200


CHILD = r'''
import asyncio, os, sys
sys.path.insert(0, {here!r})
os.environ["SPIKE_FAKES"] = {base!r}
import wf
from dbos import DBOS, SetWorkflowID
async def main():
    await wf.launch("sqlite:///{data}/runpod-retry.dbos.sqlite", "local")
    if sys.argv[1] == "start":
        with SetWorkflowID("retry:ep9:followed"):
            await DBOS.start_workflow_async(wf.retry_wf, "ep9", "followed", "dana", "C9", 0.5)
    print("UP", flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
'''


async def part2(data: str, fakes: RemoteFakes) -> bool:
    code = CHILD.format(here=HERE, base=fakes.base, data=data)
    await fakes.http.post("/config", json={"run_s": 4.0})
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", code, "start", stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.DEVNULL)
    await p.stdout.readline()
    await asyncio.sleep(1.5)
    p.send_signal(signal.SIGKILL)
    await p.wait()
    t_kill = time.time()
    await fakes.refresh()
    before = [x for x in fakes.posts if x["text"].startswith("ending ep9/followed")]
    q = await asyncio.create_subprocess_exec(sys.executable, "-c", code, "resume", stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.DEVNULL)
    await q.stdout.readline()
    t_up = time.time()
    ending: list = []
    while time.time() < t_kill + 20:
        await fakes.refresh()
        ending = [x for x in fakes.posts if x["text"].startswith("ending ep9/followed")]
        if ending:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    await fakes.refresh()
    ending = [x for x in fakes.posts if x["text"].startswith("ending ep9/followed")]
    calls = [c for c in fakes.retries if c["job"] == "followed"]
    q.send_signal(signal.SIGKILL)
    await q.wait()
    print(f"  kill -9 mid-follow; restarted process up {t_up - t_kill:.1f}s later; ending posted {len(ending)}x "
          f"({ending[0]['t'] - t_kill:.1f}s after the kill, before the kill: {len(before)}); /retry calls {len(calls)}")
    return len(ending) == 1 and len(calls) == 1


async def main() -> None:
    fakes = RemoteFakes()
    base = await fakes.start(0.05, 3.0)
    os.environ["SPIKE_FAKES"] = base
    data = tempfile.mkdtemp(prefix="spike-e-")
    try:
        print("part 1: 200 workflows on SQLite, app on aiosqlite (another file), loop lag")
        ok1 = await part1(data, fakes)
        print("part 2: kill -9 mid-follow, restart (SQLite, same executor ID)")
        await fakes.http.post("/reset")
        ok2 = await part2(data, fakes)
    finally:
        await fakes.stop()
        shutil.rmtree(data, ignore_errors=True)
    print("PASS" if ok1 and ok2 else "FAIL")


if __name__ == "__main__":
    asyncio.run(main())
