"""The failure alert: one message per failed job, redrawn as its state changes."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from bot.core import actions, words
from bot.core.alerts import Alert, AutoState, Phase, next_retry_at
from bot.core.commands import COMMAND
from bot.core.health import Health
from bot.core.ids import shorten
from bot.core.messages.auto_alert import auto_line, auto_waiting_line
from bot.core.messages.blocks import (
    JSON_CHUNK,
    Message,
    _chunks,
    button,
    code,
    confirm_dialog,
    context,
    escape,
    fields,
    header,
    link,
    mention,
    message,
    plain,
    section,
    slack_time,
)
from bot.core.messages.health import confirm_warning, health_blocks
from bot.core.outcome import seconds_text, state_sentence, state_words
from bot.core.worker_errors import error_details, error_summary

_PHASE_HEADERS = {
    Phase.FAILED: ":red_circle: RunPod job {status}",
    Phase.RETRYING: ":arrows_counterclockwise: Retrying RunPod job",
    Phase.REQUEUED: ":hourglass_flowing_sand: Retried RunPod job: {job_status}",
    Phase.COMPLETED: ":white_check_mark: Retried RunPod job completed",
    Phase.FAILED_AGAIN: ":red_circle: Retried RunPod job {status} again",
    Phase.REFUSED: ":warning: RunPod job not retried",
    Phase.UNKNOWN: ":grey_question: RunPod job: outcome unknown",
}

OFFERS_RETRY = (Phase.FAILED, Phase.FAILED_AGAIN, Phase.REFUSED)
NOT_ENABLED = ("Retries are not enabled for this endpoint: this app is not set up to call it, so it cannot retry or "
               "check the job from here. An admin can add it to `RUNPOD_RETRY_ENDPOINTS`.")
NOTIFICATION_ERROR_CHARS = 150  # a phone shows little: the error's summary is cut shorter there
DETAILS_IN_THREAD = "The worker's whole error (its traceback) is in the thread."
FORGOTTEN = words.too_late()


def not_allowed_here(channels: Collection[str], command: str) -> str:
    """One line for an alert posted where retries are not allowed (RUNPOD_RETRY_ALLOWED_CHANNELS): why it has no
    buttons, and where a retry is possible."""
    shown = sorted(channels)
    where = ", ".join(f"<#{c}>" for c in shown[:10]) + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
    return (f"Retries are not allowed in this channel, so this alert has no buttons. They are allowed in {where}: "
            f"use {command} there.")


def _here(alert: Alert, channels: Collection[str]) -> bool:
    return not channels or alert.channel in channels


def short_state(status: str | None) -> str:
    return words.state(status)


def retry_block(alert: Alert, now: float, *, max_retries: int | None = None, enabled: bool = True,
                channels: Collection[str] = ()) -> str | None:
    """Why the alert offers no Retry although the job could be retried, in words; None when it offers one.

    The buttons never offer what the app would refuse: an endpoint outside RUNPOD_RETRY_ENDPOINTS, or a job whose
    hourly retry budget is spent, or a channel outside `channels` (RUNPOD_RETRY_ALLOWED_CHANNELS, when set)."""
    if not alert.retry_offered or alert.phase not in OFFERS_RETRY or now >= alert.deadline:
        return None
    if not enabled:
        return NOT_ENABLED
    if not _here(alert, channels):
        return not_allowed_here(channels, f"`{COMMAND} {alert.endpoint} {alert.job}`")
    if max_retries:
        again = next_retry_at(alert, now, max_retries)
        if again is not None:
            return words.retry_limit(max_retries, again, alert.deadline)
    return None


def _retry_window(alert: Alert, now: float, block: str | None) -> str:
    """What can be done about a job that failed: until when it can be retried, or why it cannot."""
    if now >= alert.deadline:
        return FORGOTTEN
    return block or words.retry_until(alert.deadline)


def alert_state_line(alert: Alert, now: float, *, max_retries: int | None = None, enabled: bool = True,
                     channels: Collection[str] = ()) -> str:
    if alert.auto is not None and alert.auto.state is AutoState.WAITING:
        return auto_waiting_line(alert)
    who = mention(alert.actor)
    at = slack_time(alert.acted_at) if alert.acted_at else ""
    block = retry_block(alert, now, max_retries=max_retries, enabled=enabled, channels=channels)
    if alert.phase is Phase.FAILED:
        return _retry_window(alert, now, block)
    if alert.phase is Phase.RETRYING:
        return f"Retrying, requested by {who} at {at}…"
    if alert.phase is Phase.REQUEUED:
        now_state = f"{words.REQUEUED}, the job {state_sentence(alert.job_status)}"
        if alert.report_url is not None:
            # Retried from elsewhere (a command, a retry of many jobs): the details are there, not in this thread.
            return (f"Retried by {who} at {at} ({link(alert.report_url, 'where it was asked')}); {now_state}. "
                    "Following it: this alert will show how it ends.")
        return f"Retried by {who} at {at}; {now_state}. Following it: this alert and its thread will show how it ends."
    if alert.phase is Phase.COMPLETED:
        took = seconds_text(alert.execution_ms)
        by = f"Retried by {who} at {at}" if alert.actor else "Retried outside this app"
        return f"{by}; completed" + (f" in {took}." if took else ".")
    if alert.phase is Phase.FAILED_AGAIN:
        again = f"Retried by {who} at {at}; it {words.again(alert.status)}."
        if now >= alert.deadline:
            return f"{again} {FORGOTTEN}"
        return f"{again} {block or words.retry_until(alert.deadline)}"
    if alert.phase is Phase.REFUSED:
        # Point to details only where there are some: an interrupted retry left nothing in the thread.
        if not alert.thread_details:
            details = ""
        elif alert.report_url is None:
            details = " Details in the thread."
        else:
            details = f" The details are {link(alert.report_url, 'where it was asked')}."
        line = f"{alert.note or 'RunPod refused the retry'}.{details}"
        if alert.retry_offered:
            line += " " + (block or (f"You can try again until {slack_time(alert.deadline)}."
                                     if now < alert.deadline else FORGOTTEN))
        return line
    what = alert.note or "I stopped following it before it ended"
    if not alert.actor:
        return f"Outside this app, {what}. Press Status to see where it is now."
    return f"Retried by {who} at {at}; {what}. Press Status to see where it is now."


def alert_notification(alert: Alert, now: float, *, max_retries: int | None = None, enabled: bool = True,
                       channels: Collection[str] = ()) -> str:
    """The fallback text, which is what a phone shows: what happened first, then why, then what can be done."""
    ref = f"job {alert.job} on {alert.endpoint}"
    what = alert.status.replace("_", " ")
    error = error_summary(alert.error, NOTIFICATION_ERROR_CHARS)
    # RunPod's words can hold `<!channel>`: shown, never pinging. The sentence's own full stop follows.
    why = f": {escape(error.rstrip('.'))}" if error else ""
    block = retry_block(alert, now, max_retries=max_retries, enabled=enabled, channels=channels)
    if block:
        # The limit's own words, with its next allowed time (message() shows the time as "HH:MM UTC").
        can = ("Retries are not enabled for it." if block == NOT_ENABLED else
               "Retries are not allowed in this channel." if not _here(alert, channels) else block)
    elif now >= alert.deadline or not alert.retry_offered:
        can = "Too late to retry." if now >= alert.deadline else ""
    else:
        can = f"Retry before {slack_time(alert.deadline)}."
    stop = "" if why.endswith("…") else "."  # a cut summary already ends with its own mark
    if alert.auto is not None and alert.auto.state is AutoState.WAITING:
        return (f"{what}: {ref}{why}{stop} Auto-retrying ({alert.auto.attempt} of {alert.auto.of}) at "
                f"{slack_time(alert.auto.due)}, policy {alert.auto.policy}.")
    if alert.phase is Phase.FAILED:
        return f"{what}: {ref}{why}{stop} {can}".strip()
    if alert.phase is Phase.FAILED_AGAIN:
        return f"{what} again after a retry: {ref}{why}{stop} {can}".strip()
    if alert.phase is Phase.RETRYING:
        return f"Retrying {ref}"
    if alert.phase is Phase.REQUEUED:
        return f"Retried {ref}: {words.REQUEUED}, {short_state(alert.job_status)}"
    if alert.phase is Phase.COMPLETED:
        return f"Completed after a retry: {ref}"
    if alert.phase is Phase.REFUSED:
        note = escape(plain(alert.note or "RunPod refused the retry").replace("`", "").replace("*", ""))
        note = note.removeprefix("Not retried: ")
        # The note often names the job itself ("job j on endpoint e is running, …"): then it is not said twice.
        return f"Not retried: {note if alert.job in note else f'{ref}: {note}'}. {can}".strip()
    return f"Outcome unknown: {ref}: {escape(plain(alert.note or 'I stopped following it')).replace('*', '')}"


def alert_message(alert: Alert, now: float | None = None, *, max_retries: int | None = None,
                  enabled: bool = True, health: Health | None = None, channels: Collection[str] = ()) -> Message:
    """`max_retries` (the hourly budget) and `enabled` (the endpoint is one the app may call) keep the buttons
    honest: Retry is offered only when a click would be let through. `health`, the endpoint's latest health
    snapshot, is shown while Retry is offered, with a warning when retrying now is unlikely to work. `channels`: where
    retries are allowed (RUNPOD_RETRY_ALLOWED_CHANNELS; empty: anywhere); elsewhere the alert has no buttons and says
    why."""
    now = time.time() if now is None else now
    title = _PHASE_HEADERS[alert.phase].format(status=alert.status.replace("_", " ").lower(),
                                               job_status=short_state(alert.job_status))
    facts = [("Endpoint", code(alert.endpoint)), ("Job", code(alert.job)),
             ("Status", short_state(alert.job_status or alert.status).capitalize()),
             ("Failed at", slack_time(alert.ended_at, "{date_short_pretty} {time}"))]
    delay, run = seconds_text(alert.delay_ms), seconds_text(alert.execution_ms)
    # After a retry ended, the figures are the retried run's (alerts.finished): labelled so, never mixed.
    retried = alert.phase in (Phase.COMPLETED, Phase.FAILED_AGAIN)
    if delay:
        facts.append(("Retry waited in queue" if retried else "Waited in queue", delay))
    if run:
        facts.append(("Retry ran for" if retried else "Ran for", run))
    blocks: list[dict[str, Any]] = [header(title), fields(facts)]
    summary = error_summary(alert.error)
    if summary:
        label = "Error (before the retry)" if alert.phase is Phase.COMPLETED else "Error"
        blocks.append(section(f"*{label}:* {error_code(summary)}"))
        if error_details(alert.error):
            blocks.append(context(DETAILS_IN_THREAD))
    blocks.append(context(alert_state_line(alert, now, max_retries=max_retries, enabled=enabled, channels=channels)))
    policy_line = auto_line(alert)
    if policy_line:
        blocks.append(context(policy_line))
    value = actions.job_value(alert.endpoint, alert.job)
    buttons = []
    if alert.auto is not None and alert.auto.state is AutoState.WAITING:
        buttons.append(button("Stop", actions.AUTO_STOP, value, confirm=confirm_dialog(
            "Stop the automatic retries?", f"Job `{shorten(alert.job, 120)}` will not be retried automatically; this "
            "alert offers Retry to people instead.", "Stop")))
    elif alert.auto is not None and alert.auto.active:
        pass  # the policy is deciding: a Retry now would race it
    elif alert.retry_offered and alert.phase in OFFERS_RETRY and now < alert.deadline \
            and retry_block(alert, now, max_retries=max_retries, enabled=enabled, channels=channels) is None:
        blocks.extend(health_blocks(health))
        buttons.append(button("Retry", actions.RETRY, value, style="primary", confirm=confirm_dialog(
            "Retry this job?", confirm_warning(
                f"Requeue job `{shorten(alert.job, 120)}` on endpoint `{shorten(alert.endpoint, 60)}` with its "
                "original input. Its old output is removed.", health), "Retry")))
    if enabled and _here(alert, channels):  # Status calls RunPod too: where it would only be refused, not offered
        buttons.append(button("Status", actions.STATUS, value))
    if buttons:
        blocks.append({"type": "actions", "block_id": "alert_actions", "elements": buttons})
    return message(alert_notification(alert, now, max_retries=max_retries, enabled=enabled, channels=channels), blocks)


def alert_refailed(alert: Alert, now: float | None = None, *, max_retries: int | None = None, enabled: bool = True,
                   channels: Collection[str] = ()) -> Message:
    """A thread note when a job retried outside this app failed again: its new error's one line (and the whole
    error below), until when it can be retried, or why not (the retry limit with its next allowed time, a channel
    or endpoint where retries are refused)."""
    now = time.time() if now is None else now
    block = retry_block(alert, now, max_retries=max_retries, enabled=enabled, channels=channels)
    can = FORGOTTEN if now >= alert.deadline else block or words.retry_until(alert.deadline)
    summary, details = error_summary(alert.error), error_details(alert.error)
    why = f": {error_code(summary)}" if summary else ""
    said = escape(error_summary(alert.error, NOTIFICATION_ERROR_CHARS) or "")
    return message(f"Job {alert.job} {words.again(alert.status)}" + (f": {said}" if said else ""),
                   [section(f":red_circle: Job {code(alert.job)} on endpoint {code(alert.endpoint)} "
                            f"{words.again(alert.status)}{why}. The alert above is up to date. {can}"),
                    *(_details_sections(details) if details else [])])


def alert_undelivered(endpoint: str, job: str, status: str, error: str | None, channel: str,
                      count: int = 1) -> Message:
    """An alert Slack would not take (the app is not in the channel, or it does not exist): said where someone
    can fix it, with the fix. `count` > 1: a grouped alert for that many jobs."""
    why = f" ({escape(error_summary(error, NOTIFICATION_ERROR_CHARS) or '')})" if error else ""
    what = (f"the grouped alert for {count} failed jobs on endpoint {code(endpoint)}" if count > 1 else
            f"the failure alert for job {code(job)} on endpoint {code(endpoint)} ({state_words(status)}{why})")
    return message(f"A RunPod failure alert could not be posted in channel {channel}: invite the app there",
                   [section(f":warning: I could not post {what} in <#{channel}>: Slack refused it, most likely "
                            "because I am not a member of that channel."),
                    context(f"To fix it, type `/invite @RunPod Retry` in <#{channel}> (or set `RUNPOD_ALERT_CHANNEL` "
                            "to a channel I am in). RunPod's next delivery of a failure then posts its alert. Until "
                            f"then, `/runpod-retry failed {endpoint}` lists and retries the jobs that failed. While "
                            "this lasts I say it at most every 10 minutes; the app's log names every alert lost.")])


def error_code(summary: str) -> str:
    """A worker's error summary in inline code, safe whatever it holds (a backtick would end the code early)."""
    safe = escape(summary.replace("`", "'"))
    return f"`{safe}`"


def alert_error_details(alert: Alert) -> Message | None:
    """The worker's whole error, readable, for the alert's thread (the alert itself shows its one-line summary);
    None when the summary says everything."""
    details = error_details(alert.error)
    if details is None:
        return None
    lines = [section(f"The worker's whole error for job {code(alert.job)} on endpoint {code(alert.endpoint)}, "
                     "as RunPod reported it:")]
    lines.extend(_details_sections(details))
    said = escape(error_summary(alert.error, NOTIFICATION_ERROR_CHARS) or "")
    return message(f"The whole error of job {alert.job}: {said}", lines)


def _details_sections(details: str) -> list[dict[str, Any]]:
    """A worker's whole error as code blocks (its end kept, where the cause is, if Slack's limits bite)."""
    return [section(f"```{chunk}```") for chunk in _chunks(plain(details), JSON_CHUNK)[-3:]]
