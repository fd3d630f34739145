"""A loopback stand-in for the RunPod Serverless job API (/v2/{endpoint}/{run,retry,status,cancel,health}).

Jobs follow RunPod's documented rules (only FAILED / TIMED_OUT can be retried, same job id, output cleared,
expired jobs answer 404); faults (HTTP errors, HTML bodies, delays, dropped connections) are scripted per op.
Rate limits per endpoint and operation (`limits.RunPodLimits`: requests per window, requests in flight) answer
429 before anything else; every such 429 is recorded in `limit_hits`. /health is configured per endpoint
(`runpod_health`).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..polling import WAIT, wait_until
from ._server import LoopbackServer, reset_connection
from .limits import RateLimitHit, RunPodLimiter, RunPodLimits, max_in_window, retry_after_value
from .runpod_health import HEALTH_PRESETS, Health, health_body

STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RETRYABLE = frozenset({"FAILED", "TIMED_OUT"})
CANCELLABLE = frozenset({"IN_QUEUE", "IN_PROGRESS", "RUNNING"})
OPS = ("run", "retry", "status", "cancel", "health")

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class RunPodFault:
    status: int | None = None  # HTTP status to answer (body defaults to the reason phrase, plain text)
    body: JSONDict | str | None = None  # dict -> JSON; str -> text (text/html if it starts with "<")
    headers: dict[str, str] | None = None
    delay: float = 0.0  # sleep first; with nothing else set, then answer normally
    reset: bool = False  # drop the TCP connection (RST) without answering
    garbage: bool = False  # 200 with a non-JSON body
    applied: bool = False  # carry the operation out first, then fault (the answer is lost, the effect is not)


@dataclass
class RunPodCall:
    op: str  # "run" | "retry" | "status" | "cancel" | "health" | "unknown"
    endpoint: str
    job: str | None
    method: str
    authorization: str | None
    at: float  # time.monotonic() on arrival
    status: int | None = None  # HTTP status answered; None if dropped or still in flight
    body: Any = None  # what was answered (dict for JSON answers, str otherwise)
    fault: RunPodFault | None = None
    limited: str | None = None  # refused by the rate limits: "window" | "concurrency"


@dataclass
class Job:
    endpoint: str
    id: str
    status: str
    error: str | None
    after_retry: tuple[str, ...]
    output: Any
    execution_time: int
    delay_time: int
    final_error: str | None
    retries: int = 0
    expired: bool = False
    worker_id: str = "worker-0a1b2c"
    pending: deque[str] = field(default_factory=deque)
    original_error: str | None = None

    def snapshot(self) -> JSONDict:
        """The /status body for the job's current state."""
        body: JSONDict = {"id": self.id, "status": self.status}
        if self.status != "IN_QUEUE":
            body |= {"delayTime": self.delay_time, "workerId": self.worker_id}
        if self.status in ("COMPLETED", "FAILED", "TIMED_OUT"):
            body["executionTime"] = self.execution_time
        if self.status == "COMPLETED":
            body["output"] = self.output
        if self.status in RETRYABLE and self.error is not None:
            body["error"] = self.error
        if self.retries:
            body["retries"] = self.retries
        return body

    def advance(self) -> None:
        if not self.pending:
            return
        self.status = self.pending.popleft()
        if self.status in RETRYABLE:
            self.error = self.final_error or self.original_error


