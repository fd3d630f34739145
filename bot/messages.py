"""Every Slack message the app posts, as pure functions returning {"text", "blocks"}.

Limits are Slack's Block Kit limits; each builder stays inside them whatever the input (long errors,
huge JSON, hundreds of jobs), so Slack never rejects a message for size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from . import actions
from .alerts import Alert, Phase
from .commands import COMMAND, MAX_BULK_JOBS, MAX_HISTORY
from .ids import shorten
from .outcome import Outcome, seconds_text, state_words

Message = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_FALLBACK_TEXT = 3000  # far under Slack's 40,000: it is a notification preview
JSON_CHUNK = 2900         # escaped characters per code-block section, fences excluded
MAX_JSON_SECTIONS = 8     # past this much JSON, it goes into a file instead of the message

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

def escape(text: str) -> str:
    """Slack mrkdwn escaping: the three characters Slack treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_TEXT), "emoji": True}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}]}


def fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    # A section takes at most 10 fields of at most 2000 characters.
    return {"type": "section",
            "fields": [{"type": "mrkdwn", "text": clip(f"*{k}*\n{v}", 2000)} for k, v in pairs[:10]]}


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT)},
                               "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, yes: str, no: str = "Cancel") -> dict[str, Any]:
    return {"title": {"type": "plain_text", "text": clip(title, 100)},
            "text": {"type": "mrkdwn", "text": clip(text, 300)},
            "confirm": {"type": "plain_text", "text": clip(yes, 30)},
            "deny": {"type": "plain_text", "text": clip(no, 30)},
            "style": "primary"}


def message(text: str, blocks: list[dict[str, Any]]) -> Message:
    return {"text": clip(text, MAX_FALLBACK_TEXT), "blocks": blocks[:MAX_BLOCKS]}


def mention(user: str | None) -> str:
    return f"<@{user}>" if user else "someone"


