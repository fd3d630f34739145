"""The RunPod Serverless API client: one class, explicit timeouts, typed errors, no global state."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bot.core.answers import (
    RunPodBadResponse,
    RunPodHTTPError,
    RunPodRateLimited,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
    excerpt,
    redact,
)
from bot.core.ids import id_problem
from bot.infra.timing import REAL, Timing
from bot.runpod.limits import RunPodLimits


def _timed_out(exc: BaseException) -> bool:
    """A real timeout, as opposed to a dropped connection (the aiohttp transport reports both as httpx
    timeouts; the aiohttp error underneath tells them apart)."""
    if isinstance(exc, TimeoutError):
        return True
    cause = exc.__cause__
    return isinstance(exc, httpx.TimeoutException) and (cause is None or isinstance(cause, TimeoutError))


Sleep = Callable[[float], Awaitable[None]]
Observer = Callable[[str, str, float], None]
# Told once when RunPod throttles a call that will wait rather than fail: the seconds until the next try.
Throttled = Callable[[float], Awaitable[None]]


class RunPodClient:
    """Calls RunPod's job operations for one or more accounts.

    One shared `httpx.AsyncClient`. Its transport is aiohttp's connection pool (httpx-aiohttp): httpcore's own
    pool does work proportional to the requests in flight on every request, which made a 200-command burst
    CPU-bound (see bench/). The pool is sized so a burst never queues behind it.

    Every call waits its turn in RunPod's limit for its endpoint and operation (bot/runpod/limits.py), so a bulk
    retry, a storm's Retry all and thousands of follows share one allowance. A 429 is a wait, not an answer: the
    call goes again after Retry-After (else exponential backoff) until `until` (a wall-clock time, such as the end of
    the job's retry window) has passed; without `until`, after `max_attempts` tries.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        endpoint_keys: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float | None = None,
        timing: Timing = REAL,
        max_connections: int = 512,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        observe: Observer | None = None,
        rate_limits: RunPodLimits | None = None,
        on_rate_limited: Callable[[str, str], None] | None = None,
    ):
        self._base = base_url.rstrip("/")
        self._default_key = api_key
        self._keys = dict(endpoint_keys or {})
        self._max_attempts = max(1, max_attempts)
        self._timing = timing
        self._backoff_base = timing.runpod_backoff_base if backoff_base is None else backoff_base
        self._sleep = sleep
        self._observe = observe
        self._limits = rate_limits or RunPodLimits(timing=timing)
        self._on_rate_limited = on_rate_limited
        self._secrets = tuple(k for k in (api_key, *self._keys.values()) if k)
        self._timeout = timeout
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)

        def session() -> aiohttp.ClientSession:
            # Made on first use, inside the running loop. trust_env stays off: with it aiohttp reads ~/.netrc
            # in a thread on every request, and a netrc entry for RunPod's host would clash with our header.
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0))

        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=limits,
            transport=transport or AiohttpTransport(limits=limits, client=session),
            headers={"Accept": "application/json", "User-Agent": "runpod-retry-slack/0.1"},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def retry(self, endpoint: str, job: str, *, until: float | None = None,
                    throttled: Throttled | None = None) -> RunPodReply:
        """POST /{endpoint}/retry/{job}: requeue a FAILED or TIMED_OUT job."""
        return await self._call("retry", "POST", endpoint, job, until=until, throttled=throttled)

    async def status(self, endpoint: str, job: str) -> RunPodReply:
        """GET /{endpoint}/status/{job}."""
        return await self._call("status", "GET", endpoint, job)

    async def health(self, endpoint: str) -> RunPodReply:
        """GET /{endpoint}/health: the endpoint's job and worker counts (every field optional)."""
        return await self._call("health", "GET", endpoint, None)

    def _headers(self, endpoint: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._keys.get(endpoint, self._default_key)}"}

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                wait = self._timing.retry_after(max(float(retry_after), 0.0))
                return min(wait, self._timing.runpod_max_retry_after)
            except ValueError:
                pass
        return min(self._backoff_base * 2 ** (attempt - 1) * (1 + random.random() / 4), self._timing.runpod_max_backoff)

    async def _call(self, op: str, method: str, endpoint: str, job: str | None, *, until: float | None = None,
                    throttled: Throttled | None = None) -> RunPodReply:
        # The last line of defence: the caller validated already, but an ID never reaches a URL unchecked.
        for value in (endpoint, job):
            if value is not None and id_problem(value):
                raise ValueError("invalid RunPod ID")
        url = f"{self._base}/{endpoint}/{op}" + (f"/{job}" if job is not None else "")
        limit = self._limits(endpoint, op)
        attempt = 0
        while True:
            attempt += 1
            async with limit.slot():
                started = time.monotonic()
                try:
                    async with asyncio.timeout(self._timeout):  # one bound for the whole call, not per read
                        response = await self._http.request(method, url, headers=self._headers(endpoint))
                except (TimeoutError, httpx.TransportError) as exc:
                    elapsed = time.monotonic() - started
                    if _timed_out(exc):
                        self._note(op, "timeout", started)
                        raise RunPodTimeout(f"RunPod did not answer {op} within the timeout", op=op,
                                            elapsed=elapsed) from exc
                    self._note(op, "unreachable", started)
                    cause = type(exc.__cause__ or exc).__name__
                    raise RunPodUnreachable(f"could not reach RunPod ({cause})", op=op, elapsed=elapsed) from exc
            elapsed = time.monotonic() - started
            self._note(op, str(response.status_code), started)
            if response.status_code != 429:
                limit.success()
                self._limits.changed(endpoint, op)
                return self._interpret(op, response.status_code, response.text, elapsed)
            wait = self._backoff(attempt, response.headers.get("Retry-After"))
            limit.throttled(wait)
            self._limits.changed(endpoint, op)
            if self._on_rate_limited is not None:
                self._on_rate_limited(endpoint, op)
            out_of_time = until is not None and time.time() + wait > until
            out_of_tries = until is None and attempt >= self._max_attempts
            if out_of_time or out_of_tries:
                return self._interpret(op, response.status_code, response.text, elapsed)
            if throttled is not None and attempt == 1:
                await throttled(wait)
            await self._sleep(wait)

    def _note(self, op: str, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(op, outcome, time.monotonic() - started)

    def _interpret(self, op: str, status: int, text: str, elapsed: float) -> RunPodReply:
        try:
            body: Any = redact(json.loads(text), self._secrets) if text.strip() else None
        except ValueError:
            body = None
        short = excerpt(text, self._secrets)
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise RunPodBadResponse(f"RunPod answered {status} but not with a JSON object", op=op,
                                        status=status, body_excerpt=short, elapsed=elapsed)
            return RunPodReply(status, body, elapsed)
        kind = RunPodRateLimited if status == 429 else RunPodHTTPError
        raise kind(f"RunPod answered {status} to {op}", op=op, status=status, body_excerpt=short,
                   body=body if isinstance(body, (dict, list)) else None, elapsed=elapsed)
