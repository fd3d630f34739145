"""The Home tab: `app_home_opened` draws it for the person opening it (events are acknowledged by Bolt at once;
the drawing happens after). Its Retry buttons are the alerts' Retry buttons (bot/listeners/buttons.py)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.work.runtime import Runtime


def register(app: AsyncApp, rt: Runtime) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str) or not rt.background.accepting:
            return  # the Messages tab, or shutting down (it is drawn again when next opened)
        rt.background.spawn(rt.home.opened(user), name=f"home tab {user}")
