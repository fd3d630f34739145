"""What every spike script shares: a throwaway PostgreSQL (pg.py, copied from tests/pg.py), the stand-ins
in this process, replicas as real OS processes, and a small HTTP helper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from testkit.pg import PostgresServer

HERE = Path(__file__).resolve().parent
LOGS = HERE / "logs"
LOGS.mkdir(exist_ok=True)


class Replica:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, port: int, launch_ms: str) -> None:
        self.name, self.proc, self.port, self.launch_ms = name, proc, port, launch_ms
        self.lines: list[tuple[float, str]] = []
        self.url = f"http://127.0.0.1:{port}"
        self._reader = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append((time.time(), line.decode().rstrip()))

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self._reader.cancel()


async def start_replica(sys_db: str, name: str, fakes_base: str, env: dict[str, str] | None = None) -> Replica:
    errlog = open(LOGS / f"{name}.stderr", "w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "replica.py"), sys_db, name, fakes_base, cwd=HERE,
        stdout=asyncio.subprocess.PIPE, stderr=errlog, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"READY"):
        raise RuntimeError(f"replica {name} did not start: {line!r}; see logs/{name}.stderr")
    _, port, launch = line.decode().split()
    return Replica(name, proc, int(port), launch)


class RemoteFakes:
    """The stand-ins, run as their own process; `await refresh()` copies what they recorded."""

    def __init__(self) -> None:
        self.retries: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []
        self.max_inflight: dict[str, int] = {}
        self.status_calls = 0

    async def start(self, delay: float, run_s: float) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "fakes.py"), str(delay), str(run_s), cwd=HERE, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.base = line.decode().split()[1]
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30)
        return self.base

    async def refresh(self) -> None:
        d = (await self.http.get("/stats")).json()
        self.retries, self.posts, self.max_inflight = d["retries"], d["posts"], d["max_inflight"]
        self.status_calls = d["status_calls"]

    async def stop(self) -> None:
        await self.http.aclose()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class Stage:
    """PostgreSQL (optional), the stand-ins, and the replicas of one experiment; all stopped on exit."""

    def __init__(self, *, pg: bool = True, delay: float = 0.05, run_s: float = 3.0) -> None:
        self.use_pg = pg
        self.fakes = RemoteFakes()
        self._fake_args = (delay, run_s)
        self.replicas: list[Replica] = []
        self.pg: PostgresServer | None = None
        self.db = ""

    async def __aenter__(self) -> Stage:
        if self.use_pg:
            self.pg = await asyncio.to_thread(PostgresServer().start)
            self.db = self.pg.create_database("spike")
        self.base = await self.fakes.start(*self._fake_args)
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400))
        return self

    async def replica(self, name: str, env: dict[str, str] | None = None, sys_db: str | None = None) -> Replica:
        r = await start_replica(sys_db or self.db, name, self.base, env)
        self.replicas.append(r)
        return r

    async def post(self, r: Replica, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.http.post(r.url + path, json=body)
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    async def status(self, r: Replica, wf_id: str) -> str | None:
        resp = await self.http.get(f"{r.url}/wf/{wf_id}")
        return resp.json()["status"]  # type: ignore[no-any-return]

    async def __aexit__(self, *exc: object) -> None:
        for r in self.replicas:
            await r.stop()
        await self.http.aclose()
        await self.fakes.stop()
        if self.pg is not None:
            await asyncio.to_thread(self.pg.stop)


def tracebacks(name: str) -> int:
    p = LOGS / f"{name}.stderr"
    return p.read_text(errors="replace").count("Traceback") if p.exists() else 0
