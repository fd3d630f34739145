"""The retry form: `/runpod-retry` with no text and the message shortcut open it (views.open straight away, within
the 3 seconds a trigger_id lives: nothing waits on RunPod or the database before); a submission with bad input is
answered next to its fields and the form stays open; a good one runs as the command does."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core import actions, messages
from bot.core.forms import Origin, check_form, submitted
from bot.listeners.ack import ack_accepted, ack_retry
from bot.slack.out import error_code
from bot.work.bulk import BULK_REQUEST, bulk_request
from bot.work.runtime import Runtime
from bot.work.single import RetryRequest, Way
from bot.work.who import Source, Who

# The longest the access check may take before the form opens (a trigger_id lives 3 seconds).
OPEN_CHECK = 1.0
RESTARTING = "The app is restarting, so nothing was done. Press Retry again in a few seconds."
DATABASE_AWAY = "The app cannot reach its database right now, so nothing was done. Press Retry again in a minute."
STALE = "This form is from an older version of the app. Close it and open it again."


async def refused_now(rt: Runtime, who: Who) -> str | None:
    """Why the access rules would refuse this person's submission here, known before the form opens: who may retry
    and where (no endpoint is chosen yet, and nothing asks RunPod). A user-group check slower than OPEN_CHECK leaves
    the decision to the submission, so the form still opens within the trigger's 3 seconds."""
    try:
        return await asyncio.wait_for(rt.access.refusal(who.user, who.channel, None), timeout=OPEN_CHECK)
    except TimeoutError:
        return None


async def open_form(rt: Runtime, who: Who, trigger_id: Any, view: dict[str, Any]) -> None:
    """views.open, directly (not through the outbox: the trigger expires in 3 seconds). Someone the access rules
    would refuse on submit is told why instead, in the view that would have been the form. When Slack will not open
    it, the person is told privately what to type instead."""
    reason = await refused_now(rt, who)
    if reason is not None:
        rt.metrics.refusals.labels(reason="access").inc()
        view = messages.form_refused(reason)
    try:
        await rt.client.views_open(trigger_id=str(trigger_id or ""), view=view)
    except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
        await rt.out.ephemeral(who.channel, who.user, messages.form_unavailable(error_code(exc)), who.response_url)


def register(app: AsyncApp, rt: Runtime) -> None:
    @app.view(actions.RETRY_MODAL)
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        origin = Origin.decode(view.get("private_metadata"))
        if origin is None:
            await ack(response_action="errors", errors={actions.JOBS_BLOCK: STALE})
            return
        endpoint, jobs_text = submitted((view.get("state") or {}).get("values"))
        checked = check_form(endpoint, jobs_text, rt.settings.allowed_endpoints)
        if isinstance(checked, dict):
            rt.metrics.refusals.labels(reason="usage").inc()
            await ack(response_action="errors", errors=checked)
            return
        if not rt.background.accepting:
            await ack(response_action="errors", errors={actions.JOBS_BLOCK: RESTARTING})
            return
        if rt.database_lost:
            await ack(response_action="errors", errors={actions.JOBS_BLOCK: DATABASE_AWAY})
            return
        shortcut = origin.source == "shortcut" and origin.thread_ts is not None
        who = Who(user=(body.get("user") or {}).get("id", ""), channel=origin.channel,
                  source=Source.SHORTCUT if shortcut else Source.MODAL, response_url=origin.response_url)
        endpoint, jobs = checked.endpoint, checked.jobs
        # The shortcut's results go in the picked message's thread.
        thread = origin.thread_ts if shortcut else None
        # Written down before the ack, as the command's: a replica dying right after it must not lose it.
        if len(jobs) == 1:
            way = Way.COMMAND if thread is None else Way.THREAD
            await ack_retry(rt, ack, RetryRequest(who, endpoint, jobs[0], way, origin.channel, thread_ts=thread),
                            ack_is_seen=False)
        else:
            await ack_accepted(rt, ack, who, f"the retry of {len(jobs)} jobs", BULK_REQUEST,
                               bulk_request(who, endpoint, jobs, thread),
                               lambda work_id: rt.bulk.from_command(who, endpoint, jobs, work_id, thread_ts=thread),
                               ack_is_seen=False)