class FakeRunPod(LoopbackServer):
    """`FakeRunPod(limits=RunPodLimits(window=0.5))`; `runpod.limits = RunPodLimits.off()` in a test."""

    _limits: RunPodLimits
    _limiter: RunPodLimiter

    def __init__(self, default_key: str = "rp-test-key", limits: RunPodLimits | None = None,
                 time_scale: float = 1.0) -> None:
        super().__init__()
        self.default_key = default_key
        self.time_scale = time_scale  # real seconds per RunPod second: the app's RUNPOD_RETRY_TIME_SCALE
        self.api_keys: dict[str, str] = {}
        self.endpoints: set[str] = set()
        self.jobs: dict[tuple[str, str], Job] = {}
        self.calls: list[RunPodCall] = []
        self.limit_hits: list[RateLimitHit] = []  # every 429 the limits caused, in order
        self.health: dict[str, Health] = {}  # per endpoint; absent: HEALTH_PRESETS["healthy"]
        self.limits = limits if limits is not None else RunPodLimits.defaults()
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_op: dict[str, int] = {}
        self.max_in_flight_by_op: dict[str, int] = {}  # e.g. retries alone, while follows poll /status
        self._faults: dict[str, deque[RunPodFault]] = {}

    @property
    def limits(self) -> RunPodLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: RunPodLimits) -> None:
        """Assigning new limits empties every window (requests already in flight still count)."""
        in_flight = self._limiter.in_flight if hasattr(self, "_limiter") else {}
        self._limits = limits
        self._limiter = RunPodLimiter(limits)
        self._limiter.in_flight.update(in_flight)

    @property
    def url(self) -> str:
        return f"{self.base}/v2"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/{endpoint}/run", self._route("run"))
        app.router.add_post("/v2/{endpoint}/retry/{job}", self._route("retry"))
        app.router.add_get("/v2/{endpoint}/status/{job}", self._route("status"))
        app.router.add_post("/v2/{endpoint}/cancel/{job}", self._route("cancel"))
        app.router.add_get("/v2/{endpoint}/health", self._route("health"))
        app.router.add_route("*", "/{tail:.*}", self._route("unknown"))
        return app

    # ---- test-facing helpers -----------------------------------------------------------------------

    def add_job(
        self, endpoint: str, job_id: str, status: str = "FAILED", *, error: str | None = "CUDA out of memory",
        after_retry: tuple[str, ...] = ("IN_PROGRESS", "COMPLETED"), output: Any = None,
        execution_time: int = 1234, delay_time: int = 567, final_error: str | None = None,
    ) -> Job:
        for s in (status, *after_retry):
            if s not in STATUSES:
                raise ValueError(f"unknown RunPod status {s!r}")
        job = Job(endpoint, job_id, status, error, tuple(after_retry), output, execution_time, delay_time,
                  final_error, original_error=error)
        self.endpoints.add(endpoint)
        self.jobs[(endpoint, job_id)] = job
        return job

    def job(self, endpoint: str, job_id: str) -> Job:
        return self.jobs[(endpoint, job_id)]

    def expire(self, endpoint: str, job_id: str) -> None:
        self.jobs[(endpoint, job_id)].expired = True

    def fault(
        self, op: str, *, status: int | None = None, body: JSONDict | str | None = None,
        headers: dict[str, str] | None = None, delay: float = 0.0, reset: bool = False, garbage: bool = False,
        applied: bool = False, times: int = 1,
    ) -> None:
        """Queue a fault for `op` ("retry", "status", "cancel", "health" or "*"); op-specific go first."""
        if op not in (*OPS, "*"):
            raise ValueError(f"unknown op {op!r}")
        one = RunPodFault(status, body, headers, delay, reset, garbage, applied)
        self._faults.setdefault(op, deque()).extend([one] * times)

    def heal(self) -> None:
        """Drop every fault still queued: RunPod behaves again."""
        self._faults.clear()

    def set_health(self, endpoint: str, health: Health | str | None = None, **fields: Any) -> None:
        """Configure /health for `endpoint`: a Health, a HEALTH_PRESETS name, or Health's fields as keywords."""
        if isinstance(health, str):
            health = HEALTH_PRESETS[health]
        self.health[endpoint] = health if health is not None else Health(**fields)
        self.endpoints.add(endpoint)

    def calls_to(self, op: str) -> list[RunPodCall]:
        return [c for c in self.calls if c.op == op]

    def accepted(self, op: str, endpoint: str | None = None) -> list[RunPodCall]:
        """Calls to `op` that got past the rate limits (whatever they were answered), oldest first."""
        return [c for c in self.calls
                if c.op == op and c.limited is None and endpoint in (None, c.endpoint)]

    def rate_limited(self, op: str | None = None, endpoint: str | None = None) -> list[RateLimitHit]:
        """The 429s the limits caused (scripted 429s are in `calls` only)."""
        return [h for h in self.limit_hits if op in (None, h.method) and endpoint in (None, h.endpoint)]

    def requeued(self, endpoint: str | None = None) -> Counter[tuple[str, str]]:
        """(endpoint, job) -> how many /retry calls requeued it (answered 200): "each job exactly once"."""
        return Counter((c.endpoint, c.job or "") for c in self.accepted("retry", endpoint) if c.status == 200)

    def peak(self, op: str, window: float | None = None, endpoint: str | None = None) -> int:
        """The most accepted `op` calls (to `endpoint`) in any `window` real seconds (default: the limits' window,
        scaled)."""
        window = self.limits.window * self.time_scale if window is None else window
        return max_in_window((c.at for c in self.accepted(op, endpoint)), window)

    def peak_concurrency(self, op: str, endpoint: str | None = None) -> int:
        """The most accepted `op` calls in flight at once (per endpoint; the highest endpoint if None)."""
        peaks = self._limiter.peak_in_flight
        return max((n for (ep, o), n in peaks.items() if o == op and endpoint in (None, ep)), default=0)

    def describe(self) -> str:
        lines = [f"{len(self.calls)} recorded RunPod calls (max in flight {self.max_in_flight}, "
                 f"{len(self.limit_hits)} rate limited):"]
        lines += [f"  {c.method} {c.op} {c.endpoint}/{c.job} -> {c.status} {c.body!r:.200}"
                  + (f" fault={c.fault}" if c.fault else "") + (f" limited={c.limited}" if c.limited else "")
                  for c in self.calls]
        return "\n".join(lines)

    async def wait_for(self, predicate: Callable[[FakeRunPod], Any], timeout: float = WAIT) -> Any:  # noqa: ASYNC109
        return await wait_until(lambda: predicate(self), timeout, self.describe, step=0.01)

    async def wait_calls(self, op: str, n: int = 1, timeout: float = WAIT) -> list[RunPodCall]:  # noqa: ASYNC109
        calls: list[RunPodCall] = await self.wait_for(
            lambda f: len(f.calls_to(op)) >= n and f.calls_to(op), timeout
        )
        return calls

    # ---- HTTP --------------------------------------------------------------------------------------

    def _route(self, op: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, op)

        return handler

    async def _handle(self, request: web.Request, op: str) -> web.StreamResponse:
        info = request.match_info
        call = RunPodCall(op, info.get("endpoint", ""), info.get("job"), request.method,
                          request.headers.get("Authorization"), time.monotonic())
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_by_op[op] = self.in_flight_by_op.get(op, 0) + 1
        self.max_in_flight_by_op[op] = max(self.max_in_flight_by_op.get(op, 0), self.in_flight_by_op[op])
        admitted = False
        try:
            if op != "unknown" and (limited := self._rate_limit(call)) is not None:
                return limited
            admitted = op != "unknown"
            if self.latency:
                await self.sleep(self.latency)
            response = await self._faulted(request, call) or self._answer(call)
            call.status = response.status
            return response
        finally:
            self.in_flight -= 1
            self.in_flight_by_op[op] -= 1
            if admitted:
                self._limiter.release(call.endpoint, op)

    def _rate_limit(self, call: RunPodCall) -> web.Response | None:
        """A 429 if `call` is over its endpoint's limit for its op (recorded in `limit_hits`), else None."""
        verdict = self._limiter.admit(self.limits, call.endpoint, call.op, call.at, self.time_scale)
        if verdict is None:
            return None
        scope, wait = verdict
        limits = self.limits
        retry_after = retry_after_value(limits.retry_after, wait / self.time_scale, self._limiter.rng)
        call.limited = scope
        self.limit_hits.append(RateLimitHit(call.op, call.at, scope, retry_after, endpoint=call.endpoint,
                                            job=call.job))
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if limits.body is not None:
            response = (_json(call, 429, limits.body, headers) if isinstance(limits.body, dict)
                        else _text(call, 429, limits.body, headers))
        else:
            limit = limits.ops[call.op]
            what = (f"{limit.concurrent} concurrent" if scope == "concurrency"
                    else f"{limit.requests} per {limits.window:g}s")
            response = _json(call, 429, {"error": f"Too Many Requests: /{call.op} is limited to {what}"}, headers)
        call.status = 429
        return response

    def _next_fault(self, op: str) -> RunPodFault | None:
        for key in (op, "*"):
            if queue := self._faults.get(key):
                return queue.popleft()
        return None

    async def _faulted(self, request: web.Request, call: RunPodCall) -> web.StreamResponse | None:
        fault = self._next_fault(call.op) if call.op != "unknown" else None
        if fault is None:
            return None
        call.fault = fault
        if fault.applied:
            self._answer(call)
        if fault.delay:
            await self.sleep(fault.delay)
        if fault.reset:
            reset_connection(request.transport)
            raise web.HTTPException()  # the socket is already gone; nothing reaches the client
        if fault.garbage:
            return _text(call, 200, "<html>oops</html>")
        if fault.status is None and fault.body is None:
            return None  # delay only
        status = fault.status or 200
        if isinstance(fault.body, dict):
            return _json(call, status, fault.body, fault.headers)
        return _text(call, status, fault.body if fault.body is not None else HTTPStatus(status).phrase,
                     fault.headers)

    def _answer(self, call: RunPodCall) -> web.Response:
        if call.op == "unknown":
            return _json(call, 404, {"error": "not found"})
        expected = self.api_keys.get(call.endpoint, self.default_key)
        if call.authorization != f"Bearer {expected}":
            return _text(call, 401, "Unauthorized")
        if call.endpoint not in self.endpoints:
            return _json(call, 404, {"error": f"endpoint {call.endpoint} not found"})
        if call.op == "health":
            return self._health(call)
        if call.op == "run":
            created = self.add_job(call.endpoint, f"{uuid.uuid4()}-u1", "IN_QUEUE", error=None)
            created.pending = deque(created.after_retry)  # polling /status walks it to COMPLETED
            return _json(call, 200, {"id": created.id, "status": "IN_QUEUE"})
        job = self.jobs.get((call.endpoint, call.job or ""))
        if job is None or job.expired:
            return _json(call, 404, {"error": "request does not exist"})
        if call.op == "status":
            job.advance()
            return _json(call, 200, job.snapshot())
        if call.op == "retry":
            if job.status not in RETRYABLE:
                return _json(call, 400, {"error": f"Job is not in a retryable state (status: {job.status})"})
            job.status, job.error = "IN_QUEUE", None  # output is only shown once COMPLETED again
            job.retries += 1
            job.pending = deque(job.after_retry)
            return _json(call, 200, {"id": job.id, "status": "IN_QUEUE"})
        # cancel
        if job.status not in CANCELLABLE:
            return _json(call, 400, {"error": f"Job is not in a cancellable state (status: {job.status})"})
        job.status = "CANCELLED"
        job.pending.clear()
        return _json(call, 200, {"id": job.id, "status": "CANCELLED"})

    def _health(self, call: RunPodCall) -> web.Response:
        health = self.health.get(call.endpoint, HEALTH_PRESETS["healthy"])
        if health.status != 200 or health.body is not None:
            if isinstance(health.body, dict):
                return _json(call, health.status, health.body)
            return _text(call, health.status, health.body or HTTPStatus(health.status).phrase)
        jobs = [j for j in self.jobs.values() if j.endpoint == call.endpoint and not j.expired]
        return _json(call, 200, health_body(health, (j.status for j in jobs), sum(j.retries for j in jobs)))


def _json(
    call: RunPodCall, status: int, body: JSONDict, headers: dict[str, str] | None = None
) -> web.Response:
    call.body = body
    return web.json_response(body, status=status, headers=headers)


def _text(call: RunPodCall, status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    call.body = body
    if any(k.lower() == "content-type" for k in headers or {}):
        return web.Response(status=status, text=body, headers=headers)
    ctype = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return web.Response(status=status, text=body, content_type=ctype, headers=headers)


__all__ = ["FakeRunPod", "Job", "RunPodCall", "RunPodFault"]
