"""Many jobs at once: the bulk parent with its tally and the summary reply."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bot.core import words
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

TABLE_SECTIONS = 30      # a summary table longer than this goes into the attached file


RESULTS_SECTIONS = 8     # likewise for the JSON results


JOB_COLUMN = 48


# How a requeued job ended (so far), in words (the tally counts the same finals).
FINAL_WORDS = {"": words.STILL_RUNNING, "COMPLETED": words.COMPLETED, "FAILED": words.again("FAILED"),
               "TIMED_OUT": words.again("TIMED_OUT"), "CANCELLED": words.state("CANCELLED"),
               "UNKNOWN": "no longer followed"}


def tally_text(t: Tally) -> str:
    """Every job in one count: the counts add up to the number of jobs."""
    parts = []
    if t.completed:
        parts.append(f":white_check_mark: {t.completed} {words.COMPLETED}")
    if t.failed_again:
        parts.append(f":red_circle: {t.failed_again} {words.again('FAILED')}")
    if t.running:
        parts.append(f":hourglass_flowing_sand: {t.running} {words.STILL_RUNNING}")
    if t.other:
        parts.append(f":grey_question: {t.other} cancelled or no longer followed")
    if t.not_retried:
        parts.append(f":warning: {t.not_retried} {words.NOT_RETRIED}")
    if t.unknown:
        parts.append(f":grey_question: {t.unknown} {words.UNKNOWN_RETRY} (check their status)" if t.unknown > 1
                     else f":grey_question: 1 {words.UNKNOWN_RETRY} ({words.CHECK_STATUS})")
    if t.waiting:
        parts.append(f":clock3: {t.waiting} not answered yet")
    return " · ".join(parts)


def tally_headline(t: Tally) -> str:
    """"30 of 42 jobs requeued · 12 not retried": how many RunPod requeued, then every other answer."""
    if t.requeued == t.total:
        head = f"{'All ' if t.total > 1 else ''}{words.jobs(t.total)} {words.REQUEUED}"
    else:
        head = f"{t.requeued} of {words.jobs(t.total)} {words.REQUEUED}"
    if t.not_retried:
        head += f" · {t.not_retried} {words.NOT_RETRIED}"
    if t.unknown:
        head += f" · {t.unknown} {words.UNKNOWN_RETRY}"
    return head


def _tally_plain(t: Tally) -> str:
    if not t.sent:
        return f"{t.answered} of {t.total} answered so far"
    ended = [f"{t.completed} {words.COMPLETED}"] if t.completed else []
    ended += [f"{t.failed_again} {words.again('FAILED')}"] if t.failed_again else []
    ended += [f"{t.running} {words.STILL_RUNNING}"] if t.running else []
    return ", ".join(ended)


def tally_blocks(t: Tally, again: Sequence[str], *, threaded: bool = True,
                 unknown: Sequence[str] = (), endpoint: str | None = None) -> list[dict[str, Any]]:
    """Progress while the retries are sent, then how the requeued jobs ended, as they end. `unknown`: the jobs
    whose retry may have gone through, named with how to check them."""
    lines = []
    if not t.sent:
        lines.append(f"*Progress:* {t.answered} of {t.total} jobs answered so far")
    if t.answered:
        lines.append(f"*Outcomes:* {tally_text(t)}")
    blocks = [section("\n".join(lines))] if lines else []
    if again:
        blocks.append(section(f"*Failed again:* {job_list(again)}. A job that keeps failing needs a look at its "
                              "input or worker, not another retry."))
    if unknown:
        check = f"`{COMMAND} status {endpoint} <jobId>`" if endpoint else "a status check"
        blocks.append(section(f"*Unknown, may have gone through:* {job_list(unknown)}. RunPod's answer was lost, so "
                              f"the retry may or may not have happened: check each with {check} before retrying "
                              "it again."))
    where = " Per-job results are in the thread." if threaded else ""
    if t.ended:
        note = f"Every requeued job has ended.{where}" if t.requeued else f"No job was requeued.{where}"
    else:
        note = f"Every requeued job is followed to its end; these numbers keep up.{where}"
    # Marked as the thread hint: where the app cannot post in the channel, that promise is dropped (see out.py).
    blocks.append({**context(note), "block_id": THREAD_HINT} if threaded else context(note))
    return blocks


def _tally_icon(t: Tally) -> str:
    if not t.ended:
        return ":arrows_counterclockwise:"
    return ":warning:" if t.failed_again or t.not_retried or t.other or t.unknown else ":white_check_mark:"


def bulk_parent(user: str, endpoint: str, t: Tally, again: Sequence[str], *, threaded: bool = True,
                unknown: Sequence[str] = ()) -> Message:
    """The one channel message of a bulk retry: who asked, progress, then the tally. Its title says what is true
    at the time: "Retrying 42 jobs" while they are sent, then "30 of 42 jobs requeued · 12 not retried"."""
    head = tally_headline(t) if t.sent else f"Retrying {count(t.total, 'job')}"
    title = f"*{head}* on endpoint {code(endpoint)}, requested by {mention(user)}"
    plain = f"{head} on endpoint {endpoint}, requested by {mention(user)}"
    progress = _tally_plain(t)
    return message(f"{plain}: {progress}" if progress else plain,
                   [section(f"{_tally_icon(t)} {title}"),
                    *tally_blocks(t, again, threaded=threaded, unknown=unknown, endpoint=endpoint)])


def bulk_final(user: str, endpoint: str, t: Tally, again: Sequence[str], unknown: Sequence[str] = ()) -> Message:
    """The final tally where there is no thread and no message to keep current (the response_url fallback). It
    mentions the person when jobs they retried failed again (the one mention of the run)."""
    msg = bulk_parent(user, endpoint, t, again, threaded=False, unknown=unknown)
    ended = "Bulk retry finished" if t.requeued else "Bulk retry finished, nothing requeued"
    text = f"{ended}: {msg['text']}"
    if again:
        blocks = [section(f":red_circle: {mention(user)}, {_again_words(again)}."), *msg["blocks"]]
        return {**msg, "text": f"{mention(user)}: {count(len(again), 'job')} you retried failed again. {text}",
                "blocks": blocks}
    return {**msg, "text": text}


def _again_words(again: Sequence[str]) -> str:
    return (f"job {code(again[0])} you retried failed again" if len(again) == 1
            else f"{len(again)} jobs you retried failed again: {job_list(again)}")


def bulk_failed_again(user: str, endpoint: str, job: str, error: str | None) -> Message:
    """The one mention of a bulk run: posted in its thread when the first of its requeued jobs fails again. The
    person who asked is told once; the tally above names every job that fails again after it."""
    said = f": {escape(clip(error, 300))}" if error else ""
    return message(f"{mention(user)}: job {job} you retried on {endpoint} failed again{said}",
                   [section(f":red_circle: {mention(user)}, job {code(job)} you retried on endpoint {code(endpoint)} "
                            f"*failed again*{said}."),
                    context("A job that keeps failing needs a look at its input or worker, not another retry. If "
                            "more jobs of this bulk retry fail again, the tally above names them (without another "
                            "mention).")])


def job_outcome_words(result: JobResult, final: str | None) -> str:
    """One job's line in words: requeued and how it ended (so far), or why it was not retried, or that its outcome
    is unknown."""
    if result.unknown:
        return f"{words.UNKNOWN_RETRY}: {result.detail or result.outcome}; {words.CHECK_STATUS}"
    if not result.requeued:
        return words.not_retried(result.detail or result.outcome)
    return f"{words.REQUEUED}, " + FINAL_WORDS.get(final or "", "ended")


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
    head = tally_headline(Tally.of([r.job for r in results], {r.job: r for r in results}, {}))
    blocks = [section(f"*Results for {count(len(results), 'job')} on endpoint {code(endpoint)}:* {head}.")]
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
    return message(f"Results for {count(len(results), 'job')} on endpoint {endpoint}: {head}", blocks), attachment


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
