"""Every Slack message the app posts, as pure functions returning {"text", "blocks"}.

Limits are Slack's Block Kit limits; each builder stays inside them whatever the input (long errors,
huge JSON, hundreds of jobs), so Slack never rejects a message for size.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bot.core import actions
from bot.core.alerts import Alert, Phase, trim_error
from bot.core.commands import COMMAND, MAX_BULK_JOBS, MAX_HISTORY
from bot.core.groups import JobResult, Storm, Tally, error_key, failed_again
from bot.core.ids import shorten
from bot.core.outcome import Outcome, seconds_text, state_words

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
    """Slack mrkdwn escaping: the three characters Slack treats as markup, and ``` (a zero-width space splits
    it) so text from RunPod can never close the code block it is shown in."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("```", "``\u200b`")


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


_DATE_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def message(text: str, blocks: list[dict[str, Any]]) -> Message:
    # The fallback text feeds notifications, where date tokens may show raw: keep their plain UTC fallback.
    return {"text": clip(_DATE_TOKEN.sub(r"\1", text), MAX_FALLBACK_TEXT), "blocks": blocks[:MAX_BLOCKS]}


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


THREAD_HINT = "thread_hint"  # block_id of "the result is in the thread", dropped when there is no thread


def without_thread_hint(msg: Message, error: str) -> Message:
    """The same message for the response_url fallback: no thread there, so say where replies go instead."""
    blocks = [b for b in msg["blocks"] if b.get("block_id") != THREAD_HINT][:MAX_BLOCKS - 1]
    return {**msg, "blocks": [*blocks, *fallback_note(error)["blocks"]]}


_MARKUP = re.compile(r"<([@#]|!subteam\^)([A-Z0-9]+)(?:\|[^>]*)?>")


def plain(text: str) -> str:
    """Slack markup (mentions, channel links) as plain text, for code blocks where Slack shows it raw."""
    return _MARKUP.sub(lambda m: ("#" if m.group(1) == "#" else "@") + m.group(2), text)


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
    elif status == "CANCELLED":
        # Not "again": it did not fail, someone stopped it, and RunPod cannot retry a cancelled job.
        text = f":no_entry_sign: {mention(actor)}, the retried {ref} was *cancelled* before it ended."
        lines = [section(text), context("A cancelled job cannot be retried; resubmit it with `/run` if it is still "
                                        "needed.")]
    else:
        error = trim_error(body.get("error"))
        text = (f":red_circle: {mention(actor)}, the retried {ref} ended *{status or 'in an unknown state'}* "
                f"again.")
        lines = [section(text)]
        if error:
            lines.append(section(f"```{escape(clip(error, 2500))}```"))
        lines.append(context("A job that keeps failing needs a look at its input or worker, not another retry. "
                             "It can still be retried for about 30 minutes."))
    sections = json_sections(body, max_sections=4)
    if sections:
        lines.extend(sections)
    plain = f"Retried job {job} on endpoint {endpoint}: {status or 'unknown'}"
    if status != "COMPLETED":
        plain = f"{mention(actor)}: {plain}"  # the notification preview carries the mention too
    return message(plain, lines)


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

def history_message(rows: Iterable[dict[str, Any]], limit: int) -> Message:
    rows = list(rows)
    if not rows:
        return message("No retry attempts recorded yet.", [section("No retry attempts recorded yet.")])
    lines = [f"{'when (UTC)':<11}  {'user':<11} {'channel':<11} {'how':<8} endpoint/job  {'outcome':<13} HTTP  "
             "job status or reason"]
    for row in rows:
        when = time.strftime("%m-%d %H:%M", time.gmtime(row["at"]))
        http = row.get("http_status") or "-"
        result = clip(plain(str(row.get("job_status") or row.get("detail") or "")), 120)
        lines.append(f"{when}  {row['user']:<11} {row['channel']:<11} {row['source']:<8} "
                     f"{row['endpoint']}/{row['job']}  {row['outcome']:<13} {http}  {result}")
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


def audit_text(entry: Any) -> str:
    """One attempt (an AuditEntry) as one line of the audit channel."""
    http = f" HTTP {entry.http_status}" if entry.http_status is not None else ""
    status = f" {entry.job_status}" if entry.job_status else ""
    return (f"{mention(entry.user)} · {entry.source} · {code(entry.endpoint)}/{code(entry.job)} · "
            f"{entry.outcome}{http}{status} · in <#{entry.channel}>")


def audit_lines(entries: Sequence[Any]) -> Message:
    """Several attempts, one line each, in as few sections as Slack's limits allow."""
    lines = [clip(audit_text(e), 500) for e in entries]
    sections: list[str] = []
    for line in lines:
        if sections and len(sections[-1]) + 1 + len(line) <= MAX_SECTION_TEXT:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    first = entries[0]
    text = f"{first.source} {first.endpoint}/{first.job}: {first.outcome}"
    if len(entries) > 1:
        text += f" (and {len(entries) - 1} more attempts)"
    return message(text, [section(chunk) for chunk in sections])


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


# ---------------------------------------------------------------- many jobs at once: bulk retry, storms, `failed`

NAMED_JOBS = 15          # job IDs named in a sentence before "and N more"
TABLE_SECTIONS = 30      # a summary table longer than this goes into the attached file
RESULTS_SECTIONS = 8     # likewise for the JSON results
JOB_COLUMN = 48


def window_text(seconds: float) -> str:
    seconds = int(seconds)
    for size, unit in ((3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} seconds"


def job_list(jobs: Sequence[str], limit: int = NAMED_JOBS) -> str:
    named = ", ".join(code(job) for job in jobs[:limit])
    return named + (f" and {len(jobs) - limit} more" if len(jobs) > limit else "")


def tally_text(t: Tally) -> str:
    parts = [f":white_check_mark: {t.completed} completed", f":red_circle: {t.failed_again} failed again",
             f":hourglass_flowing_sand: {t.running} still running"]
    if t.other:
        parts.append(f":grey_question: {t.other} cancelled or no longer followed")
    if t.not_retried:
        parts.append(f":warning: {t.not_retried} not retried")
    return " · ".join(parts)


def _tally_plain(t: Tally) -> str:
    if not t.sent:
        return f"{t.answered}/{t.total} done"
    return (f"{t.completed} completed, {t.failed_again} failed again, {t.running} still running, "
            f"{t.not_retried} not retried")


def tally_blocks(t: Tally, again: Sequence[str]) -> list[dict[str, Any]]:
    """Progress while the retries are sent, then how the retried jobs ended, as they end."""
    done = " (all sent)" if t.sent else ""
    lines = [f"*Progress:* {t.answered}/{t.total} done{done}"]
    if t.answered:
        lines.append(f"*Outcomes:* {tally_text(t)}")
    blocks = [section("\n".join(lines))]
    if again:
        blocks.append(section(f"*Failed again:* {job_list(again)}. A job that keeps failing needs a look at its "
                              "input or worker, not another retry."))
    if t.ended:
        note = "Every retried job has ended. Per-job results are in the thread."
    else:
        note = "Every retried job is followed to its end; these numbers keep up. Per-job results are in the thread."
    blocks.append(context(note))
    return blocks


def _tally_icon(t: Tally) -> str:
    if not t.ended:
        return ":arrows_counterclockwise:"
    return ":warning:" if t.failed_again or t.not_retried or t.other else ":white_check_mark:"


def bulk_parent(user: str, endpoint: str, t: Tally, again: Sequence[str]) -> Message:
    """The one channel message of a bulk retry: who asked, progress, then the tally."""
    title = f"Retrying {t.total} jobs on endpoint {code(endpoint)}, requested by {mention(user)}"
    return message(f"retrying {t.total} jobs on endpoint {endpoint}, requested by {mention(user)}: "
                   f"{_tally_plain(t)}", [section(f"{_tally_icon(t)} *{title}*"), *tally_blocks(t, again)])


def results_table(results: Sequence[JobResult]) -> str:
    width = min(max([len(r.job) for r in results] + [3]), JOB_COLUMN)
    lines = [f"{'job':<{width}}  HTTP  RunPod status or error"]
    for r in results:
        http = str(r.http_status) if r.http_status is not None else "-"
        lines.append(f"{r.job:<{width}}  {http:<4}  {clip(r.describe(), 160)}")
    return "\n".join(lines)


def results_json(endpoint: str, results: Sequence[JobResult]) -> str:
    """One job per line: still valid JSON, and readable in a narrow Slack column or a file."""
    rows = ",\n".join("  " + json.dumps(r.as_json(), ensure_ascii=False) for r in results)
    return f'{{"endpoint": {json.dumps(endpoint)}, "results": [\n{rows}\n]}}'


def bulk_summary(endpoint: str, results: Sequence[JobResult], filename: str,
                 *, can_attach: bool = True) -> tuple[Message, str | None]:
    """The one thread reply of a bulk retry: the per-job table and the JSON results. Returns the message and,
    when the JSON is too long for it, the text to attach as `filename`."""
    taken = sum(r.requeued for r in results)
    blocks = [section(f"*Results for {len(results)} jobs on endpoint {code(endpoint)}:* RunPod took {taken}; "
                      f"{len(results) - taken} not retried.")]
    table = _chunks(results_table(results), JSON_CHUNK)
    blocks.extend(section(f"```{chunk}```") for chunk in table[:TABLE_SECTIONS])
    body = results_json(endpoint, results)
    chunks = _chunks(body, JSON_CHUNK)
    attachment: str | None = None
    if len(table) <= TABLE_SECTIONS and len(chunks) <= RESULTS_SECTIONS:
        blocks.append(context("What RunPod returned, per job (JSON):"))
        blocks.extend(section(f"```{chunk}```") for chunk in chunks)
    elif can_attach:
        cut = " The table is cut short here; the file has every job." if len(table) > TABLE_SECTIONS else ""
        blocks.append(context(f"The JSON results are long: they are attached below as `{filename}`.{cut}"))
        attachment = body
    else:
        blocks.append(context("The JSON results are too long to show here, and I cannot attach files in this "
                              f"channel. Invite me to it, or check single jobs with `{COMMAND} status "
                              f"{endpoint} <jobId>`."))
    return message(f"Results for {len(results)} jobs on endpoint {endpoint}: RunPod took {taken}", blocks), attachment


