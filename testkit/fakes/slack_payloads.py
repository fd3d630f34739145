"""What Slack sends to the app (slash commands, button clicks) and how it signs HTTP requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

JSONDict = dict[str, Any]

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
APP_ID = "A1"



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
