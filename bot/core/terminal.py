"""What `python -m bot retry` and `python -m bot status` print, and the exit codes a script reads. Pure: RunPod's
outcomes in, lines of plain text (advice in terminal terms, never a Slack command) and JSON objects out.

Exit codes: 0 every job was requeued (`status`: RunPod answered; `--follow`: and every job completed); 1 refused or
not retried (`--follow`: or failed again, or was cancelled); 2 usage or settings, nothing was called; 3 outcome
unknown: a retry may have gone through (RunPod's answer was lost, e.g. a 502 or a timeout on /retry), or a followed
job was not seen to end. When jobs differ, 3 wins over 1 (a script must not retry blindly what may have run), and 1
over 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from bot.core import words
from bot.core.outcome import RETRYABLE, TERMINAL, Kind, Outcome, seconds_text


class Exit(IntEnum):
    REQUEUED = 0
    NOT_RETRIED = 1
    USAGE = 2
    UNKNOWN = 3


PROGRAM = "python -m bot"
_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_SLACK_STATUS = re.compile(r"/runpod-retry status (\S+?) (\S+?)(?=[`\s.,;:)]|$)")
_SLACK_RETRY = re.compile(r"/runpod-retry (?!status |help|history|failed |health )(\S+?) (\S+?)(?=[`\s.,;:)]|$)")
_FOLLOW_PROMISE = re.compile(r"\s*I'll follow it and post here when it ends\.")


def status_command(endpoint: str, job: str) -> str:
    return f"{PROGRAM} status {endpoint} {job}"


def plain(text: str) -> str:
    """Slack's markup for a terminal: links as "label (address)", times as "03:42 UTC", no backticks, and the
    command's Slack forms as their terminal forms (`python -m bot status …`, `python -m bot retry …`)."""
    text = words.without_dates(text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _SLACK_STATUS.sub(lambda m: status_command(m.group(1), m.group(2)), text)
    text = _SLACK_RETRY.sub(lambda m: f"{PROGRAM} retry {m.group(1)} {m.group(2)}", text)
    return text.replace("`", "").replace("*", "")


def may_have_gone_through(outcome: Outcome) -> bool:
    """A retry whose answer was lost or garbled and no status check showed the job still failed."""
    return outcome.kind is not Kind.REQUEUED and outcome.may_have_taken_effect


def retry_exit(outcome: Outcome) -> Exit:
    if outcome.kind is Kind.REQUEUED:
        return Exit.REQUEUED
    return Exit.UNKNOWN if may_have_gone_through(outcome) else Exit.NOT_RETRIED


def overall(codes: Iterable[Exit]) -> Exit:
    """One exit code for several jobs: unknown over not retried over requeued."""
    codes = set(codes)
    for code in (Exit.UNKNOWN, Exit.NOT_RETRIED):
        if code in codes:
            return code
    return Exit.REQUEUED


def advice(outcome: Outcome, *, follow: bool = False) -> str:
    """The outcome's advice as a terminal user can act on it. A requeued job is not followed unless `follow`: the
    app's promise to post in a thread is replaced by how to check later."""
    text = plain(outcome.advice)
    if outcome.kind is Kind.REQUEUED:
        text = _FOLLOW_PROMISE.sub("", text).strip()
        if follow:
            text += " Following it until it ends (Ctrl-C stops following; the retry stays)."
        else:
            check = status_command(outcome.endpoint, outcome.job)
            text += f" It is not followed from here: check how it ends with {check} (or retry with --follow to wait)."
    elif may_have_gone_through(outcome) and "python -m bot status" not in text:
        text += f" Check with {status_command(outcome.endpoint, outcome.job)} before retrying it again."
    return text.strip()


def label(outcome: Outcome) -> str:
    """The first word of a job's line: what happened, in the app's words."""
    if outcome.kind is Kind.REQUEUED:
        return words.REQUEUED
    if outcome.kind is Kind.STATUS:
        return words.state(outcome.job_status)
    return words.UNKNOWN_RETRY if may_have_gone_through(outcome) else words.NOT_RETRIED


def outcome_lines(outcome: Outcome, *, follow: bool = False, verb: str = "retry") -> list[str]:
    """A job's answer in words, then RunPod's JSON under its label."""
    first = label(outcome) if verb == "retry" or outcome.ok else "could not check"
    head = plain(outcome.headline)
    # "not retried: Not retried: …" would say it twice: the headline's own words go first then.
    line = words.not_retried(head) if first == words.NOT_RETRIED else f"{first}: {head}"
    lines = [f"{line}.", f"  {advice(outcome, follow=follow)}"]
    if outcome.body is not None:
        lines += [f"{outcome.answer_label}:", json.dumps(outcome.body, indent=2, ensure_ascii=False)]
    elif outcome.excerpt:
        lines.append(f"{outcome.answer_label}, not JSON: {outcome.excerpt}")
    return lines


def outcome_json(outcome: Outcome, *, follow: bool = False) -> dict[str, Any]:
    """One job's answer for `--json`: RunPod's body, and every reason in words (a refusal's too)."""
    data: dict[str, Any] = {"endpoint": outcome.endpoint, "job": outcome.job, "outcome": outcome.kind.value,
                            "http_status": outcome.http_status, "job_status": outcome.job_status,
                            "reason": plain(outcome.headline), "advice": advice(outcome, follow=follow),
                            "body": outcome.body}
    if outcome.kind not in (Kind.REQUEUED, Kind.STATUS):
        data["may_have_gone_through"] = may_have_gone_through(outcome)
    return data


def refusal_lines(code: str, why: str) -> list[str]:
    return [f"{words.NOT_RETRIED} (refused:{code}): {plain(why)}"]


def refusal_json(endpoint: str, job: str, code: str, why: str) -> dict[str, Any]:
    return {"endpoint": endpoint, "job": job, "outcome": f"refused:{code}", "http_status": None,
            "job_status": None, "reason": plain(why), "may_have_gone_through": False, "body": None}


# ---------------------------------------------------------------- --follow


def progress_line(job: str, status: str) -> str:
    return f"  … job {job} is {words.state(status)}"


def ending(endpoint: str, job: str, body: dict[str, Any]) -> tuple[list[str], Exit]:
    """How a followed job ended, in words, and the exit code it gives: 0 completed, 1 failed again or cancelled."""
    status = str(body.get("status") or "").upper()
    if status == "COMPLETED":
        took = seconds_text(body.get("executionTime"))
        return [f"{words.COMPLETED}: the retry worked: job {job} on endpoint {endpoint} completed"
                + (f" in {took}." if took else ".")], Exit.REQUEUED
    if status in RETRYABLE:
        error = body.get("error")
        said = f": {error.strip().splitlines()[-1][:300]}" if isinstance(error, str) and error.strip() else ""
        return [f"{words.again(status)}: job {job} on endpoint {endpoint} {words.again(status)}{said}",
                "  A job that keeps failing needs a look at its input or worker, not another retry. "
                f"{status_command(endpoint, job)} shows RunPod's whole answer."], Exit.NOT_RETRIED
    state = words.state(status) if status in TERMINAL else status.lower() or words.UNKNOWN_STATE
    return [f"{state}: job {job} on endpoint {endpoint} ended {state}; it did not complete."], Exit.NOT_RETRIED


def stopped_following(endpoint: str, job: str, why: str, last: str | None) -> list[str]:
    """Following stopped before the job ended (Ctrl-C, or the time limit): where things stand, how to check later."""
    now = f" It was last {words.state(last)}." if last else ""
    return [f"Stopped following job {job} on endpoint {endpoint}: {why}.{now} The retry stays requeued; check how it "
            f"ends with {status_command(endpoint, job)}."]