def _deadline_line(storm: Storm, now: float) -> str:
    if now < storm.first_deadline:
        latest = ""
        if storm.last_deadline - storm.first_deadline >= 60:
            latest = f" (the latest of these can be retried until {slack_time(storm.last_deadline)})"
        return (f"Retry before {slack_time(storm.first_deadline)}: RunPod forgets a job 30 minutes after it "
                f"fails{latest}.")
    if now < storm.last_deadline:
        return ("The earliest of these jobs are probably gone from RunPod by now; the latest can be retried until "
                f"{slack_time(storm.last_deadline)}.")
    return "RunPod has probably forgotten these jobs by now (30 minutes after they failed): they cannot be retried."


def storm_alert(storm: Storm, now: float | None = None) -> Message:
    """One grouped alert for many failures of one endpoint."""
    now = time.time() if now is None else now
    n, endpoint = len(storm.jobs), storm.endpoint
    top = storm.top_errors(3)
    facts = [("Endpoint", code(endpoint)), ("Failed jobs", str(n)),
             ("First failure", slack_time(storm.first_at, "{date_short_pretty} {time}")),
             ("Latest failure", slack_time(storm.last_at, "{date_short_pretty} {time}"))]
    errors = "\n".join(f"• {count}× `{escape(clip(error, 400))}`" for error, count in top)
    blocks: list[dict[str, Any]] = [header(f":rotating_light: {n} jobs failed on endpoint {endpoint}"),
                                    fields(facts), section(f"*Most common errors*\n{errors}"),
                                    context(_deadline_line(storm, now))]
    note = "The job list is in the thread."
    if storm.singles:
        note += (f" The first {storm.singles} also got alerts of their own above, before the storm was recognised; "
                 "they are counted here too.")
    blocks.append(context(note))
    if storm.retry_by and storm.retry_at:
        blocks.append(section(f":arrows_counterclockwise: *Retry all* by {mention(storm.retry_by)} at "
                              f"{slack_time(storm.retry_at)}"))
        blocks.extend(tally_blocks(storm.tally(), failed_again(storm.requested, storm.results, storm.finals)))
    remaining = len(storm.unretried())
    buttons = []
    if remaining and not storm.running and now < storm.last_deadline:
        what = f"{remaining} jobs" if remaining > 1 else "1 job"
        buttons.append(button("Retry all", actions.RETRY_ALL, actions.storm_value(endpoint, storm.storm_id),
                              style="primary", confirm=confirm_dialog(
                                  f"Retry {what}?",
                                  f"Requeue the {what} of this alert on endpoint `{shorten(endpoint, 60)}` not "
                                  "retried yet, each with its original input. Their old output is removed.",
                                  f"Retry {what}")))
    buttons.append(button("Status", actions.STORM_STATUS, actions.storm_value(endpoint, storm.storm_id)))
    blocks.append({"type": "actions", "block_id": "storm_actions", "elements": buttons})
    common = "; ".join(f"{error} ({count})" for error, count in top)
    return message(f"{n} jobs failed on endpoint {endpoint}: {common}", blocks)


