"""Several real app processes (`python -m bot`) on one PostgreSQL, against the loopback stand-ins.

`Replicas(slack, runpod, pg_url, tmp_path, mode="http", n=3)` starts n replicas with the same settings. In HTTP mode
each request goes to a chosen replica or a random one (a load balancer); in Socket Mode each replica holds its own
websocket to the Slack stand-in, which sends every envelope to a random live one. `kill(i)` is `kill -9`, `term(i)`
is SIGTERM (waits for the exit), `start(i)` starts replica i again. `close()` ends every process it started.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from testkit.env import SIGNING_SECRET, WEBHOOK_SECRET, app_settings, process_env
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.slack import block_actions_payload, form_encode, interaction_form_body, sign, slash_command_body
from testkit.harness import Ack
from testkit.process import port_from_log, spawn, until_healthy

READY_WITHIN = 30.0


@dataclass
class Replica:
    name: str
    log: Path
    process: asyncio.subprocess.Process | None = None
    port: int = 0
    starts: int = 0
    exits: list[int | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def replica_env(slack: FakeSlack, runpod: FakeRunPod, db: str, mode: str, **overrides: str) -> dict[str, str]:
    """The environment of a replica: the settings every replica shares (a slower pace than in-process apps: three
    processes share two cores), then `overrides`."""
    shared = {"RUNPOD_WEBHOOK_SECRET": WEBHOOK_SECRET, "RUNPOD_ALERT_CHANNEL": "CALERTS",
              "RUNPOD_FOLLOW_INTERVAL": "0.2", "RUNPOD_FOLLOW_MAX": "120", "RUNPOD_TIMEOUT": "3",
              "SLACK_PING_INTERVAL": "0.5", "LOG_LEVEL": "INFO", "LOG_FORMAT": "text"}
    return process_env(app_settings(slack, runpod, db, mode=mode, **(shared | overrides)))


class Replicas:
    def __init__(self, slack: FakeSlack, runpod: FakeRunPod, db: str, workdir: Path, *, mode: str = "http",
                 n: int = 3, seed: int | None = None, **env: str) -> None:
        self.slack = slack
        self.runpod = runpod
        self.mode = mode
        self.workdir = workdir
        self.env = replica_env(slack, runpod, db, mode, **env)
        self.replicas = [Replica(f"replica-{i}", workdir / f"replica-{i}.log") for i in range(n)]
        self.rng = random.Random(seed)
        self.http: aiohttp.ClientSession | None = None

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def live(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r.alive and r.port]

    # ---------------------------------------------------------------- processes

    async def __aenter__(self) -> Replicas:
        return await self.start_all()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start_all(self) -> Replicas:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            await asyncio.gather(*(self.start(i, wait_socket=False) for i in range(len(self))))
            if self.mode == "socket":
                await self.wait_sockets()
        except BaseException:
            await self.close()
            raise
        return self

    async def start(self, i: int, *, wait_socket: bool = True, **env: str) -> Replica:
        """Start replica i (again); returns once its /healthz says 200 (and, in Socket Mode, its socket is up)."""
        replica = self.replicas[i]
        assert not replica.alive, f"{replica.name} is already running"
        replica.port = 0
        replica.starts += 1
        with replica.log.open("ab") as out:
            out.write(f"\n===== start {replica.starts} =====\n".encode())
        offset = replica.log.stat().st_size
        replica.process = await spawn([sys.executable, "-m", "bot"], {**self.env, **env}, self.workdir, replica.log)
        deadline = time.monotonic() + READY_WITHIN
        replica.port = await port_from_log(replica.process, replica.log, deadline,
                                           lambda: f"{replica.name}:\n{replica.tail()}", offset=offset)
        assert self.http is not None
        await until_healthy(self.http, replica.url, replica.process, deadline,
                            lambda: f"{replica.name}:\n{replica.tail()}")
        if wait_socket and self.mode == "socket":
            await self.wait_sockets()
        return replica

    async def wait_sockets(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """In Socket Mode: wait until the stand-in holds exactly one socket per live replica."""
        deadline = time.monotonic() + timeout
        while self.slack.live_sockets != len([r for r in self.replicas if r.alive]):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.slack.live_sockets} sockets for {len(self.live)} live replicas")
            await asyncio.sleep(0.02)

    async def kill(self, i: int) -> None:
        """kill -9: no shutdown, no hand-over; its leases simply run out."""
        replica = self.replicas[i]
        assert replica.process is not None
        replica.process.send_signal(signal.SIGKILL)
        replica.exits.append(await replica.process.wait())
        if self.mode == "socket":
            await self.wait_sockets()

    async def term(self, i: int, timeout: float = 15.0) -> float:  # noqa: ASYNC109
        """SIGTERM and wait for the exit (SIGKILL after `timeout`); returns the seconds it took."""
        replica = self.replicas[i]
        assert replica.process is not None
        started = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        try:
            replica.exits.append(await asyncio.wait_for(replica.process.wait(), timeout))
        except TimeoutError:
            replica.process.kill()
            replica.exits.append(await replica.process.wait())
        return time.monotonic() - started

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.alive:
                assert replica.process is not None
                replica.process.kill()
                await replica.process.wait()
        if self.http is not None:
            await self.http.close()
            self.http = None

    def logs(self) -> str:
        return "\n".join(f"----- {r.name} -----\n{r.tail(60)}" for r in self.replicas)

    # ---------------------------------------------------------------- requests, spread over the replicas

    def pick(self, replica: int | None = None) -> Replica:
        if replica is not None:
            return self.replicas[replica]
        live = self.live
        if not live:
            raise RuntimeError("no live replica")
        return self.replicas[self.rng.choice(live)]

    async def healthz(self, i: int) -> tuple[int, Any]:
        assert self.http is not None
        try:
            async with self.http.get(f"{self.replicas[i].url}/healthz") as response:
                text = await response.text()
                return response.status, json.loads(text) if text.startswith("{") else text
        except (aiohttp.ClientError, TimeoutError):
            return 0, None

    async def _slack(self, kind: str, payload: dict[str, Any], body: str, replica: int | None,
                     response_url: str) -> Ack:
        started = time.perf_counter()
        if self.mode == "socket":
            envelope = await self.slack.socket_send(kind, payload, spread=True)
            ack = await self.slack.wait_ack(envelope)
            return Ack(200, ack["payload"] or {}, time.perf_counter() - started, response_url)
        assert self.http is not None
        headers = sign(body, SIGNING_SECRET)
        async with self.http.post(f"{self.pick(replica).url}/slack/events", data=body, headers=headers) as response:
            raw = await response.text()
            try:
                parsed: Any = json.loads(raw) if raw else {}
            except ValueError:
                parsed = raw
            return Ack(response.status, parsed, time.perf_counter() - started, response_url)

    async def command(self, text: str, *, user: str = "U1", channel: str = "C1",
                      replica: int | None = None) -> Ack:
        response_url = self.slack.new_response_url()
        fields = slash_command_body(text, user_id=user, channel_id=channel, response_url=response_url)
        return await self._slack("slash_commands", fields, form_encode(fields), replica, response_url)

    async def click(self, action_id: str, value: str, *, message_ts: str, user: str = "U1",
                    channel: str = "CALERTS", thread_ts: str | None = None, replica: int | None = None) -> Ack:
        response_url = self.slack.new_response_url()
        payload = block_actions_payload(action_id, value, user_id=user, channel_id=channel, message_ts=message_ts,
                                        thread_ts=thread_ts, response_url=response_url)
        return await self._slack("interactive", payload, interaction_form_body(payload), replica, response_url)

    async def interact(self, payload: dict[str, Any], *, replica: int | None = None) -> Ack:
        """Any interaction payload (a message shortcut, a view submission), as Slack sends it."""
        return await self._slack("interactive", payload, interaction_form_body(payload), replica,
                                 str(payload.get("response_url") or ""))

    async def webhook(self, endpoint: str, body: Any, *, replica: int | None = None) -> int:
        """One delivery of RunPod's webhook to a replica; the HTTP status (0: no answer)."""
        assert self.http is not None
        target = self.pick(replica)
        try:
            async with self.http.post(f"{target.url}/runpod/webhook/{endpoint}?token={WEBHOOK_SECRET}",
                                      json=body) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def deliver(self, endpoint: str, body: Any, *, tries: int = 3, gap: float = 10.0) -> list[int]:
        """As RunPod delivers a webhook: again after a non-2xx, up to 2 more times, `gap` seconds apart, each time
        to whichever replica the load balancer picks. Returns the statuses seen."""
        statuses: list[int] = []
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(gap)
            statuses.append(await self.webhook(endpoint, body))
            if 200 <= statuses[-1] < 300:
                break
        return statuses
