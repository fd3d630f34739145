"""The process: the HTTP listener (both modes), Socket Mode when configured, start-up checks, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware.authorization.async_single_team_authorization import AsyncSingleTeamAuthorization
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot import listeners
from bot.app import webhook
from bot.infra.config import Settings
from bot.infra.metrics import CONTENT_TYPE
from bot.store import StoreUnavailable
from bot.work.runtime import Runtime

log = logging.getLogger(__name__)



class StartupError(Exception):
    """A problem a person must fix before the app can run; the message says what and where."""


class _SameTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and warns that our client (built from that same
    token, with SLACK_API_URL) wins. That is the intent; an operator should not see a warning for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_bolt(rt: Runtime) -> AsyncApp:
    settings = rt.settings
    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _SameTokenNotice) for f in bolt_logger.filters):
        bolt_logger.addFilter(_SameTokenNotice())
    app = AsyncApp(client=rt.client, signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
                   request_verification_enabled=not settings.socket_mode, process_before_response=False,
                   logger=bolt_logger)
    listeners.register(app, rt)
    return app


def prime_authorization(app: AsyncApp, auth: AsyncSlackResponse) -> None:
    """Give Bolt the auth.test result from start-up, so no request waits on auth.test before its ack."""
    for middleware in getattr(app, "_async_middleware_list", []):
        if isinstance(middleware, AsyncSingleTeamAuthorization):
            middleware.auth_test_result = auth


class SocketHandler(AsyncSocketModeHandler):
    def __init__(self, app: AsyncApp, rt: Runtime):
        super().__init__(app, rt.settings.slack_app_token, web_client=rt.client,
                         ping_interval=rt.settings.slack_ping_interval)
        self.rt = rt

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        started = time.perf_counter()
        await super().handle(client, req)
        self.rt.metrics.ack_latency.labels(mode="socket").observe(time.perf_counter() - started)


def web_app(rt: Runtime, bolt: AsyncApp, socket: SocketHandler | None) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)

    async def slack_events(request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))
        rt.metrics.ack_latency.labels(mode="http").observe(time.perf_counter() - started)
        return response

    async def healthz(_: web.Request) -> web.Response:
        connected = True if socket is None else await socket.client.is_connected()
        rt.metrics.slack_connected.set(1 if connected else 0)
        database = await rt.store.ping()
        rt.database_state(database)
        body: dict[str, Any] = {
            "ok": connected and database, "mode": "socket" if socket else "http",
            "slack": "connected" if connected else "disconnected",
            "database": "reachable" if database else "unreachable", "following": len(rt.follower),
            "in_flight": len(rt.background), "accepting": rt.background.accepting,
            # Slack calls that kept failing unexpectedly and were set aside so their lane could go on.
            "slack_calls_set_aside": rt.outbox.set_aside,
            # A channel the app cannot post in is a settings problem, said here; it is not a 503, which would
            # make an orchestrator restart the process in a loop without fixing anything.
            "channels": rt.channel_report()}
        if not database:
            body["reason"] = ("the app cannot reach its database (RUNPOD_RETRY_DB); commands and clicks are "
                              "answered with 'try again in a minute' until it is back")
        ok = connected and database and rt.background.accepting
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        # HTTP mode has no connection to lose: Slack reaches the app, so it reads 1 from the first scrape.
        connected = True if socket is None else await socket.client.is_connected()
        rt.metrics.slack_connected.set(1 if connected else 0)
        return web.Response(body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    if socket is None:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post(webhook.ROUTE, webhook.handler(rt))
    return app


async def check_slack(rt: Runtime) -> AsyncSlackResponse:
    """auth.test at start-up: a wrong token is a configuration problem, said plainly."""
    try:
        return await rt.client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"):
            raise StartupError(
                f"Slack refused SLACK_BOT_TOKEN ({error}). Copy the Bot User OAuth Token (xoxb-…) again from your "
                "Slack app page → OAuth & Permissions, and reinstall the app if it was revoked.") from None
        raise StartupError(f"Slack's auth.test failed ({error}); check SLACK_BOT_TOKEN and SLACK_API_URL.") from None
    except (TimeoutError, SlackClientError, OSError) as exc:
        raise StartupError(f"Could not reach Slack at {rt.settings.slack_api_url} ({type(exc).__name__}). "
                           "Check the network and SLACK_API_URL.") from None


class App:
    """One running instance: used by `python -m bot`, the tests and the benchmark alike."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.rt = Runtime(settings)
        self.bolt = build_bolt(self.rt)
        self.socket = SocketHandler(self.bolt, self.rt) if settings.socket_mode else None
        self._runner: web.AppRunner | None = None
        self._connect_task: asyncio.Task[Any] | None = None
        self.port: int | None = None

    async def start(self, host: str = "0.0.0.0") -> None:
        try:
            await self._start(host)
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self, host: str) -> None:
        try:
            await self.rt.open(engine=True)
        except StoreUnavailable as exc:
            raise StartupError(f"the database in RUNPOD_RETRY_DB cannot be used: {exc}") from None
        auth = await check_slack(self.rt)
        self.rt.auth = dict(auth.data) if isinstance(auth.data, dict) else {}
        prime_authorization(self.bolt, auth)
        self._runner = web.AppRunner(web_app(self.rt, self.bolt, self.socket), access_log=None,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        # aiohttp's default listen backlog (128) drops the SYNs of a bigger burst of slash commands; the client
        # then retries after 1 s, so those acks take over a second (bench/). The kernel caps it at somaxconn.
        site = web.TCPSite(self._runner, host, self.settings.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:  # only here: aiohttp's network errors are OSErrors too, and are not about the port
            raise StartupError(f"could not listen on port {self.settings.port} ({exc.strerror}). "
                               "Set PORT to a free port.") from None
        sockets = site._server.sockets if site._server else []  # type: ignore[attr-defined]
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        if self.socket is not None:
            # Connecting retries by itself while Slack is unreachable; /healthz answers 503 meanwhile.
            self._connect_task = asyncio.create_task(self.socket.connect_async(), name="socket mode connect")
        log.info("runpod-retry is up in %s mode, listening on port %s", "Socket Mode" if self.socket else "HTTP",
                 self.port)
        log.info(self.rt.access.describe())
        await self.rt.check_channels()
        await self.rt.start()

    async def stop(self, grace: float | None = None) -> None:
        self.rt.background.accepting = False
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.socket.close_async(), timeout=2.0)
            # close_async can fail before it reaches the session it opened in its constructor.
            if not self.socket.client.aiohttp_client_session.closed:
                await self.socket.client.aiohttp_client_session.close()
        if self._connect_task is not None:
            self._connect_task.cancel()
        await self.rt.close(self.rt.timing.shutdown_grace if grace is None else grace)
        if self._runner is not None:
            await self._runner.cleanup()


async def serve(settings: Settings) -> int:
    app = App(settings)
    try:
        await app.start()
    except StartupError as exc:
        print(f"runpod-retry cannot start: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing in-flight work (at most %.0f s)", app.rt.timing.shutdown_grace)
    await app.stop()
    log.info("stopped")
    return 0
