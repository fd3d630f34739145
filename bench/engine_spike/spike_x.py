"""The extra questions, measured:

x1  costs: launch(); a workflow with one no-op step, started and awaited one at a time; a step (100 in one
    workflow); on SQLite and PostgreSQL. In one process, DBOS.destroy() + a new DBOS between them.
x2  is DBOS a process-wide singleton? A second DBOS(config=B) while A exists.
x3  PostgreSQL frozen (SIGSTOP) for 5 s, then restarted, in the middle of a workflow: does it survive, what
    is logged; and launch() while PostgreSQL is down.
x4  application_version: a PENDING workflow of version v1 whose replica died; a v2 replica's recovery call,
    then a v1 replica's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import RemoteFakes, Stage

from testkit.pg import PostgresServer


async def destroy() -> float:
    """DBOS.destroy() off the loop, then give the loop a default executor back: DBOS installs its own thread pool
    as the loop's default executor and destroy() shuts it down, so any later asyncio.to_thread() on this loop
    raises "cannot schedule new futures after shutdown"."""
    from concurrent.futures import ThreadPoolExecutor

    import wf
    from dbos import DBOS
    t = time.perf_counter()
    await asyncio.to_thread(DBOS.destroy)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
    wf.QUEUES.clear()
    return (time.perf_counter() - t) * 1000


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summary(self) -> str:
        warn = sum(r.levelno == logging.WARNING for r in self.records)
        err = sum(r.levelno >= logging.ERROR for r in self.records)
        tb = sum(r.exc_info is not None for r in self.records)
        return f"{warn} warnings, {err} errors, {tb} with tracebacks"


async def x1_x2(pg: PostgresServer, tmp: str) -> None:
    import wf
    from dbos import DBOS

    @DBOS.step()
    async def noop() -> int:
        return 1

    @DBOS.workflow()
    async def one_step() -> int:
        return await noop()

    @DBOS.workflow()
    async def many_steps(n: int) -> int:
        return sum([await noop() for _ in range(n)])

    for name, url in (("sqlite", f"sqlite:///{tmp}/x1.sqlite"), ("postgres", pg.create_database("x1"))):
        launch_ms = await wf.launch(url, "x1")
        t = time.perf_counter()
        for _ in range(20):
            await (await DBOS.start_workflow_async(one_step)).get_result()
        wf_ms = (time.perf_counter() - t) / 20 * 1000
        t = time.perf_counter()
        await (await DBOS.start_workflow_async(many_steps, 100)).get_result()
        step_ms = (time.perf_counter() - t) / 100 * 1000
        t = time.perf_counter()
        await (await DBOS.start_workflow_async(one_step)).get_result()
        print(f"x1 {name:8}: launch() {launch_ms:.0f} ms; workflow with 1 step, start to result {wf_ms:.1f} ms; "
              f"one more step {step_ms:.1f} ms")
        if name == "sqlite":
            from dbos._dbos import _get_dbos_instance
            a = _get_dbos_instance()
            b = DBOS(config=wf.config(f"sqlite:///{tmp}/other.sqlite", "other"))
            print(f"x2: DBOS(config=B) while A lives returns A itself: {a is b}; B's system database created: "
                  f"{os.path.exists(f'{tmp}/other.sqlite')}")
        print(f"x1 {name:8}: destroy() {await destroy():.0f} ms")


def pg_pids(pg: PostgresServer) -> list[int]:
    assert pg.root is not None
    master = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == master:
                kids.append(int(d))
    return [master, *kids]


async def x3(pg: PostgresServer, fakes: RemoteFakes) -> None:
    import wf
    from dbos import DBOS, SetWorkflowID

    @DBOS.workflow()
    async def ticking(n: int) -> int:
        done = 0
        for _ in range(n):
            await wf.runpod_status("ep", "x3")
            await DBOS.sleep_async(0.25)
            done += 1
        return done

    handler = Counter()
    logging.getLogger("dbos").addHandler(handler)
    url = pg.create_database("x3")
    await wf.launch(url, "x3")
    for what in ("freeze", "restart"):
        handler.records.clear()
        await fakes.http.post("/reset")
        with SetWorkflowID(f"x3-{what}"):
            h = await DBOS.start_workflow_async(ticking, 40)
        await asyncio.sleep(2)
        t = time.time()
        if what == "freeze":
            pids = pg_pids(pg)
            for p in pids:
                os.kill(p, signal.SIGSTOP)
            await asyncio.sleep(5)
            for p in pids:
                os.kill(p, signal.SIGCONT)
        else:
            await asyncio.to_thread(pg.halt, "immediate")
            await asyncio.sleep(3)
            await asyncio.to_thread(pg.resume)
        try:
            result = await asyncio.wait_for(h.get_result(), 60)
            end = f"finished, {result}/40 iterations, {time.time() - t:.1f}s after the outage began"
        except Exception as exc:
            end = f"did NOT finish: {type(exc).__name__}: {exc}"
        await fakes.refresh()
        print(f"x3 PostgreSQL {what} mid-workflow: workflow {end}; status calls {fakes.status_calls} "
              f"(40 if none repeated); DBOS logged {handler.summary()}")
        kinds = sorted({r.getMessage()[:110] for r in handler.records if r.levelno >= logging.WARNING})
        for k in kinds[:6]:
            print(f"      e.g. {k}")
    await destroy()
    # launch() with PostgreSQL down
    await asyncio.to_thread(pg.halt, "immediate")
    t = time.perf_counter()
    try:
        await wf.launch(url, "x3b")
        out = "succeeded"
    except Exception as exc:
        out = f"raised {type(exc).__name__}: {str(exc)[:120]}"
    print(f"x3 launch() with PostgreSQL down: {out} after {(time.perf_counter() - t):.1f}s")
    from dbos._dbos import _get_dbos_instance
    try:
        _get_dbos_instance()
        await destroy()
    except Exception as exc:
        print(f"x3 after the failed launch there is no DBOS instance left ({type(exc).__name__})")
    await asyncio.to_thread(pg.resume)
    logging.getLogger("dbos").removeHandler(handler)


async def x4() -> None:
    async with Stage(pg=True, delay=0.05, run_s=6.0) as st:
        v1 = await st.replica("v1a", {"SPIKE_VERSION": "v1"})
        v2 = await st.replica("v2a", {"SPIKE_VERSION": "v2"})
        await st.post(v1, "/click", {"ep": "ep", "job": "x4", "who": "dana", "channel": "C", "id": "r:x4",
                                     "follow_every": 0.5})
        await asyncio.sleep(1.0)
        v1.kill9()
        t = time.time()
        await asyncio.sleep(9)
        await st.fakes.refresh()
        ending = [p for p in st.fakes.posts if p["text"].startswith("ending ep/x4")]
        recov = [ln for _, ln in v2.lines if ln.startswith("RECOVERED v1a")]
        print(f"x4 v1 replica killed mid-follow; v2 replica's recovery calls: {recov}; ending posted after 9 s: "
              f"{len(ending)}; status of follow: {await st.status(v2, 'follow:r:x4')}")
        v1b = await st.replica("v1b", {"SPIKE_VERSION": "v1"})
        while time.time() < t + 30:
            await st.fakes.refresh()
            ending = [p for p in st.fakes.posts if p["text"].startswith("ending ep/x4")]
            if ending:
                break
            await asyncio.sleep(0.3)
        recov = [ln for _, ln in v1b.lines if ln.startswith("RECOVERED")]
        print(f"x4 then a v1 replica started: its recovery calls {recov}; ending posted {len(ending)}x, "
              f"{(ending[0]['t'] - t) if ending else float('nan'):.1f}s after the kill")


async def main() -> None:
    fakes = RemoteFakes()
    os.environ["SPIKE_FAKES"] = await fakes.start(0.05, 3.0)
    tmp = tempfile.mkdtemp(prefix="spike-x-")
    pg = PostgresServer().start()
    try:
        if "--x4-only" not in sys.argv:
            await x1_x2(pg, tmp)
            await x3(pg, fakes)
    finally:
        pg.stop()
        await fakes.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    await x4()


if __name__ == "__main__":
    asyncio.run(main())
