"""Bolt listeners: acknowledge at once (no RunPod I/O), then hand the work to the runtime."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.core import actions, messages
from bot.core.commands import COMMAND, Help, History, Retry, RetryFailed, Status, UsageError, parse_command
from bot.slack.out import Place
from bot.work.retry import Source, Who
from bot.work.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Click:
    who: Who
    channel: str
    message_ts: str
    thread_ts: str | None
    value: Any


def _click(body: dict[str, Any]) -> Click:
    """Who clicked where, on which message, with which value. Shapes come from Slack's block_actions."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    who = Who(user=(body.get("user") or {}).get("id", ""), channel=channel, source=Source.BUTTON,
              response_url=body.get("response_url"))
    action = (body.get("actions") or [{}])[0]
    return Click(who, channel, container.get("message_ts") or message.get("ts") or "",
                 container.get("thread_ts") or message.get("thread_ts"), action.get("value"))


def register(app: AsyncApp, rt: Runtime) -> None:
    async def start(ack: AsyncAck, who: Who, what: str, work: Callable[[], Awaitable[object]]) -> None:
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

    def button(action_id: str, parse: Callable[[object], Any], what: Callable[[Any], str],
               work: Callable[[Click, Any], Awaitable[object]]) -> None:
        """A button: its value is parsed (never trusted) before anything runs; a bad value is told privately."""

        @app.action(action_id)
        async def on_click(ack: AsyncAck, body: dict[str, Any]) -> None:
            click = _click(body)
            target = parse(click.value)
            if target is None:
                await start(ack, click.who, "a button", lambda: rt.out.ephemeral(
                    click.channel, click.who.user, messages.bad_button(), click.who.response_url))
                return
            await start(ack, click.who, what(target), lambda: work(click, target))

    button(actions.RETRY, actions.parse_job_value, lambda t: f"the retry of job `{t[1]}`",
           lambda c, t: rt.service.retry_from_button(c.who, t[0], t[1], c.channel, c.message_ts, c.thread_ts))
    button(actions.STATUS, actions.parse_job_value, lambda t: f"the status of job `{t[1]}`",
           lambda c, t: rt.service.status(c.who, t[0], t[1], Place(c.channel, thread_ts=c.thread_ts or c.message_ts,
                                                            response_url=c.who.response_url)))
    button(actions.RETRY_ALL, actions.parse_storm_value, lambda _: "Retry all",
           lambda c, t: rt.storms.retry_all(c.who, *t))
    button(actions.STORM_STATUS, actions.parse_storm_value, lambda _: "the status of the grouped jobs",
           lambda c, t: rt.storms.status(c.who, *t))
    button(actions.CONFIRM_FAILED, actions.parse_window_value, lambda _: "the retry of recent failures",
           lambda c, t: rt.bulk.confirm_recent(c.who, *t))
    button(actions.CANCEL_FAILED, actions.parse_window_value, lambda _: "cancelling",
           lambda c, t: rt.bulk.cancel_recent(c.who, t[0]))

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("Bolt could not handle a request: %s", type(error).__name__, exc_info=error)
