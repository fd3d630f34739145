"""What Slack sends for the surfaces of issue 12, shaped like Slack's own payloads: a view submission, a message
shortcut (`message_action`), events (`app_home_opened`, `url_verification`) and a button on the Home tab."""

from __future__ import annotations

import time
import uuid
from typing import Any

from testkit.fakes.slack_payloads import APP_ID, TEAM_ID

JSONDict = dict[str, Any]


def _user(user_id: str) -> JSONDict:
    return {"id": user_id, "username": f"user-{user_id}", "name": f"user-{user_id}", "team_id": TEAM_ID}


def field_values(view: JSONDict, **typed: str | None) -> JSONDict:
    """`state.values` as Slack sends it when `view` is submitted: each input's initial value (what a person who
    changes nothing submits), replaced by `typed[block_id]` where given (None: the field left empty)."""
    values: JSONDict = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block["element"]
        block_id, action_id = block["block_id"], element["action_id"]
        value = typed[block_id] if block_id in typed else None
        if element["type"] == "static_select":
            options = {o["value"]: o for o in element.get("options") or []}
            if block_id in typed:
                chosen = options.get(value) if value is not None else None
                if value is not None and chosen is None:  # a forged value: Slack would never send it, but test it
                    chosen = {"text": {"type": "plain_text", "text": value}, "value": value}
            else:
                chosen = element.get("initial_option")
            values[block_id] = {action_id: {"type": "static_select", "selected_option": chosen}}
        else:
            text = value if block_id in typed else element.get("initial_value")
            values[block_id] = {action_id: {"type": element["type"], "value": text}}
    return values


def view_submission(view: JSONDict, *, user_id: str = "U1", **typed: str | None) -> JSONDict:
    """The `view_submission` payload of `view` (a view as the Slack stand-in stored it)."""
    return {
        "type": "view_submission", "team": {"id": TEAM_ID, "domain": "test-team"}, "user": _user(user_id),
        "api_app_id": APP_ID, "token": "verification-token", "trigger_id": f"T.{uuid.uuid4().hex[:8]}",
        "view": {**view, "state": {"values": field_values(view, **typed)}}, "response_urls": [],
        "is_enterprise_install": False,
    }


def message_action(message: JSONDict, *, callback_id: str, channel_id: str = "C1", user_id: str = "U1",
                   response_url: str, trigger_id: str = "T.3") -> JSONDict:
    """A message shortcut on `message`, as Slack sends it."""
    return {
        "type": "message_action", "token": "verification-token", "action_ts": f"{time.time():.6f}",
        "team": {"id": TEAM_ID, "domain": "test-team"}, "user": _user(user_id),
        "channel": {"id": channel_id, "name": "ops"}, "is_enterprise_install": False, "callback_id": callback_id,
        "trigger_id": trigger_id, "response_url": response_url, "message_ts": message.get("ts"),
        "message": message,
    }


def event_callback(event: JSONDict) -> JSONDict:
    """An Events API delivery wrapping `event`."""
    return {
        "token": "verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
        "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": "UBOT", "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def app_home_opened(user_id: str = "U1", tab: str = "home") -> JSONDict:
    return event_callback({"type": "app_home_opened", "user": user_id, "channel": f"D{user_id}", "tab": tab,
                           "event_ts": f"{time.time():.6f}"})


def url_verification(challenge: str) -> JSONDict:
    return {"token": "verification-token", "challenge": challenge, "type": "url_verification"}


def view_button(action_id: str, value: str, *, view: JSONDict, user_id: str = "U1") -> JSONDict:
    """A button clicked on a view (the Home tab): no channel, no message, no response_url."""
    return {
        "type": "block_actions", "user": _user(user_id), "api_app_id": APP_ID, "token": "verification-token",
        "container": {"type": "view", "view_id": view["id"]}, "trigger_id": "T.4",
        "team": {"id": TEAM_ID, "domain": "test-team"}, "view": view,
        "actions": [{"action_id": action_id, "block_id": "b1", "value": value, "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    }
