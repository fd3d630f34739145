"""A loopback stand-in for the Slack Web API, response_urls, file uploads, views and Socket Mode.

Strict where real Slack is strict (Block Kit limits, 5 posts per response_url, tokens, channel membership,
rate limits when switched on: see `limits.SlackLimits`) so integration tests catch what production would
refuse. Every request is recorded in `calls`; every 429 the limits caused in `limit_hits`.

Split across modules: `slack_blocks` (Block Kit / view validation), `slack_payloads` (what Slack sends to the
app, signing), `slack_socket` (Socket Mode), `slack_views` (views.*), `limits` (rate limits). Everything is
re-exported here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..polling import WAIT, wait_until
from ._server import LoopbackServer
from .limits import RateLimitHit, SlackLimiter, SlackLimits, max_in_window, retry_after_value
from .slack_blocks import (
    MAX_ACTIONS_ELEMENTS,
    MAX_BLOCKS,
    MAX_BUTTON_TEXT,
    MAX_BUTTON_VALUE,
    MAX_HEADER_TEXT,
    MAX_ID,
    MAX_SECTION_FIELD,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    block_problems,
    content_problem,
    error_result,
    view_problems,
)
from .slack_methods import FIRST_TS, WebMethodsMixin, message_record
from .slack_payloads import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    block_actions_payload,
    form_encode,
    interaction_form_body,
    sign,
    slash_command_body,
)
from .slack_socket import SocketModeMixin
from .slack_views import ViewsMixin

MAX_RESPONSE_URL_POSTS = 5  # the default of SlackLimits.response_url_uses

# Errors that mean "Slack refused what the app sent" (an app bug), as opposed to environment errors.
REJECTIONS = frozenset(
    {"invalid_blocks", "msg_too_long", "no_text", "invalid_arguments", "invalid_json", "invalid_payload",
     "unknown_method"}
)
_JSON_FIELDS = ("blocks", "attachments", "files", "view")
_DEFAULT_FAULT_ERRORS = {429: "ratelimited", 503: "service_unavailable"}
_err = error_result

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class SlackFault:
    """A scripted answer. Only `delay` set (status 200, no error/body): answer normally, but late."""

    status: int = 200
    error: str | None = None
    headers: dict[str, str] | None = None
    body: JSONDict | str | None = None
    delay: float = 0.0

    @property
    def passthrough(self) -> bool:
        return self.status == 200 and self.error is None and self.body is None


@dataclass
class SlackCall:
    method: str  # Web API method, or "response_url" / "upload"
    args: JSONDict
    token: str | None
    at: float  # time.monotonic() on arrival
    url: str | None = None  # response_url posts only
    status: int = 200  # HTTP status answered
    error: str | None = None  # the `error` answered, if any
    rejected: bool = False  # refused as malformed (see REJECTIONS)
    detail: str | None = None  # why it was rejected (Block Kit problems etc.)
    fault: SlackFault | None = None  # the scripted fault that answered, if any

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def channel(self) -> str | None:
        value = self.args.get("channel") or self.args.get("channel_id")
        return value if isinstance(value, str) else None


class FakeSlack(WebMethodsMixin, SocketModeMixin, ViewsMixin, LoopbackServer):
    """`FakeSlack(limits=SlackLimits(...))`; `slack.limits = SlackLimits.off()` (or change a field) in a test."""

    def __init__(
        self,
        valid_tokens: set[str] | None = None,
        valid_app_tokens: set[str] | None = None,
        limits: SlackLimits | None = None,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.time_scale = time_scale  # real seconds per Slack second: the app's RUNPOD_RETRY_TIME_SCALE
        self.valid_tokens: set[str] = valid_tokens if valid_tokens is not None else {"xoxb-test-bot-token"}
        self.valid_app_tokens: set[str] = (
            valid_app_tokens if valid_app_tokens is not None else {"xapp-test-app-token"}
        )
        self.calls: list[SlackCall] = []
        self.limit_hits: list[RateLimitHit] = []  # every 429 the limits caused, in order
        self.not_in_channel: set[str] = set()
        self.missing_channels: set[str] = set()
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, JSONDict] = {}  # users.info's `user` by ID: {"real_name": …, "profile": {…}}
        self.messages: dict[tuple[str, str], JSONDict] = {}  # (channel, ts) -> message, updated in place
        self.uploads: dict[str, bytes] = {}
        self.responses: dict[str, list[JSONDict]] = {}
        self.limits = limits if limits is not None else SlackLimits.defaults()
        self._response_log: list[JSONDict] = []
        self._response_url_born: dict[str, float] = {}
        self._faults: dict[str, deque[SlackFault]] = {}
        self._init_web_methods()
        self._init_socket_mode()
        self._init_views()
        self._methods: dict[str, Callable[[SlackCall], JSONDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.scheduleMessage": self._schedule_message,
            "chat.deleteScheduledMessage": self._delete_scheduled,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "apps.connections.open": self._connections_open,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    @property
    def limits(self) -> SlackLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: SlackLimits) -> None:
        """Assigning new limits starts every bucket full again."""
        self._limits = limits
        self._limiter = SlackLimiter(limits)

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/respond/{key}", self._respond)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket/{n}", self._socket)
        return app

    async def before_stop(self) -> None:
        await self._close_sockets()

    # ---- test-facing helpers -----------------------------------------------------------------------

    def script(self, method: str, *faults: SlackFault) -> None:
        """Queue faults for `method` (a Web API method or "response_url"), consumed one per call.
        A scripted answer comes before the rate limits: the call it answers is neither refused nor counted by
        them (a delay-only fault then goes on to the limits like any call)."""
        self._faults.setdefault(method, deque()).extend(faults)

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def rejected(self) -> list[SlackCall]:
        return [c for c in self.calls if c.rejected]

    def errors(self) -> list[SlackCall]:
        return [c for c in self.calls if not c.ok]

    def accepted(self, method: str = "chat.postMessage", channel: str | None = None) -> list[SlackCall]:
        """Calls Slack carried out (`ok`), oldest first; each has its arrival time in `at`."""
        return [c for c in self.calls if c.method == method and c.ok and channel in (None, c.channel)]

    def rate_limited(self, method: str | None = None, channel: str | None = None) -> list[RateLimitHit]:
        """The 429s the limits caused (scripted 429s are in `calls` only)."""
        return [h for h in self.limit_hits if method in (None, h.method) and channel in (None, h.channel)]

    def peak(self, method: str, window: float, channel: str | None = None) -> int:
        """The most accepted `method` calls (to `channel`) in any `window` seconds."""
        return max_in_window((c.at for c in self.accepted(method, channel)), window)

    def all_responses(self) -> list[JSONDict]:
        """Every accepted response_url post, in arrival order."""
        return list(self._response_log)

    def new_response_url(self) -> str:
        url = f"{self.base}/respond/{uuid.uuid4().hex}"
        self.responses[url] = []
        self._response_url_born[url] = time.monotonic()
        return url

    def seed_message(
        self, channel: str, ts: str | None = None, *, text: str = "", blocks: list[JSONDict] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Register a message as posted by the bot (e.g. the one a block_actions payload points at)."""
        ts = ts or self._next_ts()
        self.messages[(channel, ts)] = message_record(ts, text, blocks, thread_ts)
        return ts

    def describe(self) -> str:
        lines = [f"{len(self.calls)} recorded Slack calls ({len(self.limit_hits)} rate limited):"]
        for c in self.calls:
            args = json.dumps(c.args, default=str)
            args = args if len(args) <= 300 else args[:300] + "..."
            flag = "ok" if c.ok else f"status={c.status} error={c.error}"
            flag += f" ({c.detail})" if c.detail else ""
            lines.append(f"  {c.method} [{flag}] token={c.token} args={args}")
        return "\n".join(lines)

    async def wait_for(self, predicate: Callable[[FakeSlack], Any], timeout: float = WAIT) -> Any:  # noqa: ASYNC109
        return await wait_until(lambda: predicate(self), timeout, self.describe, step=0.01)

    async def wait_calls(self, method: str, n: int = 1, timeout: float = WAIT) -> list[SlackCall]:  # noqa: ASYNC109
        calls: list[SlackCall] = await self.wait_for(
            lambda f: len(f.calls_to(method)) >= n and f.calls_to(method), timeout
        )
        return calls

    # ---- Web API -----------------------------------------------------------------------------------

    def _new_call(self, method: str, args: JSONDict, token: str | None = None, url: str | None = None) -> SlackCall:
        call = SlackCall(method, args, token, time.monotonic(), url=url)
        self.calls.append(call)
        return call

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args, token, bad_json = await _read_args(request)
        call = self._new_call(method, args, token)
        faulted = await self._apply_fault(call)
        if faulted is not None:
            return faulted
        handler = self._methods.get(method)
        auth_error = self._auth_error(method, token)
        if bad_json:
            result = _err("invalid_json")
        elif handler is None:
            result = _err("unknown_method")
        elif auth_error:
            result = _err(auth_error)
        elif limited := self._rate_limit(call):
            return limited
        else:
            result = handler(call)
            if result["ok"]:
                self._limiter.spend(self.limits, method, call.channel)
        if not result["ok"]:
            call.error = result["error"]
            call.rejected = call.error in REJECTIONS
            call.detail = result.pop("_detail", None)
        return web.json_response(result)

    def _rate_limit(self, call: SlackCall) -> web.Response | None:
        """A 429 like Slack's if `call` is over the limits (then recorded in `limit_hits`), else None.
        Only calls Slack carries out count: a refused one (invalid_blocks, not_in_channel...) uses no token."""
        now = time.monotonic()
        verdict = self._limiter.check(self.limits, call.method, call.channel, now, self.time_scale)
        if verdict is None:
            return None
        scope, wait = verdict
        # In Slack's seconds: the app, at the same scale, multiplies it back.
        retry_after = retry_after_value(self.limits.retry_after, wait / (self.limits.time_scale * self.time_scale),
                                        self._limiter.rng)
        self.limit_hits.append(RateLimitHit(call.method, now, scope, retry_after, channel=call.channel))
        call.status, call.error, call.detail = 429, "ratelimited", f"{scope} limit, {wait:.3f}s to wait"
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if method == "apps.connections.open":
            return None if token.startswith("xapp-") and token in self.valid_app_tokens else "invalid_auth"
        if token.startswith("xapp-"):
            return "not_allowed_token_type"
        return None if token in self.valid_tokens else "invalid_auth"

    async def _apply_fault(self, call: SlackCall) -> web.Response | None:
        queue = self._faults.get(call.method)
        if not queue:
            return None
        fault = queue.popleft()
        call.fault = fault
        if fault.delay:
            await self.sleep(fault.delay)
        if fault.passthrough:
            return None
        call.status = fault.status
        headers = fault.headers or {}
        if isinstance(fault.body, str):
            call.error = fault.error
            return web.Response(status=fault.status, text=fault.body, headers=headers)
        error = fault.error or _DEFAULT_FAULT_ERRORS.get(fault.status, "fatal_error")
        body = fault.body or {"ok": False, "error": error}
        call.error = body.get("error") if not body.get("ok") else None
        return web.json_response(body, status=fault.status, headers=headers)

    # ---- response_url ------------------------------------------------------------------------------

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        """Like Slack: 404 `no_service` for an unknown URL, 404 `used_url` after `response_url_uses` accepted
        posts, 404 `expired_url` after `response_url_ttl` (plain-text bodies, as Slack's webhooks answer)."""
        url = f"{self.base}/respond/{request.match_info['key']}"
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        call = self._new_call("response_url", body if isinstance(body, dict) else {"_raw": raw}, url=url)
        faulted = await self._apply_fault(call)
        if faulted is not None:
            return faulted
        if url not in self.responses:
            return _refuse(call, 404, "no_service")
        limits = self.limits
        age = (time.monotonic() - self._response_url_born.get(url, call.at)) / (limits.time_scale * self.time_scale)
        if limits.response_url_ttl is not None and age > limits.response_url_ttl:
            return _refuse(call, 404, "expired_url", f"{age:.0f}s old > {limits.response_url_ttl:.0f}s")
        if not isinstance(body, dict):
            return _refuse(call, 400, "invalid_payload", "body is not a JSON object", as_json=True)
        if limits.response_url_uses is not None and len(self.responses[url]) >= limits.response_url_uses:
            return _refuse(call, 404, "used_url", f"already used {len(self.responses[url])} times")
        if problem := content_problem(body, require_text=False):
            return _refuse(call, 400, *problem, as_json=True)
        self.responses[url].append(body)
        self._response_log.append(body)
        return web.json_response({"ok": True})


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _refuse(
    call: SlackCall, status: int, error: str, detail: str | None = None, *, as_json: bool = False
) -> web.Response:
    call.status, call.error, call.detail = status, error, detail
    call.rejected = error in REJECTIONS
    if as_json:
        return web.json_response({"ok": False, "error": error}, status=status)
    return web.Response(status=status, text=error)


