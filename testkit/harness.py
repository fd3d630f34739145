"""The real app, started against the loopback stand-ins, and the ways a test talks to it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.models.blocks import Block

from bot.app.server import App
from bot.infra.config import load_settings
from testkit.env import SIGNING_SECRET, TEST_PACE, WEBHOOK_SECRET, app_settings
from testkit.fakes import FakeRunPod, FakeSlack, SlackFault, block_problems
from testkit.fakes.slack import block_actions_payload, form_encode, interaction_form_body, sign, slash_command_body

# Slack shows the person an error when an ack takes longer than this. The tests hold every ack to it (what a person
# would notice); how fast the acks really are (p50, p99) is the benchmark's figure, which an idle machine gives.
ACK_DEADLINE = 3.0


@dataclass
class Ack:
    status: int
    body: Any
    latency: float
    response_url: str

    @property
    def text(self) -> str:
        return json.dumps(self.body) if not isinstance(self.body, str) else self.body


class Harness:
    """One app instance. `mode` is "http" (signed requests into /slack/events) or "socket" (envelopes)."""

    def __init__(self, slack: FakeSlack, runpod: FakeRunPod, tmp_path: Path, mode: str = "http", **env: str):
        self.slack = slack
        self.runpod = runpod
        self.mode = mode
        self.env = app_settings(slack, runpod, tmp_path / "runpod-retry.db", mode=mode,
                                RUNPOD_WEBHOOK_SECRET=WEBHOOK_SECRET, RUNPOD_ALERT_CHANNEL="CALERTS", **TEST_PACE)
        self.env.update(env)
        self.app: App | None = None
        self.http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.app is not None and self.app.port
        return f"http://127.0.0.1:{self.app.port}"

    @property
    def rt(self) -> Any:
        assert self.app is not None
        return self.app.rt

    async def start(self) -> Harness:
        self.app = App(load_settings(self.env))
        await self.app.start(host="127.0.0.1")
        self.http = aiohttp.ClientSession()
        if self.mode == "socket":
            await self.slack.wait_socket()
        return self

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.app is not None:
            await self.app.stop()

    async def restart(self, **env: str) -> None:
        """Stop and start a new app on the same database (what a deploy does)."""
        await self.stop()
        self.env.update(env)
        await self.start()

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the app has finished every piece of work it started (follows included) and Slack has
        every message it queued."""
        await self.rt.background.idle(timeout)
        await self.rt.outbox.idle(timeout)
        await self.rt.background.idle(timeout)

    # ---------------------------------------------------------------- Slack → app

    async def post_signed(self, body: str, content_type: str = "application/x-www-form-urlencoded",
                          secret: str = SIGNING_SECRET, timestamp: int | None = None) -> tuple[int, Any, float]:
        assert self.http is not None
        headers = sign(body, secret, timestamp)
        headers["Content-Type"] = content_type
        started = time.perf_counter()
        async with self.http.post(f"{self.url}/slack/events", data=body, headers=headers) as response:
            raw = await response.text()
            latency = time.perf_counter() - started
            try:
                parsed: Any = json.loads(raw) if raw else {}
            except ValueError:
                parsed = raw
            return response.status, parsed, latency

    async def command(self, text: str, *, user: str = "U1", channel: str = "C1") -> Ack:
        response_url = self.slack.new_response_url()
        fields = slash_command_body(text, user_id=user, channel_id=channel, response_url=response_url)
        if self.mode == "socket":
            started = time.perf_counter()
            envelope = await self.slack.socket_send("slash_commands", fields)
            ack = await self.slack.wait_ack(envelope)
            return Ack(200, ack["payload"] or {}, time.perf_counter() - started, response_url)
        status, body, latency = await self.post_signed(form_encode(fields))
        return Ack(status, body, latency, response_url)

    async def click(self, action_id: str, value: str, *, message_ts: str, user: str = "U1",
                    channel: str = "CALERTS", thread_ts: str | None = None) -> Ack:
        response_url = self.slack.new_response_url()
        payload = block_actions_payload(action_id, value, user_id=user, channel_id=channel, message_ts=message_ts,
                                        thread_ts=thread_ts, response_url=response_url)
        if self.mode == "socket":
            started = time.perf_counter()
            envelope = await self.slack.socket_send("interactive", payload)
            ack = await self.slack.wait_ack(envelope)
            return Ack(200, ack["payload"] or {}, time.perf_counter() - started, response_url)
        status, body, latency = await self.post_signed(interaction_form_body(payload))
        return Ack(status, body, latency, response_url)

    async def interact(self, payload: dict[str, Any]) -> Ack:
        """Any interaction payload (a view submission, a message shortcut, a button on a view), in this mode."""
        if self.mode == "socket":
            started = time.perf_counter()
            envelope = await self.slack.socket_send("interactive", payload)
            ack = await self.slack.wait_ack(envelope)
            return Ack(200, ack["payload"] or {}, time.perf_counter() - started, payload.get("response_url") or "")
        status, body, latency = await self.post_signed(interaction_form_body(payload))
        return Ack(status, body, latency, payload.get("response_url") or "")

    async def event(self, body: dict[str, Any]) -> Ack:
        """An Events API body (`event_callback`; `url_verification` in HTTP mode), in this mode."""
        if self.mode == "socket":
            started = time.perf_counter()
            envelope = await self.slack.socket_send("events_api", body)
            ack = await self.slack.wait_ack(envelope)
            return Ack(200, ack["payload"] or {}, time.perf_counter() - started, "")
        status, answer, latency = await self.post_signed(json.dumps(body), content_type="application/json")
        return Ack(status, answer, latency, "")

    async def webhook(self, endpoint: str, body: Any, token: str | None = WEBHOOK_SECRET) -> tuple[int, Any]:
        assert self.http is not None
        query = f"?token={token}" if token is not None else ""
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        async with self.http.post(f"{self.url}/runpod/webhook/{endpoint}{query}", data=data,
                                  headers={"Content-Type": "application/json"}) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def get(self, path: str) -> tuple[int, str]:
        assert self.http is not None
        async with self.http.get(f"{self.url}{path}") as response:
            return response.status, await response.text()

    # ---------------------------------------------------------------- what the user saw

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages the app posted (as they look now, after any update), oldest first."""
        return [m for (c, _), m in self.slack.messages.items() if channel is None or c == channel]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.posts(channel) if not m.get("thread_ts")]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.posts(channel) if m.get("thread_ts") == ts]

    def thread_text(self, channel: str, ts: str) -> str:
        return "\n---\n".join(message_text(m) for m in self.thread(channel, ts))

    def responses(self, url: str) -> list[dict[str, Any]]:
        return list(self.slack.responses.get(url, []))

    def everything_sent_to_slack(self) -> str:
        return json.dumps([c.args for c in self.slack.calls], default=str)


def job_calls(runpod: Any) -> list[Any]:
    """RunPod calls about jobs (retry, status, …): every call but GET /health, which alerts, confirmations and
    summaries read to show the endpoint's health (issue 12) and which changes nothing."""
    return [c for c in runpod.calls if c.op != "health"]


