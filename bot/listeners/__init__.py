"""Bolt listeners, one module per Slack surface: acknowledge at once (no RunPod I/O), then hand the work on."""

from bot.listeners.slack_listeners import register

__all__ = ["register"]
