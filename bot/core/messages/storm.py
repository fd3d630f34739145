"""Alert storms and `failed`: the grouped alert, its job list, and the confirmation to retry them all."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from bot.core import actions, words
from bot.core.commands import COMMAND, MAX_BULK_JOBS
from bot.core.groups import Storm, error_key, failed_again, unknown_jobs
from bot.core.health import Health
from bot.core.ids import shorten
from bot.core.messages.alert import NOT_ENABLED, error_code, not_allowed_here
from bot.core.messages.blocks import (
    JSON_CHUNK,
    Message,
    _chunks,
    button,
    clip,
    code,
    confirm_dialog,
    context,
    escape,
    fields,
    header,
    job_list,
    link,
    mention,
    message,
    plain,
    section,
    slack_time,
    who,
    window_text,
)
from bot.core.messages.blocks import (
    count as jobs_count,
)
from bot.core.messages.bulk import JOB_COLUMN, job_outcome_words, tally_blocks
from bot.core.messages.health import confirm_warning, health_blocks
from bot.core.worker_errors import common_errors


def _deadline_line(storm: Storm, now: float) -> str:
    if not storm.unretried():
        # Nothing is left to retry: a deadline would only rush people to do what is already done.
        if storm.running:
            return "*Retry all* is under way for every job of this alert; the tally below keeps up."
        t = storm.tally()
        if t.not_retried or t.unknown:
            unknown = f", {t.unknown} {words.UNKNOWN_RETRY}" if t.unknown else ""
            return (f"*Retry all* was asked for every job of this alert: {t.requeued} {words.REQUEUED}, "
                    f"{t.not_retried} {words.NOT_RETRIED}{unknown} (the job list in the thread says why for each).")
        return f"Every job of this alert was {words.REQUEUED}; the tally below shows how they ended."
    if now < storm.first_deadline:
        latest = ""
        if storm.last_deadline - storm.first_deadline >= 60:
            latest = f" (the latest of these can be retried until {slack_time(storm.last_deadline)})"
        return (f"Retry before {slack_time(storm.first_deadline)}: RunPod forgets a job {words.RETENTION_MINUTES} "
                f"minutes after it fails{latest}.")
    if now < storm.last_deadline:
        return ("The earliest of these jobs are probably gone from RunPod by now; the latest can be retried until "
                f"{slack_time(storm.last_deadline)}.")
    return (f"RunPod has probably forgotten these jobs by now ({words.RETENTION_MINUTES} minutes after they failed): "
            "they cannot be retried.")


def storm_title(storm: Storm) -> str:
    """The grouped alert's headline, which changes as Retry all goes on, as a single alert's does:
    "37 jobs failed on endpoint e · 30 requeued · 7 not retried"."""
    title = f"{words.jobs(len(storm.jobs))} failed on endpoint {storm.endpoint}"
    if not storm.requested:
        return title
    t = storm.tally()
    parts = [title, f"{t.requeued} {words.REQUEUED}"]
    if t.completed:
        parts.append(f"{t.completed} {words.COMPLETED}")
    if t.failed_again:
        parts.append(f"{t.failed_again} failed again")
    if t.not_retried:
        parts.append(f"{t.not_retried} {words.NOT_RETRIED}")
    if t.unknown:
        parts.append(f"{t.unknown} {words.UNKNOWN_RETRY}")
    return " · ".join(parts)


def _storm_icon(storm: Storm) -> str:
    if not storm.requested:
        return ":rotating_light:"
    t = storm.tally()
    if storm.running or not t.ended:
        return ":arrows_counterclockwise:"
    return ":warning:" if t.not_retried or t.failed_again or t.other or t.unknown or storm.unretried() \
        else ":white_check_mark:"


def storm_alert(storm: Storm, now: float | None = None, *, enabled: bool = True,
                health: Health | None = None, channels: Collection[str] = ()) -> Message:
    """One grouped alert for many failures of one endpoint. `enabled`: the endpoint is one the app may call (else
    Retry all and Status would only be refused, so they are not offered). `health`: the endpoint's latest health
    snapshot, shown (and warned about in Retry all's confirmation) while Retry all is offered. `channels`: where
    retries are allowed (empty: anywhere); elsewhere the alert has no buttons and says where retries are possible."""
    now = time.time() if now is None else now
    n, endpoint = len(storm.jobs), storm.endpoint
    top = storm.top_errors(3)
    facts = [("Endpoint", code(endpoint)), ("Failed jobs", str(n)),
             ("First failure", slack_time(storm.first_at, "{date_short_pretty} {time}")),
             ("Latest failure", slack_time(storm.last_at, "{date_short_pretty} {time}"))]
    errors = "\n".join(f"• {count}× {error_code(error)}" for error, count in top)
    title = storm_title(storm)
    here = not channels or storm.channel in channels
    not_here = not_allowed_here(channels, f"`{COMMAND} failed {endpoint}`")
    enabled_here = enabled and here
    blocks: list[dict[str, Any]] = [header(f"{_storm_icon(storm)} {title}"),
                                    fields(facts), section(f"*Most common errors*\n{errors}"),
                                    context(NOT_ENABLED if not enabled else not_here if not here
                                            else _deadline_line(storm, now))]
    note = ("The job list, and one whole error (traceback) of each kind, are in the thread." if storm.examples
            else "The job list is in the thread.")
    if storm.singles:
        # Not "above": a single alert still being posted can land below the grouped one.
        note += (f" The first {storm.singles} also got alerts of their own, posted before the storm was recognised; "
                 "they are counted here too.")
    blocks.append(context(note))
    if storm.retry_by and storm.retry_at:
        blocks.append(section(f":arrows_counterclockwise: *Retry all* by {mention(storm.retry_by)} at "
                              f"{slack_time(storm.retry_at)}"))
        blocks.extend(tally_blocks(storm.tally(), failed_again(storm.requested, storm.results, storm.finals),
                                   unknown=unknown_jobs(storm.requested, storm.results), endpoint=endpoint))
    remaining = len(storm.unretried())
    buttons = []
    if enabled_here and remaining and not storm.running and now < storm.last_deadline:
        what = f"{remaining} jobs" if remaining > 1 else "1 job"
        blocks.extend(health_blocks(health))
        buttons.append(button("Retry all", actions.RETRY_ALL, actions.storm_value(endpoint, storm.storm_id),
                              style="primary", confirm=confirm_dialog(
                                  f"Retry {what}?", confirm_warning(
                                      f"Requeue the {what} of this alert on endpoint `{shorten(endpoint, 60)}` not "
                                      "retried yet, each with its original input. Their old output is removed.",
                                      health), f"Retry {what}")))
    if enabled_here:
        buttons.append(button("Status", actions.STORM_STATUS, actions.storm_value(endpoint, storm.storm_id)))
    if buttons:
        blocks.append({"type": "actions", "block_id": "storm_actions", "elements": buttons})
    # RunPod's words never ping; a phone shows little, so each error is cut shorter there.
    common = "; ".join(f"{count}× {escape(clip(error, 80))}" for error, count in top)
    can = f" Retry before {slack_time(storm.first_deadline)}." if enabled_here and remaining \
        and now < storm.first_deadline else ""
    return message(f"{title}: {common}.{can}", blocks)


def _storm_line(storm: Storm, job: str, width: int) -> str:
    failure = storm.jobs[job]
    line = f"{job:<{width}}  {failure.status:<9}  {clip(error_key(failure.status, failure.error), 60)}"
    result = storm.results.get(job)
    if result is not None:
        line += f"  → {clip(job_outcome_words(result, storm.finals.get(job)), 100)}"
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


def nothing_to_retry(endpoint: str) -> Message:
    return message("Retry all already ran for every job of this alert",
                   [section(f"*Retry all* already ran for every job of this alert on endpoint {code(endpoint)}, so "
                            "nothing more was retried. The alert shows how each job ended.")])


def retry_all_not_taken(endpoint: str, jobs: int | None) -> Message:
    """Retry all clicked while the app's database did not answer: nothing was started, and nothing will be."""
    which = f"the {jobs_count(jobs, 'job')} of this alert" if jobs else "this alert's jobs"
    return message("Retry all did not start: the app cannot reach its database; click it again in a minute",
                   [section(f":warning: *Retry all* did not start: the app cannot reach its database right now, so "
                            f"none of {which} on endpoint {code(endpoint)} was retried. Click *Retry all* again in a "
                            "minute; without its database the app cannot make sure each job is retried only once.")])


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


def failed_offer(endpoint: str, window: float, rows: Sequence[dict[str, Any]], capped: int = 0, *,
                 health: Health | None = None) -> Message:
    """The private question before `failed` retries anything: how many, which, the endpoint's health (with a warning
    when retrying now is unlikely to work), and Confirm / Cancel."""
    jobs = [row["job"] for row in rows]
    what = f"{len(jobs)} jobs" if len(jobs) != 1 else "1 job"
    were = "were" if len(jobs) != 1 else "was"
    top = common_errors((error_key(row.get("status") or "FAILED", row.get("error")) for row in rows), 3)
    blocks = [section(f":arrows_counterclockwise: *{what}* of endpoint {code(endpoint)} failed in the last "
                      f"{window_text(window)} and {were} not retried yet: {job_list(jobs)}."),
              section("*Most common errors*\n" + "\n".join(f"• {n}× {error_code(e)}" for e, n in top))]
    if capped:
        blocks.append(context(f"{capped} more are not included: one retry takes at most {MAX_BULK_JOBS} jobs. "
                              "Run the command again afterwards for the rest."))
    blocks.extend(health_blocks(health))
    value = actions.window_value(endpoint, int(window))
    blocks.append({"type": "actions", "block_id": "failed_actions", "elements": [
        button(f"Retry {what}", actions.CONFIRM_FAILED, value, style="primary"),
        button("Cancel", actions.CANCEL_FAILED, value)]})
    return message(f"Retry {what} that failed on endpoint {endpoint}?", blocks)


def failed_started(endpoint: str, count: int) -> Message:
    what = jobs_count(count, "job")
    return message(f"Retrying {what} on endpoint {endpoint}",
                   [section(f":arrows_counterclockwise: Retrying {what} on endpoint {code(endpoint)}; the progress "
                            "and the results are in the channel.")])


def failed_running(endpoint: str, count: int, user: str, at: float, *, viewer: str | None = None,
                   where: str | None = None) -> Message:
    """A second Confirm while the first one's retry is still running: it is under way, and who started it."""
    by = who(user, viewer)
    progress = f"The progress is in {link(where, 'its message in the channel')}." if where else \
        "The progress will be in the channel."
    # `count` is 0 while the first Confirm is still reading the list.
    what = f"{count} jobs" if count > 1 else "1 job" if count == 1 else "the jobs that failed recently"
    return message(f"Already retrying {what} on endpoint {endpoint}",
                   [section(f":hourglass_flowing_sand: {'You' if by == 'you' else by} started retrying {what} of "
                            f"endpoint {code(endpoint)} at {slack_time(at)}; it is still under way, so nothing more "
                            f"was done. {progress}")])


def failed_cancelled(endpoint: str) -> Message:
    return message("Cancelled: nothing was retried",
                   [section(f"Cancelled: no job of endpoint {code(endpoint)} was retried.")])


def storm_examples(storm: Storm) -> Message:
    """For the grouped alert's thread: one job's whole error for each kind of error, as lines (the alert shows
    each kind's one line and count)."""
    blocks = [section(f"The whole error of one job of each kind, on endpoint {code(storm.endpoint)}, as the worker "
                      "reported it:")]
    for family, (job, details) in storm.examples.items():
        blocks.append(section(f"*{escape(family)}* (job {code(job)}):"))
        blocks.append(section(f"```{_chunks(plain(details), JSON_CHUNK)[-1]}```"))
    return message(f"The whole error of each kind on endpoint {storm.endpoint}", blocks)