def slack_time(epoch: float, fmt: str = "{time}") -> str:
    """A timestamp each reader sees in their own time zone, with a UTC fallback."""
    fallback = time.strftime("%H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{fmt}|{fallback}>"


def code(text: str) -> str:
    return f"`{escape(text)}`"


# ---------------------------------------------------------------- JSON

def render_json(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False)


def _chunks(text: str, size: int) -> list[str]:
    """Escaped text cut at line ends where possible, never inside an `&…;` entity."""
    escaped = escape(text)
    chunks: list[str] = []
    while escaped:
        if len(escaped) <= size:
            chunks.append(escaped)
            break
        cut = escaped.rfind("\n", 0, size)
        if cut <= 0:
            cut = size
            amp = escaped.rfind("&", cut - 5, cut)
            if amp != -1:
                cut = amp
        chunks.append(escaped[:cut])
        escaped = escaped[cut:].lstrip("\n")
    return chunks


def json_sections(body: Any, max_sections: int = MAX_JSON_SECTIONS) -> list[dict[str, Any]] | None:
    """The JSON as code-block sections, or None when it is too long for a message (attach it instead)."""
    chunks = _chunks(render_json(body), JSON_CHUNK)
    if len(chunks) > max_sections:
        return None
    return [section(f"```{chunk}```") for chunk in chunks]


def json_preview(body: Any, limit: int = 1500) -> str:
    text = render_json(body)
    return text if len(text) <= limit else text[:limit] + "\n…"


# ---------------------------------------------------------------- the command

def help_message() -> Message:
    return message(f"How to use {COMMAND}", [section(USAGE)])


def usage_error(problem: str) -> Message:
    return message(f"{COMMAND}: {problem}", [section(f":warning: {problem}"), context(USAGE)])


def refusal(reason: str) -> Message:
    return message(f"Not allowed: {reason}", [section(f":no_entry: {reason}")])


def command_parent(user: str, endpoint: str, job: str, verb: str = "retry") -> Message:
    what = "asked to retry" if verb == "retry" else "asked for the status of"
    text = f"{mention(user)} {what} job {code(job)} on endpoint {code(endpoint)}."
    return message(f"{what} job {job} on endpoint {endpoint}",
                   [section(f":arrows_counterclockwise: {text}" if verb == "retry" else f":mag: {text}"),
                    context("The result is in the thread.")])


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
    return message("I could not post in this channel, so the result comes here.",
                   [context(f"I cannot post in this channel ({escape(error)}): invite me with `/invite @RunPod "
                            "Retry` to get threaded results. Replies come here instead.")])


# ---------------------------------------------------------------- following a retried job

def follow_outcome(endpoint: str, job: str, body: dict[str, Any], actor: str | None) -> Message:
    status = str(body.get("status", "")).upper()
    ref = f"job {code(job)} on endpoint {code(endpoint)}"
    if status == "COMPLETED":
        took = seconds_text(body.get("executionTime"))
        text = f":white_check_mark: The retry worked: {ref} *completed*" + (f" in {took}." if took else ".")
        lines = [section(text)]
    else:
        error = body.get("error")
        text = (f":red_circle: {mention(actor)}, the retried {ref} ended *{status or 'in an unknown state'}* "
                f"again.")
        lines = [section(text)]
        if error:
            lines.append(section(f"```{escape(clip(str(error), 2500))}```"))
        lines.append(context("A job that keeps failing needs a look at its input or worker, not another retry. "
                             "It can still be retried for about 30 minutes."))
    sections = json_sections(body, max_sections=4)
    if sections:
        lines.extend(sections)
    plain = f"Retried job {job} on endpoint {endpoint}: {status or 'unknown'}"
    return message(plain, lines)


def follow_progress(endpoint: str, job: str, status: str) -> Message:
    return message(f"Job {job} is {status}",
                   [context(f"Job {code(job)} on endpoint {code(endpoint)} is now {state_words(status)} ({status}).")])


def follow_gave_up(endpoint: str, job: str, reason: str, last_status: str | None) -> Message:
    last = f" Last known state: {last_status}." if last_status else ""
    return message(f"Stopped following job {job}",
                   [section(f":grey_question: I stopped following job {code(job)} on endpoint {code(endpoint)}: "
                            f"{reason}.{last} Check it with `{COMMAND} status {endpoint} {job}`.")])


def follow_resumed(endpoint: str, job: str) -> Message:
    return message(f"Following job {job} again",
                   [context(f":arrows_counterclockwise: The app restarted; I am following job {code(job)} on "
                            f"endpoint {code(endpoint)} again and will post here when it ends.")])


# ---------------------------------------------------------------- alerts

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
        return f"Retried by {who} at {at}; completed" + (f" in {took}." if took else ".")
    if alert.phase is Phase.FAILED_AGAIN:
        return f"Retried by {who} at {at}; it {state_words(alert.status)} again. Can be retried until {deadline}."
    if alert.phase is Phase.REFUSED:
        return f"{alert.note or 'RunPod refused the retry'}. Details in the thread."
    return f"{alert.note or 'Following stopped before the job ended'}. Check its status."


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
        blocks.append(section(f"*Error*\n```{escape(clip(alert.error, 2800))}```"))
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

def history_message(rows: Iterable[dict[str, Any]], limit: int) -> Message:
    rows = list(rows)
    if not rows:
        return message("No retry attempts recorded yet.", [section("No retry attempts recorded yet.")])
    lines = []
    for row in rows:
        when = time.strftime("%m-%d %H:%M", time.gmtime(row["at"]))
        http = row.get("http_status") or "-"
        result = row.get("job_status") or row.get("detail") or ""
        lines.append(f"{when}  {row['user']:<11} {row['source']:<8} {row['endpoint']}/{row['job']}  "
                     f"{row['outcome']:<13} {http}  {result}")
    blocks = [section(f"*Last {len(rows)} retry attempts* (newest first, times UTC)")]
    blocks.extend(section(f"```{chunk}```") for chunk in _chunks("\n".join(lines), JSON_CHUNK)[:10])
    return message(f"Last {len(rows)} retry attempts", blocks)


def alert_refailed(alert: Alert) -> Message:
    return message(f"Job {alert.job} failed again",
                   [section(f":red_circle: Job {code(alert.job)} on endpoint {code(alert.endpoint)} "
                            f"{state_words(alert.status)} again. The alert above is up to date; it can be retried "
                            f"until {slack_time(alert.deadline)}.")])


def follow_trouble(endpoint: str, job: str, summary: str) -> Message:
    return message(f"Having trouble checking job {job}",
                   [context(f":warning: Checking job {code(job)} on endpoint {code(endpoint)} keeps failing "
                            f"({summary}). I keep trying, more slowly, and will post when it ends.")])


def audit_line(entry: Any) -> Message:
    http = f" HTTP {entry.http_status}" if entry.http_status is not None else ""
    status = f" {entry.job_status}" if entry.job_status else ""
    text = (f"{mention(entry.user)} · {entry.source} · {code(entry.endpoint)}/{code(entry.job)} · "
            f"{entry.outcome}{http}{status} · in <#{entry.channel}>")
    return message(f"{entry.source} {entry.endpoint}/{entry.job}: {entry.outcome}", [context(text)])


def internal_error(what: str, kind: str) -> Message:
    return message(f"Something went wrong handling {what}",
                   [section(f":boom: Something went wrong on the app's side while handling {what} ({kind}). "
                            "It is in the app's log. Check the job with `/runpod-retry status <endpointId> <jobId>` "
                            "before trying again.")])


def shutting_down() -> Message:
    return message("The app is restarting", [section(":hourglass: The app is restarting. Nothing was done; try "
                                                     "again in a few seconds.")])


def bad_button() -> Message:
    return message("That button's data is not valid",
                   [section(":warning: That button does not carry a valid endpoint and job ID, so nothing was done. "
                            "Use `/runpod-retry <endpointId> <jobId>` instead.")])
