"""Bolt listeners: acknowledge at once (no RunPod I/O), then hand the work to the runtime."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from . import actions, messages
from .commands import COMMAND, Help, History, Retry, RetryFailed, Status, UsageError, parse_command
from .runtime import Runtime
from .service import Source, Who
from .slack_out import Place

log = logging.getLogger(__name__)


def _click(body: dict[str, Any]) -> tuple[Who, str, str, str | None, Any]:
    """Who clicked where, on which message, with which value. Shapes come from Slack's block_actions."""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    who = Who(user=(body.get("user") or {}).get("id", ""), channel=channel, source=Source.BUTTON,
              response_url=body.get("response_url"))
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts") or ""
    thread_ts = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
    action = (body.get("actions") or [{}])[0]
    return who, channel, message_ts, thread_ts, action.get("value")


def register(app: AsyncApp, rt: Runtime) -> None:
    async def start(ack: AsyncAck, who: Who, what: str, work: Callable[[], Awaitable[None]]) -> None:
        if not rt.background.accepting:
            await ack(**messages.shutting_down())
            return
        await ack()
        rt.background.spawn(rt.guard(who, what, work()), name=what)

    @app.command(COMMAND)
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            command = parse_command(body.get("text") or "")
        except UsageError as exc:
            rt.metrics.refusals.labels(reason="usage").inc()
            await ack(**messages.usage_error(exc.problem))
            return
        if isinstance(command, Help):
            await ack(**messages.help_message())
            return
        who = Who(user=body.get("user_id", ""), channel=body.get("channel_id", ""), source=Source.COMMAND,
                  response_url=body.get("response_url"))
        if isinstance(command, Retry) and not command.is_bulk:
            await start(ack, who, f"the retry of job `{command.jobs[0]}`",
                        lambda: rt.service.retry_from_command(who, command.endpoint, command.jobs[0]))
        elif isinstance(command, Status):
            await start(ack, who, f"the status of job `{command.job}`",
                        lambda: rt.service.status(who, command.endpoint, command.job))
        elif isinstance(command, History):
            await start(ack, who, "the history", lambda: show_history(who, command.limit))
        elif isinstance(command, Retry):
            await start(ack, who, f"the retry of {len(command.jobs)} jobs",
                        lambda: rt.bulk.from_command(who, command.endpoint, command.jobs))
        elif isinstance(command, RetryFailed):
            await start(ack, who, "the retry of recent failures",
                        lambda: rt.bulk.offer_recent(who, command.endpoint, command.window_seconds))

    async def show_history(who: Who, limit: int) -> None:
        rows = await rt.store.history(limit)
        await rt.out.ephemeral(who.channel, who.user, messages.history_message(rows, limit), who.response_url)

    @app.action(actions.RETRY)
    async def on_retry(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, message_ts, thread_ts, value = _click(body)
        target = actions.parse_job_value(value)
        if target is None:
            await start(ack, who, "a button", lambda: rt.out.ephemeral(channel, who.user, messages.bad_button(),
                                                                        who.response_url))
            return
        endpoint, job = target
        await start(ack, who, f"the retry of job `{job}`",
                    lambda: rt.service.retry_from_button(who, endpoint, job, channel, message_ts, thread_ts))

    @app.action(actions.STATUS)
    async def on_status(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, message_ts, thread_ts, value = _click(body)
        target = actions.parse_job_value(value)
        if target is None:
            await start(ack, who, "a button", lambda: rt.out.ephemeral(channel, who.user, messages.bad_button(),
                                                                        who.response_url))
            return
        endpoint, job = target
        place = Place(channel, thread_ts=thread_ts or message_ts, response_url=who.response_url)
        await start(ack, who, f"the status of job `{job}`", lambda: rt.service.status(who, endpoint, job, place))

    async def bad_click(ack: AsyncAck, who: Who, channel: str) -> None:
        await start(ack, who, "a button", lambda: rt.out.ephemeral(channel, who.user, messages.bad_button(),
                                                                    who.response_url))

    @app.action(actions.RETRY_ALL)
    async def on_retry_all(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, _, _, value = _click(body)
        target = actions.parse_storm_value(value)
        if target is None:
            await bad_click(ack, who, channel)
            return
        await start(ack, who, "Retry all", lambda: rt.storms.retry_all(who, *target))

    @app.action(actions.STORM_STATUS)
    async def on_storm_status(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, _, _, value = _click(body)
        target = actions.parse_storm_value(value)
        if target is None:
            await bad_click(ack, who, channel)
            return
        await start(ack, who, "the status of the grouped jobs", lambda: rt.storms.status(who, *target))

    @app.action(actions.CONFIRM_FAILED)
    async def on_confirm_failed(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, _, _, value = _click(body)
        target = actions.parse_window_value(value)
        if target is None:
            await bad_click(ack, who, channel)
            return
        await start(ack, who, "the retry of recent failures", lambda: rt.bulk.confirm_recent(who, *target))

    @app.action(actions.CANCEL_FAILED)
    async def on_cancel_failed(ack: AsyncAck, body: dict[str, Any]) -> None:
        who, channel, _, _, value = _click(body)
        target = actions.parse_window_value(value)
        if target is None:
            await bad_click(ack, who, channel)
            return
        await start(ack, who, "cancelling", lambda: rt.bulk.cancel_recent(who, target[0]))

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("Bolt could not handle a request: %s", type(error).__name__, exc_info=error)
