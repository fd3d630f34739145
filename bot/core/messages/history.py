"""`history` and the audit channel: past attempts, one line each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.core.breaker import BREAKER
from bot.core.messages.blocks import (
    MAX_SECTION_TEXT,
    Message,
    clip,
    code,
    count,
    escape,
    mention,
    message,
    plain,
    section,
    slack_time,
)
from bot.core.words import CHECK_STATUS, NOT_RETRIED, REQUEUED, UNKNOWN, state_sentence

# What an attempt's recorded outcome (an outcome Kind, or "refused:<reason>" for the app's own rules) means.
_MAYBE = f"{UNKNOWN} ({CHECK_STATUS}): the retry may have gone through"
_REASONS: dict[str, tuple[str, str]] = {
    "requeued": (":white_check_mark:", REQUEUED),
    "not_found": (":x:", f"{NOT_RETRIED}: RunPod does not know the job (wrong ID, or its result expired)"),
    "not_retryable": (":information_source:", f"{NOT_RETRIED}: the job {{state}}"),
    "unauthorized": (":x:", f"{NOT_RETRIED}: RunPod refused the API key"),
    "refused": (":x:", f"{NOT_RETRIED}: RunPod refused it"),
    "rate_limited": (":x:", f"{NOT_RETRIED}: RunPod was limiting requests"),
    "server_error": (":warning:", f"{_MAYBE}; RunPod had a server error"),
    "timeout": (":warning:", f"{_MAYBE}; RunPod did not answer in time"),
    "unreachable": (":warning:", f"{_MAYBE}; RunPod could not be reached"),
    "bad_response": (":warning:", f"{_MAYBE}; RunPod's answer was garbled"),
    "refused:access": (":no_entry:", f"{NOT_RETRIED}: not allowed for this person, channel or endpoint"),
    "refused:budget": (":no_entry:", f"{NOT_RETRIED}: retry limit reached"),
    "refused:duplicate": (":hourglass_flowing_sand:", f"{NOT_RETRIED} again: it was already being retried"),
    "refused:completed": (":white_check_mark:", f"{NOT_RETRIED}: it had already completed"),
    "refused:shutdown": (":warning:", f"{NOT_RETRIED}: the app was restarting"),
    "refused:error": (":boom:", f"{NOT_RETRIED}: the app hit an error"),
    # The kill switch and the breaker of automatic retries (retry policies): `endpoint` is the scope ("*": all).
    "auto:pause": (":double_vertical_bar:", "paused automatic retries"),
    "auto:resume": (":arrow_forward:", "resumed automatic retries"),
    "auto:stop": (":octagonal_sign:", "stopped automatic retries"),
}
AUTO = "auto:"

_HOW = {"command": "by command", "button": "with an alert's Retry button", "bulk": "in a bulk retry",
        "retry_all": "with Retry all", "modal": "with the retry form", "shortcut": "with the message shortcut",
        "home": "from the Home tab", "cli": "from a terminal"}

ROWS_PER_SECTION = 5  # a section holds at most 10 fields: five attempts, two columns each


def attempt_words(outcome: str, job_status: str | None = None) -> tuple[str, str]:
    """(icon, plain reason) for a recorded outcome; codes never reach the reader."""
    icon, said = _REASONS.get(outcome, (":grey_question:", "something else happened"))
    already = "already " if job_status == "COMPLETED" else ""
    return icon, said.format(state=already + state_sentence(job_status))


def how_words(source: str) -> str:
    return _HOW.get(source, f"via {source}")


def where_words(channel: str | None) -> str:
    """Where an attempt was asked: a channel as a link; the app's direct messages; or nowhere in Slack (a shell)."""
    if not channel:
        return "outside Slack"
    if channel[0] in "UWD":
        return "in a direct message with the app"
    return f"in <#{channel}>"


def person(user: str | None, *, mentions: bool = True) -> str:
    """Who did it: a mention, or "the breaker" (automatic retries paused themselves)."""
    if user == BREAKER:
        return "the breaker"
    return mention(user) if mentions else plain(mention(user))


