"""Socket Mode for FakeSlack: apps.connections.open hands out ws:// URLs; envelopes go out, acks come back."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..polling import WAIT, wait_until
from ._server import reset_connection
from .slack_payloads import APP_ID

JSONDict = dict[str, Any]


@dataclass
class _LiveSocket:
    ws: web.WebSocketResponse
    request: web.Request
    n: int


@dataclass
class _Ack:
    frame: JSONDict
    at: float


class SocketModeMixin:
    """Mixed into FakeSlack, which provides `port` and `describe()`."""

    port: int

    if TYPE_CHECKING:  # FakeSlack's own
        def describe(self) -> str: ...

    def _init_socket_mode(self) -> None:
        self.refuse_sockets = False
        self.socket_connections = 0
        self.socket_frames: list[JSONDict] = []
        self._socket_counter = 0
        self._issued_sockets: set[int] = set()
        self._sockets: list[_LiveSocket] = []
        self._sent_at: dict[str, float] = {}
        self._acks: dict[str, _Ack] = {}
        self.socket_rng = random.Random()
        self.socket_sent_to: dict[str, int] = {}  # envelope_id -> the socket (its number in the URL) it went to

    def _connections_open(self, call: Any) -> JSONDict:
        self._socket_counter += 1
        self._issued_sockets.add(self._socket_counter)
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket/{self._socket_counter}"}

    async def _close_sockets(self) -> None:
        for sock in list(self._sockets):
            await sock.ws.close()

    @property
    def live_sockets(self) -> int:
        return len(self._sockets)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"]) if request.match_info["n"].isdigit() else -1
        if n not in self._issued_sockets:
            return web.Response(status=404, text="unknown socket url")
        if self.refuse_sockets:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True, timeout=1.0)
        await ws.prepare(request)
        self.socket_connections += 1
        await ws.send_json({
            "type": "hello", "num_connections": len(self._sockets) + 1,
            "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": APP_ID},
        })
        sock = _LiveSocket(ws, request, n)
        self._sockets.append(sock)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_frame(msg.data)
        finally:
            self._sockets.remove(sock)
        return ws

    def _on_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = {"_raw": data}
        if not isinstance(frame, dict):
            frame = {"_raw": frame}
        self.socket_frames.append(frame)
        envelope_id = frame.get("envelope_id")
        if isinstance(envelope_id, str) and envelope_id not in self._acks:
            self._acks[envelope_id] = _Ack(frame, time.monotonic())

    async def wait_socket(self, timeout: float = WAIT) -> int:  # noqa: ASYNC109
        """Wait until at least one socket is connected (and greeted); returns the live count."""
        count: int = await wait_until(lambda: self.live_sockets, timeout, self._describe_sockets, step=0.01)
        return count

    async def socket_send(self, type_: str, payload: JSONDict, accepts_response_payload: bool = True, *,
                          spread: bool = False) -> str:
        """Send an envelope to the newest live socket (`spread`: to a random one, as Slack does when an app holds
        several connections); returns its envelope_id."""
        if not self._sockets:
            raise RuntimeError("no live Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        envelope: JSONDict = {
            "envelope_id": envelope_id, "type": type_, "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if type_ == "events_api":
            envelope |= {"retry_attempt": 0, "retry_reason": ""}
        self._sent_at[envelope_id] = time.monotonic()
        # A connection its client is closing (a reconnect after missed pings on a loaded machine) cannot take it:
        # Slack delivers the envelope on another of the app's connections, as here.
        failed: set[int] = set()

        def usable() -> list[_LiveSocket]:
            return [sock for sock in self._sockets if not sock.ws.closed and id(sock) not in failed]

        while True:
            live = await wait_until(usable, WAIT, self._describe_sockets, step=0.01)
            sock = self.socket_rng.choice(live) if spread else live[-1]
            self.socket_sent_to[envelope_id] = sock.n
            try:
                await sock.ws.send_json(envelope)
                return envelope_id
            except ConnectionResetError:  # aiohttp's ClientConnectionResetError among them
                failed.add(id(sock))

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the newest socket's client to reconnect, as Slack does every few hours."""
        if not self._sockets:
            raise RuntimeError("no live Socket Mode connection")
        await self._sockets[-1].ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {}})

    async def wait_ack(self, envelope_id: str, timeout: float = WAIT) -> JSONDict:  # noqa: ASYNC109
        """{"payload": the ack's payload or None, "latency": seconds from send to ack, "frame": raw ack}."""
        ack: _Ack = await wait_until(lambda: self._acks.get(envelope_id), timeout, self._describe_sockets, step=0.01)
        return {
            "payload": ack.frame.get("payload"),
            "latency": ack.at - self._sent_at.get(envelope_id, ack.at),
            "frame": ack.frame,
        }

    async def drop_sockets(self) -> None:
        """Kill every live socket without a close frame (TCP reset), like a network drop."""
        for sock in list(self._sockets):
            reset_connection(sock.request.transport)
        await wait_until(lambda: not self._sockets, 2.0, self._describe_sockets, step=0.01)

    def _describe_sockets(self) -> str:
        return (f"live sockets: {self.live_sockets}, connections so far: {self.socket_connections}, "
                f"frames received: {self.socket_frames}\n{self.describe()}")
