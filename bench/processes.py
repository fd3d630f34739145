"""The app and the baseline as processes of their own, started and watched as the tests start theirs
(testkit/process.py): the port from the log, then /healthz. Each keeps its log in the run's folder."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.config import READY_CAP
from testkit.env import app_settings, process_env
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.process import port_from_log, until_healthy
from testkit.process import spawn as spawn_logged

STEP = 0.005  # polls this often while starting: "start → ready" is one of the figures


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    spawned: float
    port: int = 0
    ready_after: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def stop(self, timeout: float = 15.0) -> float:  # noqa: ASYNC109
        """SIGTERM, then wait; returns seconds to exit (kills after `timeout`)."""
        if self.process.returncode is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        return time.monotonic() - started


async def spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Proc:
    log = workdir / f"{name}.log"
    spawned = time.monotonic()
    process = await spawn_logged(argv, env, workdir, log)
    return Proc(name, process, log, spawned)


async def wait_ready(proc: Proc, http: aiohttp.ClientSession, *, need_200: bool) -> None:
    """Port from the log line, then the first answer on /healthz (200 for the app; any answer for the baseline,
    whose development server has no health route)."""
    deadline = proc.spawned + READY_CAP

    def describe() -> str:
        return f"{proc.name}:\n{proc.log_tail()}"

    proc.port = await port_from_log(proc.process, proc.log, deadline, describe, step=STEP)
    await until_healthy(http, proc.url, proc.process, deadline, describe, need_200=need_200, step=STEP)
    proc.ready_after = time.monotonic() - proc.spawned


def bench_env(slack: FakeSlack, runpod: FakeRunPod, db: str | Path, **settings: str) -> dict[str, str]:
    """The app as deployed (its own defaults: none of the tests' shrunk pace), against the stand-ins."""
    return process_env(app_settings(slack, runpod, db, **settings))


async def idle(proc: Proc, http: aiohttp.ClientSession, timeout: float = 20.0) -> bool:  # noqa: ASYNC109
    """Wait until the app reports no background work (follows included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"{proc.url}/healthz") as response:
            if (await response.json()).get("in_flight") == 0:
                return True
        await asyncio.sleep(0.1)
    return False
