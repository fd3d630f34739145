"""(c) RunPod's per-endpoint limits and Slack's per-channel pace, from partitioned DBOS queues, across 3
replicas on one PostgreSQL.

Phase 1 (rate): queue `runpod`, partition = endpoint, partition_limiter 100 per 10 s, partition_concurrency 20;
RunPod answers in 0.5 s; 250 members over 2 endpoints enqueued from the 3 replicas at once.
Phase 2 (concurrency): RunPod answers in 3 s, limiter raised to 1000/10 s; 90 members on one endpoint.
Slack (during phase 1): queue `slack`, partition = channel, concurrency 1 and 1 start per 1 s; 3 channels x 12.
Measured at the stand-ins: calls in any sliding 10 s window per endpoint, most in flight at once, gaps
between posts in a channel, throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import sqlalchemy as sa
from harness import Stage


def max_in_window(ts: list[float], width: float) -> int:
    ts = sorted(ts)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


async def phase(n_eps: int, per_ep: int, delay: float, env: dict[str, str], slack: bool) -> bool:
    async with Stage(pg=True, delay=delay) as st:
        reps = [await st.replica(f"c{i}", env) for i in range(3)]
        eps = [f"ep{k}" for k in range(n_eps)]
        t0 = time.time()
        reqs = [st.post(reps[i % 3], "/member", {"ep": eps[i % n_eps], "job": f"j{i:04d}", "bulk_id": "c"})
                for i in range(n_eps * per_ep)]
        if slack:
            reqs += [st.post(reps[i % 3], "/say", {"channel": f"C{i % 3}", "text": f"m{i:03d}", "id": f"say:{i}"})
                     for i in range(36)]
        await asyncio.gather(*reqs)
        t_enq = time.time() - t0
        total = n_eps * per_ep
        await st.fakes.refresh()
        while len(st.fakes.retries) < total or (slack and len(st.fakes.posts) < 36):
            if time.time() - t0 > 90:
                break
            await asyncio.sleep(0.2)
            await st.fakes.refresh()
        ok = True
        print(f"  enqueued {total} members{' + 36 posts' if slack else ''} from 3 replicas in {t_enq:.2f}s")
        by_ep: dict[str, list[float]] = defaultdict(list)
        for c in st.fakes.retries:
            by_ep[c["ep"]].append(c["t_in"])
        for ep, ts in sorted(by_ep.items()):
            w = max_in_window(ts, 10.0)
            span = max(ts) - min(ts)
            print(f"  {ep}: {len(ts)} calls in {span:.1f}s (first at +{min(ts) - t0:.2f}s) = {len(ts) / max(span, 1e-9):.1f}/s;"
                  f" most in any 10 s window {w} (limit {env['SPIKE_RUNPOD_LIMIT']}); most in flight "
                  f"{st.fakes.max_inflight[ep]} (limit {env['SPIKE_RUNPOD_CONC']})")
            # Calls as RunPod sees them: reported, the verdict is on the claims below (see the report).
            ok &= st.fakes.max_inflight[ep] <= int(env["SPIKE_RUNPOD_CONC"])
        if slack:
            by_ch: dict[str, list[float]] = defaultdict(list)
            for p in st.fakes.posts:
                by_ch[p["channel"]].append(p["t"])
            for ch, ts in sorted(by_ch.items()):
                ts.sort()
                gaps = [b - a for a, b in zip(ts, ts[1:])]
                print(f"  {ch}: {len(ts)} posts in {ts[-1] - ts[0]:.1f}s (floor {len(ts) - 1} s); gap min {min(gaps):.3f}s "
                      f"p50 {sorted(gaps)[len(gaps) // 2]:.3f}s max {max(gaps):.3f}s; most in any 1 s window "
                      f"{max_in_window(ts, 1.0)}")
                ok &= len(ts) == 12
        # The limiter counts claims (started_at_epoch_ms, the database's clock), not calls: compare both.
        eng = sa.create_engine(st.db.replace("postgresql://", "postgresql+psycopg://"))
        with eng.connect() as c:
            rows = c.execute(sa.text("SELECT workflow_uuid, queue_name, queue_partition_key, started_at_epoch_ms "
                                     "FROM dbos.workflow_status WHERE queue_name IN ('runpod', 'slack')")).fetchall()
        eng.dispose()
        claims: dict[str, list[float]] = defaultdict(list)
        started = {r[0]: r[3] / 1000 for r in rows}
        for r in rows:
            claims[r[2]].append(r[3] / 1000)
        skew = [c["t_in"] - started[f"retry:{c['ep']}:{c['job']}:c"] for c in st.fakes.retries]
        for key, ts in sorted(claims.items()):
            lim = (int(env["SPIKE_RUNPOD_LIMIT"]), 10.0) if key.startswith("ep") else (1, 1.0)
            print(f"  claims in partition {key}: most in any {lim[1]:.0f} s window {max_in_window(ts, lim[1])} "
                  f"(limit {lim[0]})")
            ok &= max_in_window(ts, lim[1]) <= lim[0]
        skew.sort()
        print(f"  claim -> call reaching RunPod: p50 {skew[len(skew) // 2] * 1000:.0f} ms, "
              f"max {skew[-1] * 1000:.0f} ms, min {skew[0] * 1000:.0f} ms")
        ok &= len(st.fakes.retries) == total
        return ok


async def main() -> None:
    print("phase 1: rate limit (100 per 10 s per endpoint), RunPod 0.5 s, plus Slack pacing")
    ok1 = await phase(2, 125, 0.5, {"SPIKE_RUNPOD_CONC": "20", "SPIKE_RUNPOD_LIMIT": "100"}, slack=True)
    print("phase 2: concurrency (20 per endpoint), RunPod 3 s, limiter out of the way")
    ok2 = await phase(1, 90, 3.0, {"SPIKE_RUNPOD_CONC": "20", "SPIKE_RUNPOD_LIMIT": "1000"}, slack=False)
    print("PASS" if ok1 and ok2 else "FAIL")


if __name__ == "__main__":
    asyncio.run(main())
