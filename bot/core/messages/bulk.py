"""Many jobs at once: the bulk parent with its tally and the summary reply."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bot.core.commands import COMMAND
from bot.core.groups import JobResult, Tally
from bot.core.health import Health
from bot.core.messages.alert import short_state
from bot.core.messages.blocks import (
    JSON_CHUNK,
    Message,
    _chunks,
    clip,
    code,
    context,
    count,
    escape,
    job_list,
    mention,
    message,
    section,
    slack_time,
    who,
)
from bot.core.messages.command import THREAD_HINT
from bot.core.messages.health import health_blocks
from bot.core.outcome import Outcome
from bot.core.words import not_retried

TABLE_SECTIONS = 30      # a summary table longer than this goes into the attached file


RESULTS_SECTIONS = 8     # likewise for the JSON results


JOB_COLUMN = 48


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


def tally_blocks(t: Tally, again: Sequence[str], *, threaded: bool = True) -> list[dict[str, Any]]:
    """Progress while the retries are sent, then how the retried jobs ended, as they end."""
    done = " (all sent)" if t.sent else ""
    lines = [f"*Progress:* {t.answered}/{t.total} done{done}"]
    if t.answered:
        lines.append(f"*Outcomes:* {tally_text(t)}")
    blocks = [section("\n".join(lines))]
    if again:
        blocks.append(section(f"*Failed again:* {job_list(again)}. A job that keeps failing needs a look at its "
                              "input or worker, not another retry."))
    where = " Per-job results are in the thread." if threaded else ""
    if t.ended:
        note = f"Every retried job has ended.{where}"
    else:
        note = f"Every retried job is followed to its end; these numbers keep up.{where}"
    # Marked as the thread hint: where the app cannot post in the channel, that promise is dropped (see out.py).
    blocks.append({**context(note), "block_id": THREAD_HINT} if threaded else context(note))
    return blocks


def _tally_icon(t: Tally) -> str:
    if not t.ended:
        return ":arrows_counterclockwise:"
    return ":warning:" if t.failed_again or t.not_retried or t.other else ":white_check_mark:"


def bulk_parent(user: str, endpoint: str, t: Tally, again: Sequence[str], *, threaded: bool = True) -> Message:
    """The one channel message of a bulk retry: who asked, progress, then the tally. Once every job has ended it
    says so in its title: "Retried", not "Retrying"."""
    verb = "Retried" if t.ended else "Retrying"
    title = f"{verb} {count(t.total, 'job')} on endpoint {code(endpoint)}, requested by {mention(user)}"
    return message(f"{verb.lower()} {count(t.total, 'job')} on endpoint {endpoint}, requested by {mention(user)}: "
                   f"{_tally_plain(t)}", [section(f"{_tally_icon(t)} *{title}*"),
                                          *tally_blocks(t, again, threaded=threaded)])


def bulk_final(user: str, endpoint: str, t: Tally, again: Sequence[str]) -> Message:
    """The final tally where there is no thread and no message to keep current (the response_url fallback)."""
    msg = bulk_parent(user, endpoint, t, again, threaded=False)
    ended = "The job has ended" if t.total == 1 else f"All {t.total} jobs have ended"
    return {**msg, "text": f"{ended}: {msg['text']}"}


# How a retried job ended, in words (the tally counts the same finals).
FINAL_WORDS = {"": "still running", "COMPLETED": "completed", "FAILED": "failed again",
               "TIMED_OUT": "timed out again", "CANCELLED": "cancelled", "UNKNOWN": "no longer followed"}


def job_outcome_words(result: JobResult, final: str | None) -> str:
    """One job's line in words: retried and how it ended (so far), or why it was not retried."""
    if not result.requeued:
        return not_retried(result.detail or result.outcome)
    return "retried, " + FINAL_WORDS.get(final or "", "ended")


def results_table(results: Sequence[JobResult], finals: Mapping[str, str] | None = None) -> str:
    finals = finals or {}
    width = min(max([len(r.job) for r in results] + [3]), JOB_COLUMN)
    lines = [f"{'job':<{width}}  what happened"]
    for r in results:
        lines.append(f"{r.job:<{width}}  {clip(job_outcome_words(r, finals.get(r.job)), 160)}")
    return "\n".join(lines)