_FINAL_WORDS = {"": "running", "COMPLETED": "completed", "FAILED": "failed again", "TIMED_OUT": "timed out again",
                "CANCELLED": "cancelled", "UNKNOWN": "no longer followed"}


def _storm_line(storm: Storm, job: str, width: int) -> str:
    failure = storm.jobs[job]
    line = f"{job:<{width}}  {failure.status:<9}  {clip(error_key(failure.status, failure.error), 60)}"
    result = storm.results.get(job)
    if result is not None:
        if not result.requeued:
            line += f"  → not retried: {clip(result.describe(), 60)}"
        else:
            line += f"  → retried, {_FINAL_WORDS.get(storm.finals.get(job) or '', 'ended')}"
    return line


def storm_jobs_page(storm: Storm, page: int, page_size: int) -> Message:
    """One page of the grouped alert's job list, for its thread."""
    jobs = list(storm.jobs)[page * page_size:(page + 1) * page_size]
    first = page * page_size + 1
    width = min(max([len(job) for job in jobs] + [3]), JOB_COLUMN)
    lines = "\n".join(_storm_line(storm, job, width) for job in jobs)
    title = (f"*Failed jobs {first}–{first + len(jobs) - 1} of {len(storm.jobs)}* on endpoint "
             f"{code(storm.endpoint)} (job, status, error, and what a retry did):")
    blocks = [section(title), *(section(f"```{chunk}```") for chunk in _chunks(lines, JSON_CHUNK))]
    return message(f"Failed jobs {first}-{first + len(jobs) - 1} of {len(storm.jobs)} on endpoint "
                   f"{storm.endpoint}", blocks)


