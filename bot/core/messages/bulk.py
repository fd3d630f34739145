"""Many jobs at once: the bulk parent with its tally and the summary reply."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.core.commands import COMMAND
from bot.core.groups import JobResult, Tally
from bot.core.messages.blocks import (
    JSON_CHUNK,
    Message,
    _chunks,
    clip,
    code,
    context,
    escape,
    job_list,
    mention,
    message,
    section,
    slack_time,
)
from bot.core.outcome import Outcome

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
