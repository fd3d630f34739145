"""Real `python -m bot` processes against the loopback stand-ins, for the tests and the benchmark.

The pieces every runner shares: `spawn` (its output into a log file), `port_from_log` (the app says which port it
listens on), `until_healthy` (its /healthz answers). `AppProcess` is one app for the tests that stop it for real
(SIGTERM): its own port, its own SQLite file in the test's folder, its log (stderr) collected line by line.
Several replicas on one database are in testkit/replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from testkit.env import WEBHOOK_SECRET, app_settings, process_env

PORT_LINE = re.compile(r"listening on port (\d+)")


# How long a started app may take to answer /healthz: "not stuck", with room for a machine busy with other work
# (an app with retry policies also imports and launches its durable-work engine first).
READY_WITHIN = 60.0

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def spawn(argv: list[str], env: dict[str, str], workdir: Path, log: Path) -> asyncio.subprocess.Process:
    """Start `argv` in `workdir`, its stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(*argv, env=env, cwd=workdir, stdout=out,
                                                    stderr=asyncio.subprocess.STDOUT)


async def port_from_log(process: asyncio.subprocess.Process, log: Path, deadline: float,
                        describe: Callable[[], str], *, offset: int = 0, step: float = 0.02) -> int:
    """The port the app's log says it listens on, read from `offset` on; RuntimeError if it exits or time is up."""
    while True:
        with log.open("rb") as f:
            f.seek(offset)
            match = PORT_LINE.search(f.read().decode(errors="replace"))
        if match:
            return int(match.group(1))
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"did not start:\n{describe()}")
        await asyncio.sleep(step)


async def until_healthy(http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, deadline: float,
                        describe: Callable[[], str], *, need_200: bool = True, step: float = 0.05) -> None:
    """Until `url`/healthz answers 200 (any answer if not `need_200`: a server without that route); RuntimeError
    if the process exits or time is up."""
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{url}/healthz") as response:
                await response.read()
                if response.status == 200 or not need_200:
                    return
        if process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"never became ready:\n{describe()}")
        await asyncio.sleep(step)


class AppProcess:
    """`async with AppProcess(slack, runpod, tmp_path, RUNPOD_ALERT_CHANNEL="C…") as app:` returns once /healthz
    says 200; leaving the block kills the process if it is still running."""

    def __init__(self, slack: Any, runpod: Any, workdir: Path, **settings: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = process_env(app_settings(slack, runpod, workdir / "runpod-retry.db", PORT=str(self.port),
                                            RUNPOD_WEBHOOK_SECRET=WEBHOOK_SECRET, LOG_FORMAT="text", **settings))
        self.log: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def text(self) -> str:
        return "".join(self.log)

    async def __aenter__(self) -> AppProcess:
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=self.workdir,
                                                         env=self.env, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        try:
            async with aiohttp.ClientSession() as http:
                await until_healthy(http, self.base, self.proc, time.monotonic() + READY_WITHIN, lambda: self.text)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line.decode(errors="replace"))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout=timeout)
