"""One real `python -m bot` process against the loopback stand-ins, for the tests that stop it for real (SIGTERM):
its own port, its own SQLite file in the test's folder, its log (stderr) collected line by line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from testkit.harness import BOT_TOKEN, RUNPOD_KEY, SIGNING_SECRET, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """`async with AppProcess(slack, runpod, tmp_path, RUNPOD_ALERT_CHANNEL="C…") as app:` returns once /healthz
    says 200; leaving the block kills the process if it is still running."""

    def __init__(self, slack: Any, runpod: Any, workdir: Path, **settings: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.env |= {"PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": BOT_TOKEN, "RUNPOD_API_KEY": RUNPOD_KEY,
                     "SLACK_SIGNING_SECRET": SIGNING_SECRET, "RUNPOD_API_URL": runpod.url,
                     "SLACK_API_URL": slack.api_url, "PORT": str(self.port),
                     "RUNPOD_RETRY_DB": str(workdir / "runpod-retry.db"), "RUNPOD_WEBHOOK_SECRET": WEBHOOK_SECRET,
                     "LOG_FORMAT": "text", **settings}
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
            await self._healthy(20.0)
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

    async def _healthy(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                assert self.proc is not None and self.proc.returncode is None, self.text
                assert time.monotonic() < deadline, f"not healthy within {timeout:g} s:\n{self.text}"
                await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout=timeout)
