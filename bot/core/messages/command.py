"""Replies to `/runpod-retry`: usage, refusals, the command's parent message and a RunPod outcome."""

from __future__ import annotations

import time
from typing import Any

from bot.core.commands import COMMAND, HELP_FORM, MAX_BULK_JOBS, MAX_HISTORY, RETRY_FORM
from bot.core.messages.blocks import (
    JSON_CHUNK,
    MAX_BLOCKS,
    Message,
    _chunks,
    code,
    context,
    escape,
    json_sections,
    link,
    mention,
    message,
    plain,
    section,
    slack_time,
    who,
)
from bot.core.outcome import ALIVE, RETRYABLE, UNCERTAIN, Kind, Outcome
from bot.core.worker_errors import error_details

USAGE = (
    f"*`{COMMAND}` — retry failed RunPod Serverless jobs*\n"
    f"• `{COMMAND} <endpointId> <jobId>` retries a FAILED or TIMED_OUT job (same ID, same input).\n"
    f"• `{COMMAND} <endpointId>/<jobId>` or a pasted RunPod API link "
    "`https://api.runpod.ai/v2/<endpointId>/status/<jobId>` works too.\n"
    f"• `{COMMAND} <endpointId> <jobId> <jobId> …` retries several jobs (spaces, commas or new lines; "
    f"up to {MAX_BULK_JOBS}).\n"
    f"• `{COMMAND} status <endpointId> <jobId>` shows a job's current status without changing it.\n"
    f"• `{COMMAND} failed <endpointId> [30m]` retries every job seen failing there recently (you confirm first).\n"
    f"• `{COMMAND} history [N]` shows the last N retry attempts (default 10, at most {MAX_HISTORY}).\n"
    f"• `{COMMAND} health <endpointId>` shows the endpoint's workers and queue, as RunPod reports them.\n"
    f"• `{COMMAND} auto` lists the retry policies (failures the app retries by itself) and whether each is on; "
    f"`{COMMAND} auto pause <endpointId|all> [2h]` stops automatic retries there (until you resume, or for that "
    f"long) and `{COMMAND} auto resume <endpointId|all>` starts them again.\n"
    f"• `{COMMAND}` alone opens a form; the *Retry RunPod jobs* message shortcut fills it from any message.\n"
    f"• `{COMMAND} help` shows this.\n"
    "RunPod keeps a finished job for about 30 minutes; after that it cannot be retried. "
    "`help`, `retry`, `status`, `history`, `failed`, `health` and `auto` are reserved words, not IDs "
    f"(`{COMMAND} retry <endpointId> <jobId>` works too)."
)


# ---------------------------------------------------------------- building blocks


def help_message() -> Message:
    return message(f"How to use {COMMAND}", [section(USAGE)])


def usage_error(problem: str, form: str = RETRY_FORM) -> Message:
    """The problem and the one form it is about; the whole help is one `help` away, not repeated every time."""
    usage = f"{HELP_FORM} shows every form." if form in problem else f"Usage: {form}. {HELP_FORM} shows every form."
    return message(f"{COMMAND}: {problem}", [section(f":warning: {problem}"), context(usage)])


def refusal(reason: str) -> Message:
    """The app's own rules said no: the reason says what was not done and why, once (no "Not allowed:" before a
    "Not retried: …")."""
    return message(reason, [section(f":no_entry: {reason}")])


THREAD_HINT = "thread_hint"  # block_id of "the result is in the thread", dropped when there is no thread


# The reason given when a post waited too long on Slack and went through the command's response_url instead.
SLACK_UNAVAILABLE = "slack_unavailable"


def without_thread_hint(msg: Message, error: str) -> Message:
    """The same message for the response_url fallback: no thread there, so say where replies go instead."""
    blocks = [b for b in msg["blocks"] if b.get("block_id") != THREAD_HINT][:MAX_BLOCKS - 1]
    return {**msg, "blocks": [*blocks, *fallback_note(error)["blocks"]]}


def command_parent(user: str, endpoint: str, job: str, verb: str = "retry") -> Message:
    what = "asked to retry" if verb == "retry" else "asked for the status of"
    text = f"{mention(user)} {what} job {code(job)} on endpoint {code(endpoint)}."
    # The notification names who asked: "@dana asked to retry job …", never a sentence without its subject.
    return message(f"{mention(user)} {what} job {job} on endpoint {endpoint}",
                   [section(f":arrows_counterclockwise: {text}" if verb == "retry" else f":mag: {text}"),
                    {**context("The result is in the thread."), "block_id": THREAD_HINT}])


STATE_ICONS = {
    "COMPLETED": ":white_check_mark:",
    "FAILED": ":red_circle:",
    "TIMED_OUT": ":red_circle:",
    "CANCELLED": ":no_entry_sign:",
}


def state_icon(status: str | None) -> str:
    """The icon of a job's state: what the job is, not how the HTTP call went."""
    if status in ALIVE:
        return ":hourglass_flowing_sand:"
    return STATE_ICONS.get(status or "", ":grey_question:")


