"""What the app says about work a restart, an outage or a deadline interrupted, once it has settled it."""

from __future__ import annotations

from bot.core.messages.blocks import Message, code, message, section

# Before the reply to a retry whose answer was lost in a restart and was settled with a /status check afterwards.
AFTER_RESTART = "After the restart: "


def storm_expired(endpoint: str) -> Message:
    return message("Too late to retry these jobs",
                   [section(f":hourglass: The jobs of this alert on endpoint {code(endpoint)} ended more than 30 "
                            "minutes ago: RunPod has forgotten them, so they can no longer be retried. Nothing was "
                            "done.")])
