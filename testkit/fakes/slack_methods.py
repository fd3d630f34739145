"""The Web API methods FakeSlack carries out: messages (post, update, ephemeral), user groups, file uploads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .slack_blocks import content_problem
from .slack_blocks import error_result as _err
from .slack_payloads import BOT_ID, BOT_USER_ID, TEAM_ID

JSONDict = dict[str, Any]
FIRST_TS = 1700000000


def message_record(ts: str, text: str | None, blocks: Any, thread_ts: str | None) -> JSONDict:
    """A message as Slack stores it (and answers it in `message`)."""
    message: JSONDict = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": text or "",
                         "ts": ts}
    if blocks is not None:
        message["blocks"] = blocks
    if thread_ts:
        message["thread_ts"] = thread_ts
    return message


class WebMethodsMixin:
    """Mixed into FakeSlack, which provides the state used here (messages, channels, uploads, counters)."""

    base: str
    messages: dict[tuple[str, str], JSONDict]
    not_in_channel: set[str]
    missing_channels: set[str]
    usergroups: dict[str, list[str]]
    users: dict[str, JSONDict]
    uploads: dict[str, bytes]
    calls: list[Any]

    if TYPE_CHECKING:  # FakeSlack's own, which records every call
        def _new_call(self, method: str, args: JSONDict, token: str | None = None,
                      url: str | None = None) -> Any: ...

    def _init_web_methods(self) -> None:
        self._ts_counter = 100
        self._file_counter = 100
        self._pending_files: dict[str, JSONDict] = {}
        self.scheduled: dict[str, JSONDict] = {}  # chat.scheduleMessage's messages not yet deleted

    def _channel_error(self, channel: Any) -> str | None:
        if not channel or channel in self.missing_channels:
            return "channel_not_found"
        if channel in self.not_in_channel:
            return "not_in_channel"
        return None

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"{FIRST_TS}.{self._ts_counter:06d}"

    def _schedule_message(self, call: Any) -> JSONDict:
        """chat.scheduleMessage: refused where chat.postMessage would be (the app checks channels with it)."""
        if error := self._channel_error(call.args.get("channel")):
            return {"ok": False, "error": error}
        scheduled = f"Q{self._next_ts().replace('.', '')}"
        self.scheduled[scheduled] = dict(call.args)
        return {"ok": True, "channel": call.args["channel"], "scheduled_message_id": scheduled,
                "post_at": call.args.get("post_at")}

    def _delete_scheduled(self, call: Any) -> JSONDict:
        if self.scheduled.pop(str(call.args.get("scheduled_message_id")), None) is None:
            return {"ok": False, "error": "invalid_scheduled_message_id"}
        return {"ok": True}

    def _auth_test(self, call: Any) -> JSONDict:
        return {
            "ok": True, "url": f"{self.base}/", "team": "Test Team", "user": "runpod-retry",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False,
        }

    def _post_message(self, call: Any) -> JSONDict:
        a = call.args
        channel = a.get("channel")
        if error := self._channel_error(channel) or content_problem(a, require_text=True):
            return _err(error)
        ts = self._next_ts()
        message = message_record(ts, a.get("text"), a.get("blocks"), a.get("thread_ts"))
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, call: Any) -> JSONDict:
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

    def _post_ephemeral(self, call: Any) -> JSONDict:
        a = call.args
        if error := self._channel_error(a.get("channel")) or content_problem(a, require_text=True):
            return _err(error)
        if not a.get("user"):
            return _err("user_not_in_channel")
        return {"ok": True, "message_ts": self._next_ts()}

    def _usergroup_users(self, call: Any) -> JSONDict:
        group = call.args.get("usergroup")
        if group not in self.usergroups:
            return _err("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _users_info(self, call: Any) -> JSONDict:
        user = call.args.get("user")
        if user not in self.users:
            return _err("user_not_found")
        return {"ok": True, "user": {"id": user, **self.users[user]}}

    def _get_upload_url(self, call: Any) -> JSONDict:
        a = call.args
        if not a.get("filename") or not str(a.get("length", "")).isdigit():
            return _err(("invalid_arguments", "filename and a numeric length are required"))
        self._file_counter += 1
        file_id = f"F{self._file_counter}"
        self._pending_files[file_id] = {"filename": a["filename"], "length": int(a["length"])}
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, call: Any) -> JSONDict:
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

    # ---- response_url and uploads -----------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        if request.content_type.startswith("multipart/"):
            part = await (await request.multipart()).next()
            data = await part.read() if part is not None and hasattr(part, "read") else b""
        else:
            data = await request.read()
        call = self._new_call("upload", {"file_id": file_id, "size": len(data)})
        if file_id not in self._pending_files:
            call.status, call.error = 404, "file_not_found"
            return web.Response(status=404, text="file_not_found")
        self.uploads[file_id] = bytes(data)
        return web.Response(text=f"OK - {len(data)}")
