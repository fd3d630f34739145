"""Whether the app can post where its settings send messages (the alert and audit channels), said plainly, so a
wrong channel is found before an alert is lost in it (`Runtime.check_channels`, meant for start-up).

The check posts nothing anyone sees: it schedules a message far ahead in the channel (chat.scheduleMessage needs
only `chat:write`, like posting, and is refused the same way) and deletes it at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.infra.config import Settings
from bot.slack.out import NO_CHANNEL_ERRORS, error_code

log = logging.getLogger(__name__)

AHEAD = 100 * 24 * 3600  # Slack schedules up to 120 days ahead; deleted at once, it is never posted
PROBE_TEXT = ("runpod-retry checks at start-up that it can post here; this scheduled message is deleted at once. "
              "If you ever see it, it was not: ignore it.")


@dataclass(frozen=True)
class ChannelState:
    role: str            # "alert channel", "audit channel"
    setting: str         # the setting that names it
    channel: str
    ok: bool | None      # True: the app can post there; False: Slack refuses; None: could not be checked
    error: str | None = None

    def describe(self) -> str:
        """One plain sentence for the log: what was found, and what to do about it."""
        name = f"The {self.role} {self.channel} ({self.setting})"
        if self.ok:
            return f"{name}: I can post there."
        if self.ok is False:
            lost = "failure alerts" if self.role == "alert channel" else "audit lines"
            return (f"{name}: I cannot post there ({self.error}), so {lost} would be lost. Invite me: type "
                    f"/invite @RunPod Retry in that channel, or set {self.setting} to a channel I am in.")
        return f"{name}: I could not check whether I can post there ({self.error}); the first post will tell."

    def as_json(self) -> dict[str, object]:
        return {"channel": self.channel, "setting": self.setting, "can_post": self.ok, "error": self.error}


async def can_post(client: AsyncWebClient, channel: str) -> tuple[bool | None, str | None]:
    """(True, None) when the app can post in `channel`; (False, error) when Slack refuses; (None, why) when the
    check itself could not be made."""
    try:
        scheduled = await client.chat_scheduleMessage(channel=channel, post_at=int(time.time()) + AHEAD,
                                                      text=PROBE_TEXT)
    except SlackApiError as exc:
        code = error_code(exc)
        return (False, code) if code in NO_CHANNEL_ERRORS else (None, code)
    except (SlackClientError, OSError, TimeoutError) as exc:
        return None, type(exc).__name__
    try:
        await client.chat_deleteScheduledMessage(channel=channel,
                                                 scheduled_message_id=str(scheduled.get("scheduled_message_id") or ""))
    except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
        log.warning("could not delete the scheduled check message in %s (%s); it is due in %d days",
                    channel, error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__,
                    AHEAD // 86400)
    return True, None


def what_is_off(settings: Settings) -> list[str]:
    """What the settings leave switched off, one plain sentence each, for the start-up log: an operator who forgot a
    setting reads it there, instead of learning it from alerts that never come."""
    off = []
    if not settings.alert_channel:
        off.append("Failure alerts are OFF: RUNPOD_ALERT_CHANNEL is not set, so RunPod's failure webhooks are "
                   "answered without an alert. Set it to the ID of the channel where alerts should go.")
    if not settings.webhook_secret:
        off.append("Failure alerts are OFF: RUNPOD_WEBHOOK_SECRET is not set, so the RunPod webhook "
                   "(/runpod/webhook/<endpointId>) refuses every delivery. Set it, and put it in the webhook URL "
                   "as ?token=.")
    if settings.alert_channel and settings.allowed_channels and settings.alert_channel not in settings.allowed_channels:
        off.append(f"Retrying from failure alerts is OFF: RUNPOD_ALERT_CHANNEL ({settings.alert_channel}) is not one "
                   "of RUNPOD_RETRY_ALLOWED_CHANNELS, so alerts there come without Retry and Status buttons. Add it "
                   "to RUNPOD_RETRY_ALLOWED_CHANNELS, or point RUNPOD_ALERT_CHANNEL at an allowed channel.")
    return off


async def check_channels(client: AsyncWebClient, settings: Settings) -> list[ChannelState]:
    """Check the alert and audit channels and log what was found, plainly (an error when one cannot be used), after
    what the settings leave off (`what_is_off`), one warning line each."""
    for line in what_is_off(settings):
        log.warning(line)
    states = []
    for role, setting, channel in (("alert channel", "RUNPOD_ALERT_CHANNEL", settings.alert_channel),
                                   ("audit channel", "RUNPOD_AUDIT_CHANNEL", settings.audit_channel)):
        if not channel:
            continue
        ok, error = await can_post(client, channel)
        state = ChannelState(role, setting, channel, ok, error)
        (log.error if ok is False else log.info)(state.describe())
        states.append(state)
    return states


def channel_report(states: list[ChannelState], undelivered: dict[str, float]) -> dict[str, Any]:
    """For /healthz: each configured channel, whether the app can post there (the start-up check, then what the last
    alert found: `undelivered`, channel → when an alert was refused there), and `ok` false when alerts are lost."""
    report: dict[str, Any] = {state.role.split()[0]: state.as_json() for state in states}
    for channel, at in undelivered.items():
        report.setdefault("alert", {"channel": channel, "setting": "RUNPOD_ALERT_CHANNEL"})
        report["alert"].update(can_post=False, last_refused_at=at)
    report["ok"] = all(entry.get("can_post") is not False for entry in report.values() if isinstance(entry, dict))
    return report