def group_status(endpoint: str, outcomes: Sequence[Outcome], user: str) -> Message:
    """What RunPod says now about each job of a grouped alert, as a tally."""
    def state(o: Outcome) -> str:
        if o.ok:
            return o.job_status or "unknown"
        return "gone from RunPod (404)" if o.kind.value == "not_found" else f"could not check ({o.kind.value})"

    counts = Counter(state(o) for o in outcomes)
    still_failed = [o.job for o in outcomes if o.ok and o.job_status in ("FAILED", "TIMED_OUT")]
    tally = " · ".join(f"{count} {state}" for state, count in counts.most_common())
    blocks = [section(f":mag: *Status of the {len(outcomes)} jobs of this alert* on endpoint {code(endpoint)}, "
                      f"checked for {mention(user)}: {escape(tally)}")]
    if still_failed:
        blocks.append(section(f"*Still failed:* {job_list(still_failed)}."))
    return message(f"Status of {len(outcomes)} jobs on endpoint {endpoint}: {tally}", blocks)


def retry_all_running(user: str, at: float) -> Message:
    return message("Retry all is already under way",
                   [section(f":hourglass_flowing_sand: {mention(user)} started *Retry all* for this alert at "
                            f"{slack_time(at)}; it is under way. The alert and its thread show the progress.")])


def nothing_to_retry(endpoint: str) -> Message:
    return message("Every job of this alert was already retried",
                   [section(f"Every job of this alert on endpoint {code(endpoint)} was already retried; the alert "
                            "shows how they ended. Nothing was done.")])


def storm_unknown() -> Message:
    return message("I have no record of this grouped alert",
                   [section(f":grey_question: I have no record of this grouped alert any more, so nothing was done. "
                            f"Use `{COMMAND} failed <endpointId>` to retry the jobs that failed recently.")])


def failed_none(endpoint: str, window: float) -> Message:
    return message(f"No recent failures on endpoint {endpoint}",
                   [section(f"No job of endpoint {code(endpoint)} was seen failing in the last "
                            f"{window_text(window)} that is not retried already. Nothing was done."),
                    context("I only know failures RunPod reported to this app's webhook. Check one job with "
                            f"`{COMMAND} status {endpoint} <jobId>`.")])


def failed_offer(endpoint: str, window: float, rows: Sequence[dict[str, Any]], capped: int = 0) -> Message:
    """The private question before `failed` retries anything: how many, which, and Confirm / Cancel."""
    jobs = [row["job"] for row in rows]
    what = f"{len(jobs)} jobs" if len(jobs) != 1 else "1 job"
    top = Counter(error_key(row.get("status") or "FAILED", row.get("error")) for row in rows).most_common(3)
    blocks = [section(f":arrows_counterclockwise: *{what}* of endpoint {code(endpoint)} failed in the last "
                      f"{window_text(window)} and were not retried yet: {job_list(jobs)}."),
              section("*Most common errors*\n" + "\n".join(f"• {n}× `{escape(clip(e, 300))}`" for e, n in top))]
    if capped:
        blocks.append(context(f"{capped} more are not included: one retry takes at most {MAX_BULK_JOBS} jobs. "
                              "Run the command again afterwards for the rest."))
    value = actions.window_value(endpoint, int(window))
    blocks.append({"type": "actions", "block_id": "failed_actions", "elements": [
        button(f"Retry {what}", actions.CONFIRM_FAILED, value, style="primary"),
        button("Cancel", actions.CANCEL_FAILED, value)]})
    return message(f"Retry {what} that failed on endpoint {endpoint}?", blocks)


def failed_started(endpoint: str, count: int) -> Message:
    return message(f"Retrying {count} jobs on endpoint {endpoint}",
                   [section(f":arrows_counterclockwise: Retrying {count} jobs on endpoint {code(endpoint)}; the "
                            "progress and the results are in the channel.")])


def failed_cancelled(endpoint: str) -> Message:
    return message("Cancelled: nothing was retried",
                   [section(f"Cancelled: no job of endpoint {code(endpoint)} was retried.")])
