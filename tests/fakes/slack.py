"""A loopback stand-in for the Slack Web API, response_urls, file uploads and Socket Mode.

Strict where real Slack is strict (Block Kit limits, 5 posts per response_url, tokens, channel membership)
so integration tests catch what production would refuse. Every request is recorded in `calls`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from slack_sdk.models.blocks import Block

from ._server import LoopbackServer, poll_until, reset_connection

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
APP_ID = "A1"
FIRST_TS = 1700000000

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELD = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTIONS_ELEMENTS = 25
MAX_ID = 255
MAX_TEXT = 40_000
MAX_RESPONSE_URL_POSTS = 5

# Errors that mean "Slack refused what the app sent" (an app bug), as opposed to environment errors.
REJECTIONS = frozenset(
    {"invalid_blocks", "msg_too_long", "no_text", "invalid_arguments", "invalid_json", "invalid_payload",
     "unknown_method"}
)
_JSON_FIELDS = ("blocks", "attachments", "files")
_DEFAULT_FAULT_ERRORS = {429: "ratelimited", 503: "service_unavailable"}

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


@dataclass
class _LiveSocket:
    ws: web.WebSocketResponse
    request: web.Request
    n: int


@dataclass
class _Ack:
    frame: JSONDict
    at: float


# --------------------------------------------------------------------------------------------------------
# Block Kit validation
# --------------------------------------------------------------------------------------------------------


def _text_of(obj: Any) -> str | None:
    return obj.get("text") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else None


def block_problems(blocks: Any) -> list[str]:
    """Every reason real Slack would answer `invalid_blocks` for `blocks` (empty list: valid)."""
    if not isinstance(blocks, list):
        return [f"blocks must be a list, got {type(blocks).__name__}"]
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            problems.append(f"block[{i}] is not an object")
            continue
        problems += [f"block[{i}] ({block.get('type')}): {p}" for p in _one_block_problems(block)]
    return problems


def _one_block_problems(block: JSONDict) -> list[str]:
    problems: list[str] = []
    kind = block.get("type")
    if len(str(block.get("block_id", ""))) > MAX_ID:
        problems.append(f"block_id > {MAX_ID}")
    if kind in ("section", "header") and "text" in block and _text_of(block["text"]) is None:
        problems.append("text must be a text object")
    text = _text_of(block.get("text")) or ""
    if kind == "section":
        if len(text) > MAX_SECTION_TEXT:
            problems.append(f"section text {len(text)} > {MAX_SECTION_TEXT}")
        for f in block.get("fields") or []:
            if len(_text_of(f) or "") > MAX_SECTION_FIELD:
                problems.append(f"section field > {MAX_SECTION_FIELD}")
    if kind == "header" and len(text) > MAX_HEADER_TEXT:
        problems.append(f"header text {len(text)} > {MAX_HEADER_TEXT}")
    elements = list(block.get("elements") or []) if kind == "actions" else []
    if len(elements) > MAX_ACTIONS_ELEMENTS:
        problems.append(f"{len(elements)} action elements > {MAX_ACTIONS_ELEMENTS}")
    if isinstance(block.get("accessory"), dict):
        elements.append(block["accessory"])
    for el in elements:
        problems += _element_problems(el)
    try:
        parsed = Block.parse(block)
        if parsed is None:
            problems.append(f"unknown block type {kind!r}")
        else:
            parsed.validate_json()
    except Exception as exc:  # slack_sdk raises SlackObjectFormationError, TypeError, ...
        problems.append(f"slack_sdk: {exc}")
    return problems


def _element_problems(el: Any) -> list[str]:
    if not isinstance(el, dict):
        return ["element is not an object"]
    problems: list[str] = []
    if len(str(el.get("action_id", ""))) > MAX_ID:
        problems.append(f"action_id > {MAX_ID}")
    if el.get("type") == "button":
        label = _text_of(el.get("text"))
        if label is None:
            problems.append("button text must be a text object")
        elif len(label) > MAX_BUTTON_TEXT:
            problems.append(f"button text {len(label)} > {MAX_BUTTON_TEXT}")
        if len(str(el.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"button value > {MAX_BUTTON_VALUE}")
    return problems


def content_problem(args: JSONDict, *, require_text: bool) -> tuple[str, str] | None:
    """(error, detail) for a message body real Slack would refuse, else None."""
    text = args.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return "msg_too_long", f"text is {len(text)} chars > {MAX_TEXT}"
    if "blocks" in args:
        problems = block_problems(args["blocks"])
        if problems:
            return "invalid_blocks", "; ".join(problems)
    if require_text and not text and not args.get("blocks") and not args.get("attachments"):
        return "no_text", "no text, blocks or attachments"
    return None


# --------------------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------------------


class FakeSlack(LoopbackServer):
    def __init__(
        self,
        valid_tokens: set[str] | None = None,
        valid_app_tokens: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.valid_tokens: set[str] = valid_tokens if valid_tokens is not None else {"xoxb-test-bot-token"}
        self.valid_app_tokens: set[str] = (
            valid_app_tokens if valid_app_tokens is not None else {"xapp-test-app-token"}
        )
        self.calls: list[SlackCall] = []
        self.not_in_channel: set[str] = set()
        self.missing_channels: set[str] = set()
        self.usergroups: dict[str, list[str]] = {}
        self.messages: dict[tuple[str, str], JSONDict] = {}  # (channel, ts) -> message, updated in place
        self.uploads: dict[str, bytes] = {}
        self.responses: dict[str, list[JSONDict]] = {}
        self.refuse_sockets = False
        self.socket_connections = 0
        self.socket_frames: list[JSONDict] = []
        self._response_log: list[JSONDict] = []
        self._faults: dict[str, deque[SlackFault]] = {}
        self._ts_counter = 100
        self._file_counter = 100
        self._pending_files: dict[str, JSONDict] = {}
        self._socket_counter = 0
        self._issued_sockets: set[int] = set()
        self._sockets: list[_LiveSocket] = []
        self._sent_at: dict[str, float] = {}
        self._acks: dict[str, _Ack] = {}
        self._methods: dict[str, Callable[[SlackCall], JSONDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "usergroups.users.list": self._usergroup_users,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "apps.connections.open": self._connections_open,
        }

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
        for sock in list(self._sockets):
            await sock.ws.close()

    # ---- test-facing helpers -----------------------------------------------------------------------

    def script(self, method: str, *faults: SlackFault) -> None:
        """Queue faults for `method` (a Web API method or "response_url"), consumed one per call."""
        self._faults.setdefault(method, deque()).extend(faults)

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def rejected(self) -> list[SlackCall]:
        return [c for c in self.calls if c.rejected]

    def errors(self) -> list[SlackCall]:
        return [c for c in self.calls if not c.ok]

    def all_responses(self) -> list[JSONDict]:
        """Every accepted response_url post, in arrival order."""
        return list(self._response_log)

    def new_response_url(self) -> str:
        url = f"{self.base}/respond/{uuid.uuid4().hex}"
        self.responses[url] = []
        return url

    def seed_message(
        self, channel: str, ts: str | None = None, *, text: str = "", blocks: list[JSONDict] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Register a message as posted by the bot (e.g. the one a block_actions payload points at)."""
        ts = ts or self._next_ts()
        self.messages[(channel, ts)] = _message(ts, text, blocks, thread_ts)
        return ts

    def describe(self) -> str:
        lines = [f"{len(self.calls)} recorded Slack calls:"]
        for c in self.calls:
            args = json.dumps(c.args, default=str)
            args = args if len(args) <= 300 else args[:300] + "..."
            flag = "ok" if c.ok else f"status={c.status} error={c.error}"
            flag += f" ({c.detail})" if c.detail else ""
            lines.append(f"  {c.method} [{flag}] token={c.token} args={args}")
        return "\n".join(lines)

    async def wait_for(self, predicate: Callable[[FakeSlack], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        return await poll_until(lambda: predicate(self), timeout, self.describe)

    async def wait_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> list[SlackCall]:  # noqa: ASYNC109
        calls: list[SlackCall] = await self.wait_for(
            lambda f: len(f.calls_to(method)) >= n and f.calls_to(method), timeout
        )
        return calls

    # ---- Web API -----------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args, token, bad_json = await _read_args(request)
        call = SlackCall(method, args, token, time.monotonic())
        self.calls.append(call)
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
        else:
            result = handler(call)
        if not result["ok"]:
            call.error = result["error"]
            call.rejected = call.error in REJECTIONS
            call.detail = result.pop("_detail", None)
        return web.json_response(result)

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

    def _channel_error(self, channel: Any) -> str | None:
        if not channel or channel in self.missing_channels:
            return "channel_not_found"
        if channel in self.not_in_channel:
            return "not_in_channel"
        return None

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"{FIRST_TS}.{self._ts_counter:06d}"

    def _auth_test(self, call: SlackCall) -> JSONDict:
        return {
            "ok": True, "url": f"{self.base}/", "team": "Test Team", "user": "runpod-retry",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False,
        }

    def _post_message(self, call: SlackCall) -> JSONDict:
        a = call.args
        channel = a.get("channel")
        if error := self._channel_error(channel) or content_problem(a, require_text=True):
            return _err(error)
        ts = self._next_ts()
        message = _message(ts, a.get("text"), a.get("blocks"), a.get("thread_ts"))
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, call: SlackCall) -> JSONDict:
        a = call.args
        channel, ts = a.get("channel"), a.get("ts")
        if error := self._channel_error(channel) or content_problem(a, require_text=True):
            return _err(error)
        message = self.messages.get((channel, ts))
        if message is None:
            return _err("message_not_found")
        for key in ("text", "blocks"):
            if key in a:
                message[key] = a[key]
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text"), "message": message}

    def _post_ephemeral(self, call: SlackCall) -> JSONDict:
        a = call.args
        if error := self._channel_error(a.get("channel")) or content_problem(a, require_text=True):
            return _err(error)
        if not a.get("user"):
            return _err("user_not_in_channel")
        return {"ok": True, "message_ts": self._next_ts()}

    def _usergroup_users(self, call: SlackCall) -> JSONDict:
        group = call.args.get("usergroup")
        if group not in self.usergroups:
            return _err("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _get_upload_url(self, call: SlackCall) -> JSONDict:
        a = call.args
        if not a.get("filename") or not str(a.get("length", "")).isdigit():
            return _err(("invalid_arguments", "filename and a numeric length are required"))
        self._file_counter += 1
        file_id = f"F{self._file_counter}"
        self._pending_files[file_id] = {"filename": a["filename"], "length": int(a["length"])}
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, call: SlackCall) -> JSONDict:
        a = call.args
        files = a.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
            return _err(("invalid_arguments", "files must be a non-empty list of {id, title}"))
        if "channel_id" in a and (error := self._channel_error(a["channel_id"])):
            return _err(error)
        done = []
        for f in files:
            fid = str(f.get("id"))
            if fid not in self._pending_files or fid not in self.uploads:
                return _err(("file_not_found", f"{fid} was never issued or never uploaded"))
            info = self._pending_files[fid]
            done.append({"id": fid, "name": info["filename"], "title": f.get("title") or info["filename"],
                         "size": len(self.uploads[fid])})
        return {"ok": True, "files": done}

    def _connections_open(self, call: SlackCall) -> JSONDict:
        self._socket_counter += 1
        self._issued_sockets.add(self._socket_counter)
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket/{self._socket_counter}"}

    # ---- response_url and uploads -----------------------------------------------------------------

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        url = f"{self.base}/respond/{request.match_info['key']}"
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        call = SlackCall("response_url", body if isinstance(body, dict) else {"_raw": raw}, None,
                         time.monotonic(), url=url)
        self.calls.append(call)
        faulted = await self._apply_fault(call)
        if faulted is not None:
            return faulted
        if url not in self.responses:
            return _refuse(call, 404, "no_service")
        if not isinstance(body, dict):
            return _refuse(call, 400, "invalid_payload", "body is not a JSON object", as_json=True)
        if len(self.responses[url]) >= MAX_RESPONSE_URL_POSTS:
            return _refuse(call, 404, "used_url")
        if problem := content_problem(body, require_text=False):
            return _refuse(call, 400, *problem, as_json=True)
        self.responses[url].append(body)
        self._response_log.append(body)
        return web.json_response({"ok": True})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        if request.content_type.startswith("multipart/"):
            part = await (await request.multipart()).next()
            data = await part.read() if part is not None and hasattr(part, "read") else b""
        else:
            data = await request.read()
        call = SlackCall("upload", {"file_id": file_id, "size": len(data)}, None, time.monotonic())
        self.calls.append(call)
        if file_id not in self._pending_files:
            call.status, call.error = 404, "file_not_found"
            return web.Response(status=404, text="file_not_found")
        self.uploads[file_id] = bytes(data)
        return web.Response(text=f"OK - {len(data)}")

    # ---- Socket Mode -------------------------------------------------------------------------------

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

    async def wait_socket(self, timeout: float = 5.0) -> int:  # noqa: ASYNC109
        """Wait until at least one socket is connected (and greeted); returns the live count."""
        count: int = await poll_until(lambda: self.live_sockets, timeout, self._describe_sockets)
        return count

    async def socket_send(self, type_: str, payload: JSONDict, accepts_response_payload: bool = True) -> str:
        """Send an envelope to the newest live socket; returns its envelope_id."""
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
        await self._sockets[-1].ws.send_json(envelope)
        return envelope_id

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the newest socket's client to reconnect, as Slack does every few hours."""
        if not self._sockets:
            raise RuntimeError("no live Socket Mode connection")
        await self._sockets[-1].ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {}})

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> JSONDict:  # noqa: ASYNC109
        """{"payload": the ack's payload or None, "latency": seconds from send to ack, "frame": raw ack}."""
        ack: _Ack = await poll_until(lambda: self._acks.get(envelope_id), timeout, self._describe_sockets)
        return {
            "payload": ack.frame.get("payload"),
            "latency": ack.at - self._sent_at.get(envelope_id, ack.at),
            "frame": ack.frame,
        }

    async def drop_sockets(self) -> None:
        """Kill every live socket without a close frame (TCP reset), like a network drop."""
        for sock in list(self._sockets):
            reset_connection(sock.request.transport)
        await poll_until(lambda: not self._sockets, 2.0, self._describe_sockets)

    def _describe_sockets(self) -> str:
        return (f"live sockets: {self.live_sockets}, connections so far: {self.socket_connections}, "
                f"frames received: {self.socket_frames}\n{self.describe()}")


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _err(error: str | tuple[str, str]) -> JSONDict:
    if isinstance(error, tuple):
        return {"ok": False, "error": error[0], "_detail": error[1]}
    return {"ok": False, "error": error}


