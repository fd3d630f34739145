"""The failure alert: one message per failed job, redrawn as its state changes."""

from __future__ import annotations

import time
from typing import Any

from bot.core import actions
from bot.core.alerts import Alert, Phase
from bot.core.ids import shorten
from bot.core.messages.blocks import (
    Message,
    button,
    clip,
    code,
    confirm_dialog,
    context,
    escape,
    fields,
    header,
    mention,
    message,
    section,
    slack_time,
)
from bot.core.outcome import seconds_text, state_words

_PHASE_HEADERS = {
    Phase.FAILED: ":red_circle: RunPod job {status}",
    Phase.RETRYING: ":arrows_counterclockwise: Retrying RunPod job",
    Phase.REQUEUED: ":hourglass_flowing_sand: Retried RunPod job: {job_status}",
    Phase.COMPLETED: ":white_check_mark: Retried RunPod job completed",
    Phase.FAILED_AGAIN: ":red_circle: Retried RunPod job {status} again",
    Phase.REFUSED: ":warning: RunPod job could not be retried",
    Phase.UNKNOWN: ":grey_question: RunPod job: outcome unknown",
}


def alert_state_line(alert: Alert, now: float) -> str:
    who = mention(alert.actor)
    at = slack_time(alert.acted_at) if alert.acted_at else ""
    deadline = slack_time(alert.deadline)
    if alert.phase is Phase.FAILED:
        if now >= alert.deadline:
            return "RunPod has probably removed this job by now (30 minutes after it ended): it cannot be retried."
        return f"Can be retried until {deadline} (30 minutes after it ended)."
    if alert.phase is Phase.RETRYING:
        return f"Retrying, requested by {who} at {at}…"
    if alert.phase is Phase.REQUEUED:
        return f"Retried by {who} at {at}, now {alert.job_status}. Following it; the outcome will be in the thread."
    if alert.phase is Phase.COMPLETED:
        took = seconds_text(alert.execution_ms)
        by = f"Retried by {who} at {at}" if alert.actor else "Retried outside this app"
        return f"{by}; completed" + (f" in {took}." if took else ".")
    if alert.phase is Phase.FAILED_AGAIN:
        again = f"Retried by {who} at {at}; it {state_words(alert.status)} again."
        if now >= alert.deadline:
            return f"{again} RunPod has probably removed it by now (30 minutes after it ended): it cannot be retried."
        return f"{again} Can be retried until {deadline}."
    if alert.phase is Phase.REFUSED:
        return f"{alert.note or 'RunPod refused the retry'}. Details in the thread."
    what = alert.note or "I stopped following it before it ended"
    if not alert.actor:
        return f"Outside this app, {what}. Press *Status* to see where it is now."
    return f"Retried by {who} at {at}; {what}. Press *Status* to see where it is now."


def alert_message(alert: Alert, now: float | None = None) -> Message:
    now = time.time() if now is None else now
    title = _PHASE_HEADERS[alert.phase].format(status=alert.status.replace("_", " ").lower(),
                                               job_status=alert.job_status or "")
    facts = [("Endpoint", code(alert.endpoint)), ("Job", code(alert.job)),
             ("Status", alert.job_status or alert.status),
             ("Failed at", slack_time(alert.ended_at, "{date_short_pretty} {time}"))]
    delay, run = seconds_text(alert.delay_ms), seconds_text(alert.execution_ms)
    if delay:
        facts.append(("Waited in queue", delay))
    if run:
        facts.append(("Ran for", run))
    blocks: list[dict[str, Any]] = [header(title), fields(facts)]
    if alert.error:
        label = "Error (before the retry)" if alert.phase is Phase.COMPLETED else "Error"
        blocks.append(section(f"*{label}*\n```{escape(clip(alert.error, 2800))}```"))
    blocks.append(context(alert_state_line(alert, now)))
    value = actions.job_value(alert.endpoint, alert.job)
    buttons = []
    if alert.retry_offered and alert.phase in (Phase.FAILED, Phase.FAILED_AGAIN, Phase.REFUSED) \
            and now < alert.deadline:
        buttons.append(button("Retry", actions.RETRY, value, style="primary", confirm=confirm_dialog(
            "Retry this job?", f"Requeue job `{shorten(alert.job, 120)}` on endpoint `{shorten(alert.endpoint, 60)}`"
            " with its original input. Its old output is removed.", "Retry")))
    buttons.append(button("Status", actions.STATUS, value))
    blocks.append({"type": "actions", "block_id": "alert_actions", "elements": buttons})
    text = f"RunPod job {alert.job} on endpoint {alert.endpoint}: {alert_state_line(alert, now)}"
    return message(text, blocks)


# ---------------------------------------------------------------- history


def alert_refailed(alert: Alert) -> Message:
    return message(f"Job {alert.job} failed again",
                   [section(f":red_circle: Job {code(alert.job)} on endpoint {code(alert.endpoint)} "
                            f"{state_words(alert.status)} again. The alert above is up to date; it can be retried "
                            f"until {slack_time(alert.deadline)}.")])
