"""(b) kill -9 of the replica running a follow and a bulk run: another replica resumes both, without DBOS's
hosted service (Conductor).

How: every replica launches DBOS with its own executor_id and beats in `app_executors` every second; a replica
that sees another silent for 5 s re-arms its row and calls DBOS._recover_pending_workflows([dead_id]), which
flips that executor's PENDING workflows back to ENQUEUED (their own queue, or DBOS's internal queue), where any
live replica dequeues them. Checked per round: every member retried once, one summary, one ending, and the
time from the kill to both finishing. Each round kills at a different moment; a fresh replica replaces the dead.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

from harness import Stage, tracebacks

ROUNDS = [0.8, 1.6, 2.4]   # seconds after the bulk run starts when the victim is killed
MEMBERS = 15


async def main() -> None:
    env = {"SPIKE_RUNPOD_CONC": "3"}   # 3 at a time per endpoint, RunPod at 0.4 s: a bulk run takes ~2 s+
    if "--no-marker" in sys.argv:
        env["SPIKE_NO_MARKER"] = "1"
    async with Stage(pg=True, delay=0.4, run_s=8.0) as st:
        reps = [await st.replica(f"b{i}", env) for i in range(3)]
        all_ok = True
        for rnd, kill_at in enumerate(ROUNDS):
            victim = reps[0]
            ep, bulk_id, chan = f"ep{rnd}", f"bulk{rnd}", f"C{rnd}"
            fjob = f"follow-{rnd}"
            # The followed job: retried, then followed on the victim (poll every 1 s, job ends 8 s after retry).
            await st.post(victim, "/click", {"ep": ep, "job": fjob, "who": "dana", "channel": chan,
                                             "id": f"r:{fjob}", "follow_every": 1.0})
            jobs = [f"j{rnd}-{k:02d}" for k in range(MEMBERS)]
            t0 = time.time()
            await st.post(victim, "/bulk", {"bulk_id": bulk_id, "ep": ep, "jobs": jobs, "channel": chan})
            await asyncio.sleep(kill_at)
            await st.fakes.refresh()
            done_before = sum(1 for c in st.fakes.retries if c["job"] in jobs)
            t_kill = time.time()
            victim.kill9()
            print(f"round {rnd}: killed {victim.name} {kill_at}s into the bulk run; members retried before the kill: "
                  f"{done_before}/{MEMBERS}")
            # Wait for the summary and the ending (bounded).
            deadline = t_kill + 40
            summary = ending = []
            while time.time() < deadline:
                await st.fakes.refresh()
                summary = [p for p in st.fakes.posts if p["text"].startswith(f"summary {bulk_id}")]
                ending = [p for p in st.fakes.posts if p["text"].startswith(f"ending {ep}/{fjob}")]
                if summary and ending:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)   # let any duplicate show itself
            await st.fakes.refresh()
            summary = [p for p in st.fakes.posts if p["text"].startswith(f"summary {bulk_id}")]
            ending = [p for p in st.fakes.posts if p["text"].startswith(f"ending {ep}/{fjob}")]
            per_job = Counter(c["job"] for c in st.fakes.retries if c["job"] in jobs)
            recov = [(t, line) for r in reps[1:] for t, line in r.lines if line.startswith(f"RECOVERED {victim.name}")]
            first_recov = min((t for t, _ in recov), default=float("nan"))
            s_t = summary[0]["t"] - t_kill if summary else float("nan")
            e_t = ending[0]["t"] - t_kill if ending else float("nan")
            ok = (len(per_job) == MEMBERS and set(per_job.values()) == {1} and len(summary) == 1 and len(ending) == 1
                  and s_t < 30 and e_t < 30)
            all_ok &= ok
            print(f"  recovery call {first_recov - t_kill:.1f}s after the kill ({[l for _, l in recov]}); "
                  f"summary {len(summary)}x at +{s_t:.1f}s ({summary[0]['text'] if summary else '-'}); "
                  f"ending {len(ending)}x at +{e_t:.1f}s; /retry per member: {sorted(Counter(per_job.values()).items())}"
                  f"; bulk took {((summary[0]['t'] if summary else t0) - t0):.1f}s -> {'PASS' if ok else 'FAIL'}")
            # Replace the dead replica with a fresh one (new executor ID), as an orchestrator would.
            reps[0] = await st.replica(f"b{rnd + 3}", env)
            reps = [reps[1], reps[2], reps[0]]   # the next victim is another replica
        tb = {r.name: tracebacks(r.name) for r in st.replicas}
        print(f"tracebacks per replica log: {tb}")
        print("PASS" if all_ok else "FAIL")


if __name__ == "__main__":
    asyncio.run(main())