def results_json(endpoint: str, results: Sequence[JobResult]) -> str:
    """One job per line: still valid JSON, and readable in a narrow Slack column or a file."""
    rows = ",\n".join("  " + json.dumps(r.as_json(), ensure_ascii=False) for r in results)
    return f'{{"endpoint": {json.dumps(endpoint)}, "results": [\n{rows}\n]}}'


def bulk_summary(endpoint: str, results: Sequence[JobResult], filename: str, *, can_attach: bool = True,
                 finals: Mapping[str, str] | None = None, table: bool = True,
                 health: Health | None = None) -> tuple[Message, str | None]:
    """The one thread reply of a bulk retry: what happened to each job, in words (built again as jobs end, so it
    never stays at "still running"), and RunPod's JSON answers attached as `filename` rather than poured into the
    thread. Returns the message and the text to attach, if any. `table=False` (a grouped alert, whose job list
    already shows each job) leaves the table out. `health`: the endpoint's health snapshot, with a warning when the
    requeued jobs are unlikely to get a worker soon."""
    taken = sum(r.requeued for r in results)
    left = len(results) - taken
    blocks = [section(f"*Results for {count(len(results), 'job')} on endpoint {code(endpoint)}:* RunPod took {taken}; "
                      f"{left} {'was' if left == 1 else 'were'} not retried.")]
    if taken:
        blocks.extend(health_blocks(health))
    cut = False
    if table:
        rows = _chunks(results_table(results, finals), JSON_CHUNK)
        blocks.extend(section(f"```{chunk}```") for chunk in rows[:TABLE_SECTIONS])
        cut = len(rows) > TABLE_SECTIONS
    else:
        blocks.append(context("Each job's line in the job list of this thread says what happened to it, and is kept "
                              "current as the jobs end."))
    body = results_json(endpoint, results)
    attachment: str | None = None
    if can_attach:
        note = f"RunPod's answer for each job (JSON) is attached below as `{filename}`."
        blocks.append(context(note + (" The table is cut short here; the file has every job." if cut else "")))
        attachment = body
    elif not cut and len(chunks := _chunks(body, JSON_CHUNK)) <= RESULTS_SECTIONS:
        blocks.append(context("RunPod's answer for each job (JSON):"))
        blocks.extend(section(f"```{chunk}```") for chunk in chunks)
    else:
        blocks.append(context("RunPod's answers are too long to show here, and I cannot attach files in this "
                              f"channel. Invite me to it, or check single jobs with `{COMMAND} status "
                              f"{endpoint} <jobId>`."))
    return message(f"Results for {count(len(results), 'job')} on endpoint {endpoint}: RunPod took {taken}",
                   blocks), attachment


def group_status(endpoint: str, outcomes: Sequence[Outcome], user: str) -> Message:
    """What RunPod says now about each job of a grouped alert, as a tally."""
    def state(o: Outcome) -> str:
        if o.ok:
            return short_state(o.job_status)
        return "no longer known to RunPod" if o.kind.value == "not_found" else "could not be checked"

    counts = Counter(state(o) for o in outcomes)
    still_failed = [o.job for o in outcomes if o.ok and o.job_status in ("FAILED", "TIMED_OUT")]
    tally = " · ".join(f"{n} {state}" for state, n in counts.most_common())
    blocks = [section(f":mag: *Status of the {count(len(outcomes), 'job')} of this alert* on endpoint "
                      f"{code(endpoint)}, "
                      f"checked for {mention(user)}: {escape(tally)}")]
    if still_failed:
        blocks.append(section(f"*Still failed:* {job_list(still_failed)}."))
    return message(f"Status of {count(len(outcomes), 'job')} on endpoint {endpoint}: {tally}", blocks)


def retry_all_running(user: str, at: float, *, viewer: str | None = None) -> Message:
    by = who(user, viewer)
    return message("Retry all is already under way",
                   [section(f":hourglass_flowing_sand: {'You' if by == 'you' else by} started *Retry all* for this "
                            f"alert at {slack_time(at)}; it is under way, so nothing more was done. The alert and its "
                            "thread show the progress.")])
