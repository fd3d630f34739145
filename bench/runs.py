"""Each section start to end: the stand-ins, the app (or the baseline, or several replicas) as processes, the load."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.auto_storms import FailingStorm, TransientStorm, failing_storm, policy_file, transient_storm
from bench.config import (
    ALERT_CHANNEL,
    AUTO_CHANNEL,
    AUTO_DELAY,
    AUTO_DONE_AFTER,
    AUTO_STORM,
    BOT_TOKEN,
    BURST,
    BURST_RUNS,
    FAILING_ATTEMPTS,
    FAILING_CHANNEL,
    FAILING_DELAY,
    FAILING_ENDPOINT,
    FAILING_JOBS,
    LIMITS_BULK,
    LIMITS_BULK_CONCURRENCY,
    NAIVE_REPLY_CAP,
    ONE_CHANNEL_COMMANDS,
    REPLICAS,
    REPLY_CAP,
    ROOT,
    RUNPOD_KEY,
    STORM_ENDPOINTS,
    STORM_PER_ENDPOINT,
    WEBHOOK_SECRET,
)
from bench.limits import LimitsBulk, Storm, limits_bulk, storm
from bench.one_channel import OneChannel, one_channel
from bench.processes import bench_env, idle, spawn, wait_ready
from bench.scenarios import Bulk, Burst, bulk, burst
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.limits import RunPodLimits, SlackLimits


async def run_one_channel(workdir: Path) -> OneChannel:
    """A fresh app process on SQLite; Slack's per-channel limit enforced by the stand-in, RunPod's not (the app
    paces itself by it, and 10 commands per endpoint stay well within it)."""
    async with (FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits()) as slack,
                FakeRunPod(default_key=RUNPOD_KEY) as runpod):
        proc = await spawn("channel", [sys.executable, "-m", "bot"],
                           bench_env(slack, runpod, workdir / "channel.db", LOG_FORMAT="json"), workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                await asyncio.sleep(1.0)
                print(f"  one channel: {ONE_CHANNEL_COMMANDS} commands at once (about 2 minutes at Slack's pace)…",
                      file=sys.stderr)
                result = await one_channel(proc.port, slack, runpod)
                runpod.latency = 0.0
                await idle(proc, http)
            await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return result


@dataclass
class Limits:
    storm: Storm
    bulk: LimitsBulk


async def run_limits(workdir: Path) -> Limits:
    """One app process; Slack's and RunPod's real limits enforced by the stand-ins."""
    async with (FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits()) as slack,
                FakeRunPod(default_key=RUNPOD_KEY, limits=RunPodLimits()) as runpod):
        env = bench_env(slack, runpod, workdir / "limits.db", LOG_FORMAT="json", RUNPOD_WEBHOOK_SECRET=WEBHOOK_SECRET,
                        RUNPOD_ALERT_CHANNEL=ALERT_CHANNEL, RUNPOD_BULK_CONCURRENCY=str(LIMITS_BULK_CONCURRENCY))
        proc = await spawn("limits", [sys.executable, "-m", "bot"], env, workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                print(f"  real limits: storm of {len(STORM_ENDPOINTS) * STORM_PER_ENDPOINT} failures…",
                      file=sys.stderr)
                storm_result = await storm(proc.port, slack, runpod, http)
                print(f"  real limits: {LIMITS_BULK}-job bulk retry…", file=sys.stderr)
                bulk_result = await limits_bulk(proc.port, slack, runpod)
            await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return Limits(storm_result, bulk_result)


# ---------------------------------------------------------------- several replicas (issue 11)


@dataclass
class Setup:
    name: str
    burst: Burst
    requeued_once: int   # jobs of the burst RunPod requeued exactly once
    requeued_more: int   # ... more than once (must be 0)
    ready: float         # slowest replica: start -> ready


async def run_setup(workdir: Path, name: str, db: str, replicas: int) -> Setup:
    """`replicas` app processes on one database; the burst spread over them round-robin."""
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        env = bench_env(slack, runpod, db, LOG_FORMAT="json")
        procs = [await spawn(f"{name}-{i}", [sys.executable, "-m", "bot"], env, workdir) for i in range(replicas)]
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(*(wait_ready(proc, http, need_200=True) for proc in procs))
                await asyncio.sleep(1.0)
                print(f"  {name}: {replicas} ready; burst…", file=sys.stderr)
                result = await burst([proc.port for proc in procs], slack, runpod, BURST, REPLY_CAP, name)
                runpod.latency = 0.0
                for proc in procs:
                    await idle(proc, http)
            await asyncio.gather(*(proc.stop() for proc in procs))
        finally:
            for proc in procs:
                if proc.process.returncode is None:
                    proc.process.kill()
                    await proc.process.wait()
        counts = runpod.requeued()
        mine = [n for (_, job), n in counts.items() if job.startswith(name)]
    return Setup(name, result, sum(1 for n in mine if n == 1), sum(1 for n in mine if n > 1),
                 max(proc.ready_after for proc in procs))


async def run_replicas(workdir: Path) -> list[Setup]:
    """One replica on SQLite, then REPLICAS on one PostgreSQL (the embedded server the tests use)."""
    from testkit.pg import PostgresServer

    setups = [await run_setup(workdir, "sqlite", str(workdir / "one.db"), 1)]
    with PostgresServer() as server:
        setups.append(await run_setup(workdir, "postgres", server.create_database("bench"), REPLICAS))
    return setups


# ---------------------------------------------------------------- the two implementations


@dataclass
class Row:
    name: str
    runs: list[Burst]
    ready: float
    idle_rss: float
    peak_rss: float
    stop: float | None
    bulk: Bulk | None = None

    @property
    def burst(self) -> Burst | None:
        return Burst.combined(self.runs) if self.runs else None


async def run_app(workdir: Path, sections: set[str]) -> Row:
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        env = bench_env(slack, runpod, workdir / "bench.db", LOG_FORMAT="json")
        proc = await spawn("app", [sys.executable, "-m", "bot"], env, workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                await asyncio.sleep(1.0)
                idle_rss = proc.rss_mb()
                print(f"  app ready in {proc.ready_after:.2f} s, idle RSS {idle_rss:.1f} MB; burst…", file=sys.stderr)
                runs = []
                for run in range(BURST_RUNS if "burst" in sections else 0):
                    runs.append(await burst([proc.port], slack, runpod, BURST, REPLY_CAP, f"burst{run}"))
                    runpod.latency = 0.0  # let the follows finish quickly; they are not measured
                    await idle(proc, http)
                bulk_result = None
                if "bulk" in sections:
                    print("  bulk…", file=sys.stderr)
                    bulk_result = await bulk(proc.port, slack, runpod)
                    runpod.latency = 0.0
                    await idle(proc, http)
                peak = proc.rss_mb("VmHWM")
            stopped = await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return Row("runpod-retry (`python -m bot`: aiohttp + Bolt AsyncApp)", runs, proc.ready_after, idle_rss, peak,
               stopped, bulk_result)


async def run_naive(workdir: Path) -> Row:
    async with FakeSlack(valid_tokens={BOT_TOKEN}) as slack, FakeRunPod(default_key=RUNPOD_KEY) as runpod:
        proc = await spawn("naive", [sys.executable, str(ROOT / "bench" / "naive_app.py")],
                           bench_env(slack, runpod, workdir / "naive.db"), workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=False)
            await asyncio.sleep(1.0)
            idle_rss = proc.rss_mb()
            print(f"  baseline ready in {proc.ready_after:.2f} s; burst (slow, bounded at {NAIVE_REPLY_CAP:.0f} s)…",
                  file=sys.stderr)
            result = await burst([proc.port], slack, runpod, BURST, NAIVE_REPLY_CAP, "naive")
            peak = proc.rss_mb("VmHWM")
        finally:
            proc.process.kill()  # the development server has no graceful shutdown worth measuring
            await proc.process.wait()
    return Row("naive: Bolt sync `App` + `app.start()` dev server", [result], proc.ready_after, idle_rss, peak, None)




# ---------------------------------------------------------------- retry policies (issue 20)


async def run_policy_app(workdir: Path, name: str, channel: str, policies: str, scenario: Any) -> Any:
    """A fresh app process on SQLite with the policy file, both stand-ins at the platforms' real limits, real time;
    `scenario(port, slack, runpod, http, db)` drives it."""
    async with (FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits()) as slack,
                FakeRunPod(default_key=RUNPOD_KEY, limits=RunPodLimits()) as runpod):
        db = workdir / f"{name}.db"
        env = bench_env(slack, runpod, db, LOG_FORMAT="json", RUNPOD_WEBHOOK_SECRET=WEBHOOK_SECRET,
                        RUNPOD_ALERT_CHANNEL=channel, RUNPOD_RETRY_POLICIES=policies)
        assert env["RUNPOD_RETRY_TIME_SCALE"] in ("1", "1.0")
        proc = await spawn(name, [sys.executable, "-m", "bot"], env, workdir)
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(proc, http, need_200=True)
                await asyncio.sleep(1.0)
                result = await scenario(proc.port, slack, runpod, http, db)
            await proc.stop()
        finally:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
    return result


async def run_policies(workdir: Path) -> TransientStorm:
    policies = policy_file(workdir / "storm-policies.toml", "oom-once", ["*"], 1, AUTO_DELAY)
    print(f"  policies: transient storm of {AUTO_STORM} failures (alerts counted {AUTO_DONE_AFTER:.0f} s in)…",
          file=sys.stderr)
    return await run_policy_app(workdir, "policies", AUTO_CHANNEL, policies, transient_storm)


async def run_breaker(workdir: Path) -> FailingStorm:
    policies = policy_file(workdir / "failing-policies.toml", "oom-twice", [FAILING_ENDPOINT], FAILING_ATTEMPTS,
                           FAILING_DELAY)
    print(f"  breaker: {FAILING_JOBS} failures on one endpoint, every retry failing again…", file=sys.stderr)
    return await run_policy_app(workdir, "breaker", FAILING_CHANNEL, policies, failing_storm)
