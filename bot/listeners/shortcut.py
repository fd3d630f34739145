"""The message shortcut "Retry RunPod jobs": the RunPod jobs a message names (its text, blocks and attachments)
pre-fill the retry form, which says what was found and where; the results go in that message's thread."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.core import actions, messages
from bot.core.forms import Origin
from bot.core.references import find_references
from bot.listeners.ack import ack_then_run
from bot.listeners.modal import open_form
from bot.work.runtime import Runtime
from bot.work.who import Source, Who


def register(app: AsyncApp, rt: Runtime) -> None:
    @app.message_shortcut(actions.SHORTCUT)
    async def on_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id", "")
        who = Who(user=(body.get("user") or {}).get("id", ""), channel=channel, source=Source.SHORTCUT,
                  response_url=body.get("response_url"))
        # Replies go in the message's thread: its own, or the one it is a reply in (threads have one level).
        thread_ts = message.get("thread_ts") or message.get("ts") or body.get("message_ts")

        async def open_prefilled() -> None:
            endpoint, jobs, found = messages.prefill(find_references(message), rt.settings.allowed_endpoints)
            origin = Origin(channel, "shortcut", thread_ts if isinstance(thread_ts, str) else None, who.response_url)
            view = messages.retry_form(origin, rt.settings.allowed_endpoints, endpoint=endpoint, jobs=jobs,
                                       found=found)
            await open_form(rt, who, body.get("trigger_id"), view)

        await ack_then_run(rt, ack, who, "the retry form", open_prefilled, ack_is_seen=False)
