"""Plumbing shared by the stand-ins: an aiohttp app on 127.0.0.1:<free port>."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Any, Self

from aiohttp import web


def reset_connection(transport: Any) -> None:
    """Drop a connection abruptly: SO_LINGER 0 makes the close send RST, so the peer sees a reset."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class LoopbackServer:
    """Base class: subclasses build the aiohttp app; `start()` binds a free port on 127.0.0.1."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._stopping.set()  # cut scripted delays short so in-flight handlers finish now
        await self.before_stop()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self._stopping.clear()

    async def sleep(self, seconds: float) -> None:
        """A scripted delay that ends early when the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def before_stop(self) -> None:
        """Hook: close long-lived connections so cleanup is quick."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
