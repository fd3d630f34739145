"""The outbox's lanes: which queue a Slack call waits in, and the pace Slack allows that lane."""

from __future__ import annotations

import hashlib
from typing import Any

from bot.infra.timing import Timing

RESPOND = "respond:"  # a response_url's lane: its name goes on with a hash of the URL (never the URL: it is a secret)


def lane_of(kind: str, payload: dict[str, Any]) -> str:
    if kind in ("post", "file"):
        return f"channel:{payload.get('channel', '')}"
    if kind == "respond":
        return RESPOND + hashlib.sha256(str(payload.get("url", "")).encode()).hexdigest()[:12]
    if kind == "publish":
        return "views"  # views.publish: Tier 4, like ephemerals, but a lane of its own so a busy Home waits alone
    return kind  # update, ephemeral


def lane_rate(lane: str, timing: Timing) -> tuple[float, float]:
    """Slack's published limits (shared/slack-platform-notes.md): per channel for posts, per method tier otherwise."""
    if lane.startswith("channel:"):
        return timing.slack_post_rate, timing.slack_post_burst
    if lane.startswith(RESPOND):
        return timing.slack_respond_rate, timing.slack_respond_burst
    if lane == "update":
        return timing.slack_update_rate, timing.slack_update_burst
    return timing.slack_tier4_rate, timing.slack_tier4_burst
