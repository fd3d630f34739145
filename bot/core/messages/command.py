"""Replies to `/runpod-retry`: usage, refusals, the command's parent message and a RunPod outcome."""

from __future__ import annotations

import time
from typing import Any

from bot.core.commands import COMMAND, MAX_BULK_JOBS, MAX_HISTORY
from bot.core.messages.blocks import (
    MAX_BLOCKS,
    Message,
    code,
    context,
    escape,
    json_sections,
    mention,
    message,
    section,
    slack_time,
)
from bot.core.outcome import Outcome

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
    f"• `{COMMAND} help` shows this.\n"
    "RunPod keeps a finished job for about 30 minutes; after that it cannot be retried. "
    "`help`, `status`, `history` and `failed` are reserved words, not IDs."
)


# ---------------------------------------------------------------- building blocks


def help_message() -> Message:
    return message(f"How to use {COMMAND}", [section(USAGE)])


def usage_error(problem: str) -> Message:
    return message(f"{COMMAND}: {problem}", [section(f":warning: {problem}"), context(USAGE)])


def refusal(reason: str) -> Message:
    return message(f"Not allowed: {reason}", [section(f":no_entry: {reason}")])


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
    return message(f"{what} job {job} on endpoint {endpoint}",
                   [section(f":arrows_counterclockwise: {text}" if verb == "retry" else f":mag: {text}"),
                    {**context("The result is in the thread."), "block_id": THREAD_HINT}])


def outcome_blocks(outcome: Outcome, *, prefix: str = "") -> list[dict[str, Any]]:
    icon = ":white_check_mark:" if outcome.ok else ":x:"
    head = f"{icon} {prefix}{outcome.headline}."
    return [section(head), context(outcome.advice)]


def outcome_message(outcome: Outcome, *, prefix: str = "", attach_note: str | None = None) -> Message:
    """The result reply: status, one plain line, and the exact JSON RunPod returned (or an excerpt)."""
    blocks = outcome_blocks(outcome, prefix=prefix)
    if outcome.body is not None:
        sections = json_sections(outcome.body)
        if sections is None:
            blocks.append(context(attach_note or "The JSON is long: it is attached to this thread as a file."))
        else:
            blocks.append(context("What RunPod returned:"))
            blocks.extend(sections)
    elif outcome.excerpt:
        blocks.append(context(f"RunPod's answer (excerpt, not JSON): {escape(outcome.excerpt)}"))
    return message(f"{prefix}{outcome.headline}", blocks)


def outcome_needs_file(outcome: Outcome) -> bool:
    return outcome.body is not None and json_sections(outcome.body) is None


def already_claimed(endpoint: str, job: str, user: str, at: float) -> Message:
    text = (f"{mention(user)} already retried job {code(job)} on endpoint {code(endpoint)} at "
            f"{slack_time(at)}; it is being followed. Watch the thread for the result.")
    return message(f"Already retried by someone else at {time.strftime('%H:%M UTC', time.gmtime(at))}",
                   [section(f":hourglass_flowing_sand: {text}")])


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
