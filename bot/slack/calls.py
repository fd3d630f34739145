"""One Slack call as the outbox makes it, and what its answer means: sent (`Delivery`), never sendable (a
`Delivery` with Slack's error code), or to be tried again later (`Again`, with how long to wait)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.infra.metrics import Metrics
from bot.infra.timing import Timing
from bot.store import Queued

log = logging.getLogger(__name__)

METHODS = {"post": "chat.postMessage", "update": "chat.update", "ephemeral": "chat.postEphemeral",
           "file": "files.upload", "respond": "response_url", "publish": "views.publish"}


@dataclass(frozen=True)
class Delivery:
    """How a call ended: `ts` of a posted message, or `error` (Slack's error code) when it never can be sent."""

    ok: bool
    ts: str | None = None
    error: str | None = None
    again: bool = False  # queued once already under its key (`submit(once=…)`): this is how that call ended


class Again(Exception):
    """The call may succeed later: after `wait` seconds (`throttled`: Slack's 429, which pauses the whole lane)."""

    def __init__(self, wait: float, reason: str, throttled: bool = False):
        super().__init__(reason)
        self.wait = wait
        self.reason = reason
        self.throttled = throttled


class SlackCall:
    """Makes one queued call with the Web API client (or a response_url), and reads Slack's answer."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics, timing: Timing):
        self.client = client
        self.metrics = metrics
        self.timing = timing

    async def __call__(self, row: Queued) -> Delivery:
        """Make the call once. Raises `Again` when it may succeed later (a 429, a 5xx, a dropped connection)."""
        method = METHODS.get(row.kind, row.kind)
        try:
            if row.kind == "post":
                response = await self.client.chat_postMessage(**row.payload)
                ts = response.get("ts")  # slack_sdk answers None for a missing key: never thread under "None"
                return Delivery(ok=True, ts=str(ts) if ts else None)
            if row.kind == "update":
                await self.client.chat_update(**row.payload)
                return Delivery(ok=True, ts=row.payload.get("ts"))
            if row.kind == "ephemeral":
                await self.client.chat_postEphemeral(**row.payload)
                return Delivery(ok=True)
            if row.kind == "file":
                await self.client.files_upload_v2(**row.payload)
                return Delivery(ok=True)
            if row.kind == "respond":
                return await self._respond(row.payload)
            if row.kind == "publish":
                await self.client.views_publish(**row.payload)
                return Delivery(ok=True)
            raise ValueError(f"unknown outbox call {row.kind}")
        except SlackApiError as exc:
            status = exc.response.status_code
            # A gateway's HTML page (a 502 from a proxy) is a str, not Slack's JSON: no error code to read.
            data = exc.response.data
            code = str((data.get("error") if isinstance(data, dict) else None) or f"http_{status}")
            if status == 429 or code == "ratelimited":
                self.metrics.rate_limited.labels(platform="slack", method=method).inc()
                self._throttled(exc.response.headers, code)
            if status >= 500 or code in ("internal_error", "fatal_error", "service_unavailable", "request_timeout"):
                raise Again(self._backoff(row), f"{method} answered {code}") from exc
            # Any other answer (not_in_channel, invalid_blocks, …) would be the same the next time.
            return Delivery(ok=False, error=code)
        except (SlackRequestError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Again(self._backoff(row), f"{method}: {type(exc).__name__}") from exc
        except SlackClientError as exc:  # the call itself is malformed: it would fail the same way every time
            log.error("Slack call %s (%s) cannot be sent: %s", row.id, method, type(exc).__name__)
            return Delivery(ok=False, error=type(exc).__name__)

    def _throttled(self, headers: Any, code: str) -> NoReturn:
        raw = None
        if headers:
            raw = headers.get("Retry-After") or headers.get("retry-after")
            if isinstance(raw, list):
                raw = raw[0] if raw else None
        try:
            wait = self.timing.retry_after(max(0.0, float(raw))) if raw is not None else self.timing.slack_retry_after
        except ValueError:
            wait = self.timing.slack_retry_after
        raise Again(min(wait, self.timing.slack_max_retry_after), f"Slack rate limit ({code})", throttled=True)

    def _backoff(self, row: Queued) -> float:
        return min(self.timing.slack_max_backoff, self.timing.slack_backoff_base * 2.0 ** min(row.attempts, 7))

    async def _respond(self, payload: dict[str, Any]) -> Delivery:
        body = {k: v for k, v in payload.items() if k != "url"}
        response = await AsyncWebhookClient(payload["url"]).send_dict(body)
        if response.status_code == 429:
            self.metrics.rate_limited.labels(platform="slack", method="response_url").inc()
            self._throttled(response.headers, "ratelimited")
        if response.status_code >= 500:
            raise Again(self.timing.slack_retry_after * 2, f"response_url answered HTTP {response.status_code}")
        if response.status_code != 200:
            return Delivery(ok=False, error=(response.body or f"http_{response.status_code}")[:60])
        return Delivery(ok=True)
