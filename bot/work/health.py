"""Endpoint health from RunPod (`GET /v2/{endpointId}/health`), cached per endpoint for a short while: shown by
`/runpod-retry health`, and beside failure alerts, confirmations and bulk summaries. A health check that fails or is
slow never holds up or fails anything else: the snapshot is simply left out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.core import messages
from bot.core.health import Health, health_problem, parse_health
from bot.infra.timing import REAL, Timing
from bot.runpod import RunPodClient, RunPodError, RunPodTimeout
from bot.work.retry import RetryService
from bot.work.who import Who

log = logging.getLogger(__name__)

Result = Health | RunPodError


class EndpointHealth:
    def __init__(self, runpod: RunPodClient, enabled: Callable[[str], bool], *, configured: bool = True,
                 clock: Callable[[], float] = time.time, timing: Timing = REAL):
        self.runpod = runpod
        self.timing = timing  # health_cache, health_failure_cache, health_timeout, health_wait, health_show
        self.enabled = enabled          # the endpoints the app may call (RUNPOD_RETRY_ENDPOINTS)
        self.configured = configured    # there is an API key to ask with
        self.clock = clock
        self._cache: dict[str, tuple[float, Result]] = {}
        self._fetching: dict[str, asyncio.Task[Result]] = {}
        self._last: dict[str, Health] = {}  # the latest snapshot of each endpoint, kept through failed checks

    def peek(self, endpoint: str) -> Health | None:
        """The latest snapshot, without asking RunPod (for messages drawn again and again): up to `health_show` old,
        each snapshot saying when RunPod gave it."""
        last = self._last.get(endpoint)
        return last if last is not None and self.clock() - last.at <= self.timing.health_show else None

    async def _fetch(self, endpoint: str) -> Result:
        try:
            async with asyncio.timeout(self.timing.health_timeout):
                reply = await self.runpod.health(endpoint)
            result: Result = parse_health(endpoint, reply.body, self.clock())
        except TimeoutError:
            result = RunPodTimeout("RunPod did not answer the health check in time", op="health",
                                   elapsed=self.timing.health_timeout)
        except RunPodError as exc:
            result = exc
        except Exception as exc:  # a health check must never break what asked for it
            log.exception("health check of endpoint %s failed", endpoint)
            result = RunPodError(f"health check failed ({type(exc).__name__})", op="health")
        if isinstance(result, RunPodError):
            log.info("health check of endpoint %s gave no snapshot: %s", endpoint, result)
        self._cache[endpoint] = (self.clock(), result)
        if isinstance(result, Health):
            self._last[endpoint] = result
        return result

    def _fresh(self, endpoint: str) -> Result | None:
        cached = self._cache.get(endpoint)
        if cached is not None and self.clock() - cached[0] <= (
                self.timing.health_cache if isinstance(cached[1], Health) else self.timing.health_failure_cache):
            return cached[1]
        return None

    def _start(self, endpoint: str) -> asyncio.Task[Result]:
        """The check under way for `endpoint`, started if there is none: callers at the same moment share it."""
        task = self._fetching.get(endpoint)
        if task is None:
            task = asyncio.ensure_future(self._fetch(endpoint))
            self._fetching[endpoint] = task
            task.add_done_callback(lambda _: self._fetching.pop(endpoint, None))
        return task

    def warm(self, endpoint: str) -> None:
        """Start a check now, without waiting, so a snapshot is ready when a message needs it later."""
        if self.configured and self.enabled(endpoint) and self._fresh(endpoint) is None:
            self._start(endpoint)

    async def check(self, endpoint: str, *, wait: float | None = None) -> Result | None:
        """A fresh snapshot (cached for `Timing.health_cache`, a failure for `health_failure_cache`), or the error;
        None when the check did not finish within `wait` seconds (it goes on, and fills the cache) or is not allowed."""
        if not self.configured or not self.enabled(endpoint):
            return None
        fresh = self._fresh(endpoint)
        if fresh is not None:
            return fresh
        task = self._start(endpoint)
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            return None

    async def get(self, endpoint: str, *, wait: float | None = None) -> Health | None:
        """The snapshot to show beside something else; None when there is none in time. Never raises."""
        try:
            result = await self.check(endpoint, wait=self.timing.health_wait if wait is None else wait)
        except Exception:
            log.exception("health check of endpoint %s failed", endpoint)
            return None
        return result if isinstance(result, Health) else None

    # ---------------------------------------------------------------- `/runpod-retry health <endpointId>`

    async def show(self, service: RetryService, who: Who, endpoint: str) -> None:
        """The endpoint's health, privately to who asked: counts in words, a warning, RunPod's JSON. The same access
        rules as a status check."""
        if not await service.gate(who, endpoint, (), "check"):
            return
        result = await self.check(endpoint, wait=self.timing.health_timeout + 1)  # and a second more
        if isinstance(result, Health):
            msg = messages.health_message(endpoint, result)
        else:
            problem = health_problem(endpoint, result) if result is not None else "RunPod did not answer in time"
            msg = messages.health_message(endpoint, None, problem)
        await service.out.ephemeral(who.channel, who.user, msg, who.response_url)