async def _read_args(request: web.Request) -> tuple[JSONDict, str | None, bool]:
    """Merge query string, JSON or form body; parse JSON-string fields. Returns (args, token, bad_json)."""
    args: JSONDict = dict(request.query)
    bad_json = False
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
                args.update(body if isinstance(body, dict) else {})
            except ValueError:
                bad_json = True
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in _JSON_FIELDS:
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass  # left as a string: Block Kit validation will refuse it
    header = request.headers.get("Authorization", "")
    param_token = args.pop("token", None)
    token = header[len("Bearer "):].strip() if header.startswith("Bearer ") else param_token
    return args, token or None, bad_json


__all__ = [
    "APP_ID", "BOT_ID", "BOT_USER_ID", "FIRST_TS", "MAX_ACTIONS_ELEMENTS", "MAX_BLOCKS", "MAX_BUTTON_TEXT",
    "MAX_BUTTON_VALUE", "MAX_HEADER_TEXT", "MAX_ID", "MAX_RESPONSE_URL_POSTS", "MAX_SECTION_FIELD",
    "MAX_SECTION_TEXT", "MAX_TEXT", "TEAM_ID", "FakeSlack", "RateLimitHit", "SlackCall", "SlackFault",
    "SlackLimits", "block_actions_payload", "block_problems", "content_problem", "form_encode",
    "interaction_form_body", "sign", "slash_command_body", "view_problems",
]