def _refuse(
    call: SlackCall, status: int, error: str, detail: str | None = None, *, as_json: bool = False
) -> web.Response:
    call.status, call.error, call.detail = status, error, detail
    call.rejected = error in REJECTIONS
    if as_json:
        return web.json_response({"ok": False, "error": error}, status=status)
    return web.Response(status=status, text=error)


def _message(ts: str, text: str | None, blocks: Any, thread_ts: str | None) -> JSONDict:
    message: JSONDict = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": text or "",
                         "ts": ts}
    if blocks is not None:
        message["blocks"] = blocks
    if thread_ts:
        message["thread_ts"] = thread_ts
    return message


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


# --------------------------------------------------------------------------------------------------------
# Payload builders and request signing (what Slack sends to the app)
# --------------------------------------------------------------------------------------------------------


def slash_command_body(
    text: str, *, user_id: str = "U1", channel_id: str = "C1", response_url: str,
    command: str = "/runpod-retry", trigger_id: str = "T.1", team_id: str = TEAM_ID,
) -> dict[str, str]:
    """The form fields of a slash command (also the Socket Mode `slash_commands` payload)."""
    return {
        "token": "verification-token", "team_id": team_id, "team_domain": "test-team",
        "channel_id": channel_id, "channel_name": "alerts", "user_id": user_id,
        "user_name": f"user-{user_id}",
        "command": command, "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": trigger_id,
    }


