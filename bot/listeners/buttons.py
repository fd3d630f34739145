"""Buttons on the app's messages (Retry, Status, Retry all, `failed`'s Confirm and Cancel, an auto-retrying
alert's Stop, and automatic retries' Pause and Resume on the Home tab and on the breaker's notice).

A button's value is parsed and validated again before anything runs: Slack returns whatever a client sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.core import actions, messages
from bot.listeners.ack import ack_accepted, ack_retry, ack_then_run
from bot.slack.out import Place
from bot.work.accepted import RETRY_ALL_REQUEST, retry_all_request
from bot.work.auto_switch import from_home
from bot.work.runtime import Runtime
from bot.work.single import RetryRequest, Way
from bot.work.who import Source, Who


@dataclass(frozen=True)
class Click:
    who: Who
    channel: str
    message_ts: str
    thread_ts: str | None
    value: Any


def read_click(body: dict[str, Any]) -> Click:
    """Who clicked where, on which message, with which value. Shapes come from Slack's block_actions."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    user = (body.get("user") or {}).get("id", "")
    # A click on the Home tab has no channel: what the person is told then goes to their messages with the app.
    who = Who(user=user, channel=channel or user, source=Source.BUTTON, response_url=body.get("response_url"))
    action = (body.get("actions") or [{}])[0]
    return Click(who, channel, container.get("message_ts") or message.get("ts") or "",
                 container.get("thread_ts") or message.get("thread_ts"), action.get("value"))


def register(app: AsyncApp, rt: Runtime) -> None:
    async def bad_button(ack: AsyncAck, click: Click) -> None:
        await ack_then_run(rt, ack, click.who, "a button", lambda: rt.out.ephemeral(
            click.channel, click.who.user, messages.bad_button(), click.who.response_url), ack_is_seen=False)

    def button(action_id: str, parse: Callable[[object], Any], what: Callable[[Any], str],
               work: Callable[[Click, Any], Awaitable[object]]) -> None:
        @app.action(action_id)
        async def on_click(ack: AsyncAck, body: dict[str, Any]) -> None:
            click = read_click(body)
            target = parse(click.value)
            if target is None:
                await bad_button(ack, click)
                return
            await ack_then_run(rt, ack, click.who, what(target), lambda: work(click, target), ack_is_seen=False)

    @app.action(actions.RETRY)
    async def retry(ack: AsyncAck, body: dict[str, Any]) -> None:
        # Written down before the ack (`ack_retry`): a replica dying right after it must not lose the click. A Retry
        # on the Home tab comes from a view, not a message: it goes where that job's retry belongs.
        click = read_click(body)
        target = actions.parse_job_value(click.value)
        if target is None:
            await bad_button(ack, click)
            return
        endpoint, job = target
        request = RetryRequest(click.who, endpoint, job, Way.BUTTON, click.channel, click.message_ts, click.thread_ts) \
            if click.message_ts else RetryRequest(click.who, endpoint, job, Way.HOME)
        await ack_retry(rt, ack, request, ack_is_seen=False)

    button(actions.STATUS, actions.parse_job_value, lambda t: f"the status of job `{t[1]}`",
           lambda c, t: rt.service.status(c.who, t[0], t[1], Place(c.channel, thread_ts=c.thread_ts or c.message_ts,
                                                            response_url=c.who.response_url)))

    @app.action(actions.RETRY_ALL)
    async def retry_all(ack: AsyncAck, body: dict[str, Any]) -> None:
        # Written down before the ack (`ack_accepted`): a replica dying right after it must not lose the click.
        click = read_click(body)
        target = actions.parse_storm_value(click.value)
        if target is None:
            await bad_button(ack, click)
            return
        endpoint, storm_id = target
        await ack_accepted(rt, ack, click.who, "Retry all", RETRY_ALL_REQUEST,
                           retry_all_request(click.who, endpoint, storm_id),
                           lambda work_id: rt.storms.retry_all(click.who, endpoint, storm_id, work_id),
                           ack_is_seen=False,
                           unreachable=messages.retry_all_not_taken(endpoint, rt.storms.pending(endpoint, storm_id)))

    button(actions.STORM_STATUS, actions.parse_storm_value, lambda _: "the status of the grouped jobs",
           lambda c, t: rt.storms.status(c.who, *t))
    button(actions.CONFIRM_FAILED, actions.parse_window_value, lambda _: "the retry of recent failures",
           lambda c, t: rt.recent.confirm(c.who, *t))
    button(actions.CANCEL_FAILED, actions.parse_window_value, lambda _: "cancelling",
           lambda c, t: rt.recent.cancel(c.who, t[0]))
    # Automatic retries' kill switch: Pause all and Resume on the Home tab, Resume on the breaker's notice.
    button(actions.AUTO_PAUSE, actions.parse_scope_value, lambda _: "pausing automatic retries",
           lambda c, scope: rt.switch.pause(c.who if c.message_ts else from_home(c.who), scope, None))
    button(actions.AUTO_RESUME, actions.parse_scope_value, lambda _: "resuming automatic retries",
           lambda c, scope: rt.switch.resume(c.who, scope, notice=(c.channel, c.message_ts)) if c.message_ts
           else rt.switch.resume(from_home(c.who), scope))

    async def stop(click: Click, target: tuple[str, str]) -> None:
        if rt.auto is None:  # the policy file was removed since the alert was drawn
            await rt.out.ephemeral(click.channel, click.who.user, messages.auto_stop_too_late(*target, None),
                                   click.who.response_url)
            return
        await rt.auto.stop(click.who, target[0], target[1], click.channel, click.message_ts)

    button(actions.AUTO_STOP, actions.parse_job_value, lambda t: f"stopping the automatic retries of job `{t[1]}`",
           stop)
