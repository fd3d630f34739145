"""`/runpod-retry`: parse the text while acking (usage errors and help are the ack itself), then run it. With no
text, the retry form (bot/listeners/modal.py)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.core import messages
from bot.core.commands import (
    COMMAND,
    AutoPause,
    AutoResume,
    AutoShow,
    CheckHealth,
    Help,
    History,
    Retry,
    RetryFailed,
    Status,
    UsageError,
    parse_command,
)
from bot.core.forms import Origin
from bot.listeners.ack import ack_accepted, ack_retry, ack_then_run
from bot.listeners.modal import open_form
from bot.work.bulk import BULK_REQUEST, bulk_request
from bot.work.runtime import Runtime
from bot.work.single import RetryRequest, Way
from bot.work.who import Source, Who


def register(app: AsyncApp, rt: Runtime) -> None:
    @app.command(COMMAND)
    async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        if not (body.get("text") or "").strip():
            # No text: the retry form, opened at once (the trigger_id lives 3 seconds).
            who = Who(user=body.get("user_id", ""), channel=body.get("channel_id", ""), source=Source.MODAL,
                      response_url=body.get("response_url"))
            view = messages.retry_form(Origin(who.channel, "command", response_url=who.response_url),
                                       rt.settings.allowed_endpoints)
            await ack_then_run(rt, ack, who, "the retry form", lambda: open_form(rt, who, body.get("trigger_id"),
                                                                                 view))
            return
        try:
            command = parse_command(body.get("text") or "")
        except UsageError as exc:
            rt.metrics.refusals.labels(reason="usage").inc()
            await ack(**messages.usage_error(exc.problem, exc.form))
            return
        if isinstance(command, Help):
            await ack(**messages.help_message())
            return
        who = Who(user=body.get("user_id", ""), channel=body.get("channel_id", ""), source=Source.COMMAND,
                  response_url=body.get("response_url"))
        if isinstance(command, Retry) and not command.is_bulk:
            await ack_retry(rt, ack, RetryRequest(who, command.endpoint, command.jobs[0], Way.COMMAND))
        elif isinstance(command, Status):
            await ack_then_run(rt, ack, who, f"the status of job `{command.job}`",
                               lambda: rt.service.status(who, command.endpoint, command.job))
        elif isinstance(command, History):
            await ack_then_run(rt, ack, who, "the history", lambda: show_history(who, command.limit))
        elif isinstance(command, Retry):
            await ack_accepted(rt, ack, who, f"the retry of {len(command.jobs)} jobs", BULK_REQUEST,
                               bulk_request(who, command.endpoint, command.jobs),
                               lambda work_id: rt.bulk.from_command(who, command.endpoint, command.jobs, work_id))
        elif isinstance(command, CheckHealth):
            await ack_then_run(rt, ack, who, f"the health of endpoint `{command.endpoint}`",
                               lambda: rt.health.show(rt.service, who, command.endpoint))
        elif isinstance(command, RetryFailed):
            await ack_then_run(rt, ack, who, "the retry of recent failures",
                               lambda: rt.recent.offer(who, command.endpoint, command.window_seconds))
        elif isinstance(command, AutoShow):
            await ack_then_run(rt, ack, who, "the list of retry policies", lambda: rt.switch.show(who))
        elif isinstance(command, AutoPause):
            await ack_then_run(rt, ack, who, "pausing automatic retries",
                               lambda: rt.switch.pause(who, command.scope, command.duration))
        elif isinstance(command, AutoResume):
            await ack_then_run(rt, ack, who, "resuming automatic retries",
                               lambda: rt.switch.resume(who, command.scope))

    async def show_history(who: Who, limit: int) -> None:
        rows = await rt.store.history(limit)
        await rt.out.ephemeral(who.channel, who.user, messages.history_message(rows, limit), who.response_url)
