"""Bolt listeners, one module per Slack surface: acknowledge at once (no RunPod I/O), then hand the work on."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.listeners import buttons, command, home, modal, shortcut
from bot.work.runtime import Runtime

log = logging.getLogger(__name__)


def register(app: AsyncApp, rt: Runtime) -> None:
    """Attach every listener to `app`."""
    command.register(app, rt)
    buttons.register(app, rt)
    modal.register(app, rt)
    shortcut.register(app, rt)
    home.register(app, rt)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("Bolt could not handle a request: %s", type(error).__name__, exc_info=error)
