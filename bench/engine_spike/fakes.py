"""Stand-ins for RunPod and Slack on 127.0.0.1 that count and time what reaches them.

RunPod: POST /v2/{ep}/retry/{job} (answers after `delay` s), GET /v2/{ep}/status/{job} (IN_QUEUE, then
IN_PROGRESS, then COMPLETED `run_s` s after the retry). Slack: POST /api/chat.postMessage {channel, text}.
GET /stats returns everything recorded; POST /config changes delay/run_s; POST /reset clears.
Both run in one aiohttp app so an orchestrator starts one server.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from aiohttp import web


class Fakes:
    def __init__(self, delay: float = 0.05, run_s: float = 3.0) -> None:
        self.delay = delay
        self.run_s = run_s
        self.reset()

    def reset(self) -> None:
        self.retries: list[dict[str, Any]] = []       # one per /retry call: ep, job, t_in, t_out
        self.retried_at: dict[str, float] = {}
        self.inflight: dict[str, int] = defaultdict(int)
        self.max_inflight: dict[str, int] = defaultdict(int)
        self.status_calls = 0
        self.posts: list[dict[str, Any]] = []         # channel, text, t

    async def retry(self, req: web.Request) -> web.Response:
        ep, job = req.match_info["ep"], req.match_info["job"]
        t_in = time.time()
        self.inflight[ep] += 1
        self.max_inflight[ep] = max(self.max_inflight[ep], self.inflight[ep])
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.inflight[ep] -= 1
        self.retried_at.setdefault(f"{ep}/{job}", time.time())
        self.retries.append({"ep": ep, "job": job, "t_in": t_in, "t_out": time.time(),
                             "who": req.headers.get("x-who", "")})
        return web.json_response({"id": job, "status": "IN_QUEUE"})

    async def status(self, req: web.Request) -> web.Response:
        ep, job = req.match_info["ep"], req.match_info["job"]
        self.status_calls += 1
        t = self.retried_at.get(f"{ep}/{job}")
        if t is None:
            return web.json_response({"id": job, "status": "FAILED"})
        age = time.time() - t
        status = "IN_QUEUE" if age < self.run_s / 3 else "IN_PROGRESS" if age < self.run_s else "COMPLETED"
        return web.json_response({"id": job, "status": status})

    async def post(self, req: web.Request) -> web.Response:
        body = await req.json()
        self.posts.append({"channel": body["channel"], "text": body["text"], "t": time.time()})
        return web.json_response({"ok": True, "ts": f"{time.time():.6f}"})

    async def stats(self, _req: web.Request) -> web.Response:
        return web.json_response({"retries": self.retries, "max_inflight": self.max_inflight,
                                  "status_calls": self.status_calls, "posts": self.posts})

    async def config(self, req: web.Request) -> web.Response:
        body = await req.json()
        self.delay = float(body.get("delay", self.delay))
        self.run_s = float(body.get("run_s", self.run_s))
        return web.json_response({"ok": True})

    async def do_reset(self, _req: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/{ep}/retry/{job}", self.retry)
        app.router.add_get("/v2/{ep}/status/{job}", self.status)
        app.router.add_post("/api/chat.postMessage", self.post)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/config", self.config)
        app.router.add_post("/reset", self.do_reset)
        return app


async def serve(fakes: Fakes) -> tuple[web.AppRunner, str]:
    """Start the stand-ins on a free loopback port; returns the runner and the base URL."""
    runner = web.AppRunner(fakes.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def main() -> None:
    """Run the stand-ins as a process of their own (so the orchestrator's load does not skew their clocks)."""
    import sys

    async def run() -> None:
        fakes = Fakes(delay=float(sys.argv[1]), run_s=float(sys.argv[2]))
        _runner, base = await serve(fakes)
        print(f"READY {base}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