def block_actions_payload(
    action_id: str, value: str, *, user_id: str = "U1", channel_id: str = "C1",
    message_ts: str = "1700000000.000100", thread_ts: str | None = None, response_url: str,
    block_id: str = "b1",
) -> JSONDict:
    """A button click (`block_actions`), shaped like Slack's."""
    container: JSONDict = {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                           "is_ephemeral": False}
    message: JSONDict = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": message_ts,
                         "text": "", "blocks": []}
    if thread_ts:
        container["thread_ts"] = thread_ts
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": f"user-{user_id}", "name": f"user-{user_id}", "team_id": TEAM_ID},
        "api_app_id": APP_ID, "token": "verification-token", "container": container,
        "trigger_id": "T.2", "team": {"id": TEAM_ID, "domain": "test-team"},
        "channel": {"id": channel_id, "name": "alerts"}, "message": message, "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": block_id, "value": value, "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    }


def sign(
    body: str, secret: str, timestamp: int | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """Headers of a signed Slack request: v0=HMAC-SHA256(secret, f"v0:{ts}:{body}")."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


def form_encode(fields: Mapping[str, str]) -> str:
    return urlencode(fields)


def interaction_form_body(payload: Mapping[str, Any]) -> str:
    """The body Slack POSTs for an interaction: payload=<urlencoded JSON>."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


__all__ = [
    "FakeSlack", "SlackCall", "SlackFault", "block_actions_payload", "block_problems", "form_encode",
    "interaction_form_body", "sign", "slash_command_body",
]