def _auto_target(endpoint: str, job: str | None, detail: str | None) -> str:
    """What a kill-switch entry was about: "on `ep-a` until 05:42 UTC", "on every endpoint", "on `ep-a` · `job`"."""
    target = "every endpoint" if endpoint == "*" else code(endpoint)
    return (f"on {target}" + (f" · {code(job)}" if job else "")
            + (f" {escape(detail)}" if detail else ""))


def _attempt_fields(row: dict[str, Any]) -> list[dict[str, Any]]:
    outcome = str(row.get("outcome") or "")
    icon, reason = attempt_words(outcome, row.get("job_status"))
    when = slack_time(float(row["at"]), "{date_short_pretty} {time}")
    how = how_words(str(row.get("source")))
    left = f"{when} · {person(row.get('user'))}\n{where_words(row.get('channel'))}, {how}"
    right = f"{icon} {reason}\n{code(str(row['endpoint']))} · {code(str(row['job']))}"
    if outcome.startswith(AUTO):
        right = f"{icon} {reason}\n{_auto_target(str(row['endpoint']), row.get('job'), row.get('detail'))}"
    return [{"type": "mrkdwn", "text": clip(left, 2000)}, {"type": "mrkdwn", "text": clip(right, 2000)}]


def history_message(rows: Iterable[dict[str, Any]], limit: int) -> Message:
    """Past attempts in two fixed columns (when, who and where | what happened to which job), in the reader's time,
    with people and channels as mentions. Only the person who asked sees it, so mentions notify nobody."""
    rows = list(rows)
    if not rows:
        return message("No retry attempts recorded yet.", [section("No retry attempts recorded yet.")])
    title = f"Last {len(rows)} retry attempts" if len(rows) > 1 else "The last retry attempt"
    blocks: list[dict[str, Any]] = [section(f"*{title}*, newest first, in your time zone:")]
    for start in range(0, len(rows), ROWS_PER_SECTION):
        cells = [cell for row in rows[start:start + ROWS_PER_SECTION] for cell in _attempt_fields(row)]
        blocks.append({"type": "section", "fields": cells})
    return message(title, blocks)


def audit_text(entry: Any, *, mentions: bool = True) -> str:
    """One attempt (an AuditEntry) as one line of the audit channel. Without `mentions`, people are named as plain
    text: the line is posted that way, then edited to a mention, which Slack does not notify."""
    icon, reason = attempt_words(entry.outcome, entry.job_status)
    who = person(entry.user, mentions=mentions)
    if entry.outcome.startswith(AUTO):
        target = _auto_target(entry.endpoint, entry.job, entry.detail)
        if entry.user == BREAKER:
            return f"{icon} The breaker {reason} {target}"
        return f"{icon} {who} {how_words(entry.source)} {where_words(entry.channel)}: {reason} {target}"
    return (f"{icon} {who} {how_words(entry.source)} {where_words(entry.channel)}: {reason} — "
            f"{code(entry.endpoint)} · {code(entry.job)}")


def audit_lines(entries: Sequence[Any], *, mentions: bool = True) -> Message:
    """Several attempts, one line each, in as few sections as Slack's limits allow."""
    lines = [clip(audit_text(e, mentions=mentions), 500) for e in entries]
    sections: list[str] = []
    for line in lines:
        if sections and len(sections[-1]) + 1 + len(line) <= MAX_SECTION_TEXT:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    first = entries[0]
    text = f"Job {first.job} on {first.endpoint}: {attempt_words(first.outcome, first.job_status)[1]}"
    if first.outcome.startswith(AUTO):  # about an endpoint (or all), not a job
        text = plain(audit_text(first, mentions=False)).split(" ", 1)[1]
    if len(entries) > 1:
        text += f" (and {count(len(entries) - 1, 'more attempt')})"
    return message(text, [section(chunk) for chunk in sections])