# What a retried job's alert says once the retry completed. Not the bare word "completed": a healthy endpoint's
# health line on the alert already counts "0 completed", so waiting for the word alone passes before any retry.
ALERT_COMPLETED = "Retried RunPod job completed"


EDIT_BACKLOG = 20  # edits queued after a retry (alerts redrawn, other runs' tallies), still waiting at a restart


async def queue_edit_backlog(app: Any, slack: FakeSlack) -> None:
    """EDIT_BACKLOG edits of other messages, held back by one 429 on chat.update (3 s at test pace)."""
    others = [slack.seed_message("C2", text=f"message {n}") for n in range(EDIT_BACKLOG)]
    slack.script("chat.update", SlackFault(status=429, headers={"Retry-After": "30"}))
    for n, ts in enumerate(others):
        await app.rt.outbox.submit("update", {"channel": "C2", "ts": ts, "text": f"backlog {n}"})


async def restart_and_end(app: Any, runpod: FakeRunPod, endpoint: str, jobs: list[str]) -> None:
    """Restart the app while the jobs run, then have RunPod end them all (COMPLETED), and let the app settle."""
    await app.restart()
    for job in jobs:
        runpod.job(endpoint, job).pending.clear()
        runpod.job(endpoint, job).status = "COMPLETED"
    await app.settle(20)


def backlog_ahead(slack: FakeSlack, ts: str, words: str) -> int:
    """How many of `queue_edit_backlog`'s edits Slack took before the first edit of message `ts` saying `words`."""
    edits = [(c.args.get("ts"), message_text(c.args)) for c in slack.accepted("chat.update")]
    shown = next((i for i, (at, text) in enumerate(edits) if at == ts and words in text), None)
    assert shown is not None, edits
    backlog = [i for i, (_, text) in enumerate(edits) if text.startswith("backlog")]
    assert len(backlog) == EDIT_BACKLOG, edits
    return sum(i < shown for i in backlog)


def alert_completed(msg: dict[str, Any]) -> bool:
    """The alert says its retried job completed."""
    return ALERT_COMPLETED in message_text(msg)


def message_text(msg: dict[str, Any]) -> str:
    """Everything a person can read in a message: fallback text and every text in its blocks."""
    parts = [str(msg.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(msg.get("blocks") or [])
    return "\n".join(parts)


def button_value(msg: dict[str, Any], action_id: str) -> str:
    """The value of the button a person would click on a posted message."""
    for block in msg.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button on {message_text(msg)!r}")


def buttons(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A message's buttons by action_id."""
    return {el["action_id"]: el for block in msg.get("blocks") or [] if block.get("type") == "actions"
            for el in block.get("elements") or []}


def blocks_text(msg: dict[str, Any]) -> str:
    """What the blocks say, without the fallback text."""
    return message_text({"blocks": msg.get("blocks") or []})


def assert_valid(msg: dict[str, Any]) -> None:
    """What real Slack would accept: a fallback text, at most 50 blocks, slack_sdk's own Block Kit validation and
    the stand-in's limits."""
    assert isinstance(msg["text"], str) and msg["text"].strip()
    assert len(msg["text"]) <= 40_000
    assert len(msg["blocks"]) <= 50
    for block in msg["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert block_problems(msg["blocks"]) == []


@contextmanager
def database_held(path: Path) -> Iterator[None]:
    """Another writer holds the app's SQLite file for the block: the app's writes wait (a database too slow to write
    a request down before Slack's deadline)."""
    holder = sqlite3.connect(path, timeout=10)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()
