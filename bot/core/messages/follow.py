"""What the thread is told while a retried job is followed and when it ends."""

from __future__ import annotations

import time
from typing import Any

from bot.core import words
from bot.core.commands import COMMAND
from bot.core.messages.alert import NOTIFICATION_ERROR_CHARS, error_code
from bot.core.messages.blocks import (
    JSON_CHUNK,
    Message,
    _chunks,
    code,
    context,
    escape,
    json_sections,
    mention,
    message,
    plain,
    section,
)
from bot.core.outcome import RETENTION_SECONDS, RETRYABLE, seconds_text, state_words
from bot.core.worker_errors import error_details, error_summary


def follow_outcome(endpoint: str, job: str, body: dict[str, Any], actor: str | None, *, now: float | None = None,
                   limit: str | None = None) -> Message:
    """How a retried job ended. After another failure, until when it can be retried (`now` is when it ended), or
    `limit`, the retry limit's words with the next allowed time, when the hourly budget is spent."""
    now = time.time() if now is None else now
    status = str(body.get("status", "")).upper()
    ref = f"job {code(job)} on endpoint {code(endpoint)}"
    shown: dict[str, Any] = body
    label = "RunPod's final answer:"
    if status == "COMPLETED":
        took = seconds_text(body.get("executionTime"))
        text = f":white_check_mark: The retry worked: {ref} *completed*" + (f" in {took}." if took else ".")
        lines = [section(text)]
        plain_text = f"The retry worked: job {job} on {endpoint} completed"
    elif status == "CANCELLED":
        # Not "again": it did not fail, someone stopped it, and RunPod cannot retry a cancelled job.
        text = f":no_entry_sign: {mention(actor)}, the retried {ref} was *cancelled* before it ended."
        lines = [section(text), context("A cancelled job cannot be retried; resubmit it if it is still "
                                        "needed.")]
        plain_text = f"{mention(actor)}: the retried job {job} on {endpoint} was cancelled"
    else:
        error = body.get("error")
        summary, details = error_summary(error), error_details(error)
        how = f"*{words.again(status)}*" if status in RETRYABLE else \
            f"ended *{state_words(status) if status else 'in an unknown state'}*"
        why = f": {error_code(summary)}" if summary else ""
        text = f":red_circle: {mention(actor)}, the retried {ref} {how}{why}."
        lines = [section(text)]
        if summary:
            if details:  # the whole traceback, as lines: the worker's own words, once
                lines.extend(section(f"```{chunk}```") for chunk in _chunks(plain(details), JSON_CHUNK)[-3:])
            # The error is shown above: RunPod's answer below leaves it out instead of repeating it.
            shown = {k: v for k, v in body.items() if k != "error"}
            label = "RunPod's final answer (its `error` is shown above):"
        can = limit or words.retry_until(now + RETENTION_SECONDS) if status in RETRYABLE else ""
        lines.append(context(f"A job that keeps failing needs a look at its input or worker, not another retry. {can}"
                             .strip()))
        first = error_summary(error, NOTIFICATION_ERROR_CHARS)
        what = f"{status.replace('_', ' ')} again" if status in RETRYABLE else f"ended {state_words(status or None)}"
        plain_text = (f"{mention(actor)}: {what} after a retry: job {job} on "
                      f"{endpoint}" + (f": {escape(first)}" if first else ""))
    sections = json_sections(shown, max_sections=4)
    if sections:
        lines.append(context(label))
        lines.extend(sections)
    return message(plain_text, lines)


def follow_gave_up(endpoint: str, job: str, reason: str, last_status: str | None) -> Message:
    last = f" Last known state: {state_words(last_status)}." if last_status else ""
    return message(f"Stopped following job {job}",
                   [section(f":grey_question: I stopped following job {code(job)} on endpoint {code(endpoint)}: "
                            f"{reason}.{last} Check it with `{COMMAND} status {endpoint} {job}`.")])


def follow_resumed(endpoint: str, job: str) -> Message:
    return message(f"Following job {job} again",
                   [context(f":arrows_counterclockwise: The app restarted; I am following job {code(job)} on "
                            f"endpoint {code(endpoint)} again and will post here when it ends.")])


# ---------------------------------------------------------------- alerts


def follow_trouble(endpoint: str, job: str, summary: str) -> Message:
    return message(f"Having trouble checking job {job}",
                   [context(f":warning: Checking job {code(job)} on endpoint {code(endpoint)} keeps failing "
                            f"({summary}). I keep trying, more slowly, and will post when it ends.")])
