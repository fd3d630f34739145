"""views.open / views.update / views.publish for FakeSlack: validated, stored, and looked up like Slack does."""

from __future__ import annotations

from typing import Any

from .slack_blocks import error_result, view_problems
from .slack_payloads import APP_ID, BOT_ID, TEAM_ID

JSONDict = dict[str, Any]


class ViewsMixin:
    """Mixed into FakeSlack. `views` holds every open or published view by id, as Slack would return it."""

    def _init_views(self) -> None:
        self.views: dict[str, JSONDict] = {}  # view_id -> the view as Slack answers it (latest version)
        self.home_views: dict[str, str] = {}  # user_id -> view_id of that user's Home tab
        self.expired_triggers: set[str] = set()  # trigger_ids views.open refuses with expired_trigger_id
        self._view_counter = 0

    def home(self, user_id: str) -> JSONDict | None:
        """The Home tab last published for `user_id`."""
        view_id = self.home_views.get(user_id)
        return self.views.get(view_id) if view_id else None

    def open_views(self, callback_id: str | None = None) -> list[JSONDict]:
        """Modals opened (current versions), oldest first."""
        return [v for v in self.views.values()
                if v["type"] == "modal" and callback_id in (None, v.get("callback_id"))]

    # ---- Web API methods ---------------------------------------------------------------------------

    def _views_open(self, call: Any) -> JSONDict:
        trigger_id = call.args.get("trigger_id")
        if not trigger_id:
            return error_result(("invalid_arguments", "trigger_id is required"))
        if trigger_id in self.expired_triggers:
            return error_result("expired_trigger_id")
        return self._store_view(call.args.get("view"), None)

    def _views_update(self, call: Any) -> JSONDict:
        a = call.args
        if not a.get("view_id") and not a.get("external_id"):
            return error_result(("invalid_arguments", "view_id or external_id is required"))
        current = self.views.get(a.get("view_id") or "") or next(
            (v for v in self.views.values() if a.get("external_id") and v.get("external_id") == a["external_id"]),
            None)
        if current is None:
            return error_result("not_found")
        if a.get("hash") and a["hash"] != current["hash"]:
            return error_result("hash_conflict")
        return self._store_view(a.get("view"), current)

    def _views_publish(self, call: Any) -> JSONDict:
        a = call.args
        user_id = a.get("user_id")
        if not user_id:
            return error_result(("invalid_arguments", "user_id is required"))
        view = a.get("view")
        if isinstance(view, dict) and view.get("type") != "home":
            return error_result(("invalid_arguments", f"views.publish takes a home view, got {view.get('type')!r}"))
        current = self.home(user_id)
        if current is not None and a.get("hash") and a["hash"] != current["hash"]:
            return error_result("hash_conflict")
        result = self._store_view(view, current)
        if result["ok"]:
            self.home_views[user_id] = result["view"]["id"]
        return result

    def _store_view(self, view: Any, current: JSONDict | None) -> JSONDict:
        if problems := view_problems(view):
            result = error_result(("invalid_arguments", "; ".join(problems)))
            result["response_metadata"] = {"messages": [f"[ERROR] {p}" for p in problems]}
            return result
        self._view_counter += 1
        view_id = current["id"] if current else f"V{self._view_counter:08d}"
        stored: JSONDict = {
            "id": view_id, "team_id": TEAM_ID, "type": view["type"], "blocks": view["blocks"],
            "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
            "state": {"values": {}}, "hash": f"1700000000.{self._view_counter:08d}",
            "title": view.get("title"), "close": view.get("close"), "submit": view.get("submit"),
            "clear_on_close": bool(view.get("clear_on_close")), "notify_on_close": bool(view.get("notify_on_close")),
            "external_id": view.get("external_id", ""), "previous_view_id": None,
            "root_view_id": current["root_view_id"] if current else view_id,
            "app_id": APP_ID, "app_installed_team_id": TEAM_ID, "bot_id": BOT_ID,
        }
        self.views[view_id] = stored
        return {"ok": True, "view": stored}