def outcome_icon(outcome: Outcome) -> str:
    if outcome.kind in (Kind.STATUS, Kind.REQUEUED, Kind.NOT_RETRYABLE):
        return state_icon(outcome.job_status)
    if outcome.kind in UNCERTAIN:
        return ":warning:"  # it may have gone through: not a plain failure
    if outcome.job_status in RETRYABLE:
        return ":red_circle:"
    return ":x:"


def outcome_blocks(outcome: Outcome, *, prefix: str = "") -> list[dict[str, Any]]:
    head = f"{outcome_icon(outcome)} {prefix}{outcome.headline}."
    return [section(head), context(outcome.advice)]


def _worker_error(outcome: Outcome) -> tuple[Any, str | None]:
    """RunPod's answer as shown, and a failed job's whole error as lines when it has more than one (a traceback,
    runpod-python's JSON): shown readable once, above, and left out of the JSON below instead of repeated there
    as one escaped string."""
    body = outcome.body
    if outcome.job_status not in RETRYABLE or not isinstance(body, dict):
        return body, None
    details = error_details(body.get("error"))
    if details is None:
        return body, None
    return {k: v for k, v in body.items() if k != "error"}, details


def outcome_message(outcome: Outcome, *, prefix: str = "", attach_note: str | None = None) -> Message:
    """The result reply: the sentence and what to do first, then the exact JSON RunPod returned (or an excerpt)
    under a small label, where it does not bury the sentence."""
    blocks = outcome_blocks(outcome, prefix=prefix)
    if outcome.body is not None:
        shown, details = _worker_error(outcome)
        label = outcome.answer_label + (" (its `error` is shown above)" if details else "")
        if details:
            blocks.append(context("The worker's whole error:"))
            blocks.extend(section(f"```{chunk}```") for chunk in _chunks(plain(details), JSON_CHUNK)[-3:])
        sections = json_sections(shown)
        if sections is None:
            blocks.append(context(f"{label}: " + (attach_note or "it is long, so it is attached to this thread as a "
                                                               "file.")))
        else:
            blocks.append(context(f"{label}:"))
            blocks.extend(sections)
    elif outcome.excerpt:
        blocks.append(context(f"{outcome.answer_label}, not JSON: {escape(outcome.excerpt)}"))
    return message(f"{prefix}{outcome.headline}".strip() or f"RunPod's answer about job {outcome.job}", blocks)


def outcome_needs_file(outcome: Outcome) -> bool:
    return outcome.body is not None and json_sections(_worker_error(outcome)[0]) is None


def already_claimed(endpoint: str, job: str, user: str, at: float, *, viewer: str | None = None,
                    where: str | None = None) -> Message:
    """A second retry of a job already being retried: who did (you, or a colleague), when, and where the result
    will be (`where` is a link to that thread)."""
    by = who(user, viewer)
    result = (f"The result will be in {link(where, 'that thread')}." if where
              else "The result will be in the thread where it was asked for.")
    text = (f"{'You' if by == 'you' else by} already retried job {code(job)} on endpoint {code(endpoint)} "
            f"at {slack_time(at)}, so nothing more was done. {result}")
    plain_by = "You" if by == "you" else "Someone else"
    return message(f"{plain_by} already retried job {job} at {time.strftime('%H:%M UTC', time.gmtime(at))}",
                   [section(f":hourglass_flowing_sand: {text}")])


def already_completed(endpoint: str, job: str, actor: str | None, at: float | None, *, viewer: str | None = None,
                      where: str | None = None) -> Message:
    """A late Retry click on a job that already completed after a retry: told privately; the alert stays."""
    if actor and at:
        after = f"after {who(actor, viewer)} retried it at {slack_time(at)}"
    else:
        after = "after a retry outside this app"
    shown = f"{link(where, 'The alert')} shows the result." if where else "The alert shows the result."
    return message(f"Job {job} already completed: nothing was done",
                   [section(f":white_check_mark: Job {code(job)} on endpoint {code(endpoint)} already completed "
                            f"{after}, so nothing was done. {shown}")])


def fallback_note(error: str) -> Message:
    if error == SLACK_UNAVAILABLE:
        return message("Slack is not taking messages in this channel right now, so the result comes here.",
                       [context("Slack is not taking my messages in this channel right now (it answered with errors "
                                "for several seconds), so replies come here instead.")])
    return message("I could not post in this channel, so the result comes here.",
                   [context(f"I cannot post in this channel ({escape(error)}): invite me with `/invite @RunPod "
                            "Retry` to get threaded results. Replies come here instead.")])


# ---------------------------------------------------------------- following a retried job


def retry_throttled(endpoint: str, job: str, wait: float) -> Message:
    """RunPod answered 429: the retry is not lost, it waits its turn."""
    return message(f"RunPod is throttling retries on endpoint {endpoint}; the retry of job {job} is queued",
                   [section(f":hourglass_flowing_sand: RunPod is limiting how fast retries can be sent to endpoint "
                            f"{code(endpoint)} right now. Your retry of job {code(job)} is queued and goes through as "
                            f"soon as RunPod allows (first try again in about {max(1, round(wait))} s). The result "
                            "will be posted here; nothing else to do.")])
