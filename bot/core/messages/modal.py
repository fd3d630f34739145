"""The retry form: a modal opened by `/runpod-retry` with no text, or by the message shortcut pre-filled with the jobs
found in a message (saying what was found and where)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.core import actions
from bot.core.commands import COMMAND, MAX_BULK_JOBS
from bot.core.forms import Origin
from bot.core.ids import shorten
from bot.core.messages.blocks import Message, clip, code, context, count, escape, mention, message, section
from bot.core.references import Findings, describe_places

MAX_OPTIONS = 100       # a static select's options
MAX_OPTION_TEXT = 75
MAX_INPUT = 3000        # a plain-text input's characters
TITLE = "Retry RunPod jobs"  # a modal's title: at most 24 characters


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _endpoint_input(endpoints: Sequence[str], endpoint: str | None) -> dict[str, Any]:
    if endpoints and len(endpoints) <= MAX_OPTIONS:
        options = [{"text": _plain(clip(ep, MAX_OPTION_TEXT)), "value": ep} for ep in endpoints]
        element: dict[str, Any] = {"type": "static_select", "action_id": actions.ENDPOINT_INPUT,
                                   "placeholder": _plain("Choose an endpoint"), "options": options}
        chosen = [option for option in options if option["value"] == endpoint]
        if chosen:
            element["initial_option"] = chosen[0]
        hint = "The endpoints this app is set up to call."
    else:
        element = {"type": "plain_text_input", "action_id": actions.ENDPOINT_INPUT, "max_length": 128,
                   "placeholder": _plain("e.g. abc123xyz4567")}
        if endpoint:
            element["initial_value"] = endpoint
        hint = "The endpoint ID, as in RunPod's console and in its API links (…/v2/<endpointId>/…)."
    return {"type": "input", "block_id": actions.ENDPOINT_BLOCK, "label": _plain("Endpoint"), "element": element,
            "hint": _plain(hint)}


def _fitting(jobs: Sequence[str]) -> tuple[str, int]:
    """The job IDs one per line, as many as the field holds; and how many did not fit."""
    lines: list[str] = []
    size = 0
    for job in jobs:
        if size + len(job) + 1 > MAX_INPUT:
            break
        lines.append(job)
        size += len(job) + 1
    return "\n".join(lines), len(jobs) - len(lines)


def retry_form(origin: Origin, endpoints: Sequence[str], *, endpoint: str | None = None, jobs: Sequence[str] = (),
               found: str | None = None) -> dict[str, Any]:
    """The modal. `endpoints` is RUNPOD_RETRY_ENDPOINTS (a select when set, else a text field); `endpoint` and `jobs`
    pre-fill it; `found` says what the shortcut found in the message, and where."""
    blocks: list[dict[str, Any]] = [section(
        "Requeue failed or timed-out jobs with their original input (same job ID, old output removed). RunPod keeps "
        "a finished job for about 30 minutes; after that it cannot be retried.")]
    if found:
        blocks.append(section(found))
    text, left_out = _fitting(jobs)
    if left_out:
        blocks.append(context(f"{count(left_out, 'more job ID')} did not fit in the field (it holds {MAX_INPUT} "
                              "characters). "
                              f"Retry them with `{COMMAND} <endpointId> <jobId> …` (up to {MAX_BULK_JOBS} jobs)."))
    blocks.append(_endpoint_input(endpoints, endpoint))
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": actions.JOBS_INPUT, "multiline": True,
                               "max_length": MAX_INPUT, "placeholder": _plain("One per line, or separated by spaces "
                                                                              "or commas")}
    if text:
        element["initial_value"] = text
    blocks.append({"type": "input", "block_id": actions.JOBS_BLOCK, "label": _plain("Job IDs"), "element": element,
                   "hint": _plain("As in the command: job IDs, endpoint/job, or RunPod API links. Several jobs run "
                                  "as one bulk retry with a progress message.")})
    if origin.source == "shortcut":
        where = "The results go in the thread of the message you picked."
    else:
        where = f"Your request and its result are posted in <#{origin.channel}>, the result in its thread."
    blocks.append(context(where))
    return {"type": "modal", "callback_id": actions.RETRY_MODAL, "title": _plain(TITLE), "submit": _plain("Retry"),
            "close": _plain("Cancel"), "private_metadata": origin.encode(), "blocks": blocks}


PASTE_CHARS = 900       # the longest command offered to paste for another endpoint's jobs
PASTE_ENDPOINTS = 3     # other endpoints given a command of their own


def _paste_command(endpoint: str, jobs: Sequence[str]) -> str:
    """`/runpod-retry <endpoint> <job> …` for as many jobs as fit, and how many did not."""
    shown: list[str] = []
    size = len(COMMAND) + len(endpoint) + 2
    for job in jobs:
        if size + len(job) + 1 > PASTE_CHARS:
            break
        shown.append(job)
        size += len(job) + 1
    left = len(jobs) - len(shown)
    more = f" (the first {len(shown)} of {len(jobs)}; the other {left} in a second command)" if left else ""
    return f"`{COMMAND} {endpoint} {' '.join(shown)}`{more}"


def prefill(findings: Findings, allowed: Sequence[str] = ()) -> tuple[str | None, tuple[str, ...], str]:
    """What the shortcut fills in from a message: (endpoint, jobs, what was found and where, in words). One form
    retries one endpoint: the jobs on any other are given as a command to paste. When the app may call only some
    endpoints, the form is filled with one of those; a message naming none of them fills in nothing."""
    if findings.empty:
        return None, (), (":mag: I found no RunPod job in this message: I looked at its text, its blocks and its "
                          "attachments for RunPod API links, `endpoint/job` IDs and job IDs next to an endpoint ID. "
                          "Type the endpoint and the job IDs below.")
    groups = findings.by_endpoint()
    endpoint = findings.main_endpoint
    callable_here = [ep for ep in groups if ep in allowed] if allowed else list(groups)
    if allowed and endpoint not in allowed and callable_here:
        endpoint = max(callable_here, key=lambda ep: len(groups[ep]))  # max keeps the first of equals
    if endpoint is not None and allowed and endpoint not in allowed:
        n = len(groups.get(endpoint, ()))
        what = f"{count(n, 'job')} on endpoint {code(endpoint)}" if n else f"endpoint {code(endpoint)}"
        return None, (), (f":no_entry: I found {what} in this message, but this app is not set up to call that "
                          "endpoint, so nothing is filled in below. An admin can add it to the endpoints the app "
                          "may call.")
    jobs = findings.jobs_of(endpoint) if findings.references else findings.jobs_of(None)
    lines = []
    if findings.references and endpoint is not None:
        lines.append(f":mag: Found {count(len(jobs), 'job')} on endpoint {code(endpoint)} in "
                     f"{describe_places(findings.places_of(endpoint))}. Check the list, then press *Retry*.")
    elif findings.loose_jobs:
        n = len(jobs)
        lines.append(f":mag: Found {n} job ID{'s' if n != 1 else ''} in {describe_places(findings.places_of(None))}, "
                     "but not which endpoint they run on: choose the endpoint.")
    elif endpoint is not None:
        lines.append(f":mag: Found endpoint {code(endpoint)} in this message, but no job ID: type the job IDs.")
    others = [(ep, refs) for ep, refs in groups.items() if ep != endpoint]
    if others:
        lines.append(f"It also names jobs on {count(len(others), 'other endpoint')}. This form retries one endpoint; "
                     "for the others, paste the command into the channel:")
        for ep, refs in others[:PASTE_ENDPOINTS]:
            if allowed and ep not in allowed:
                lines.append(f"• {count(len(refs), 'job')} on endpoint {code(shorten(ep))}: this app is not set up "
                             "to call that endpoint.")
            else:
                lines.append(f"• {_paste_command(ep, [ref.job for ref in refs])}")
        if len(others) > PASTE_ENDPOINTS:
            lines.append(f"…and jobs on {count(len(others) - PASTE_ENDPOINTS, 'more endpoint')}.")
    if findings.references and findings.loose_jobs:
        lines.append(f"{count(len(findings.loose_jobs), 'more job ID')} in it "
                     f"{'has' if len(findings.loose_jobs) == 1 else 'have'} no endpoint next to "
                     f"{'it' if len(findings.loose_jobs) == 1 else 'them'} and "
                     f"{'is' if len(findings.loose_jobs) == 1 else 'are'} left out.")
    return endpoint, jobs, "\n".join(lines)


def form_refused(reason: str) -> dict[str, Any]:
    """Instead of the form, for someone the access rules would refuse on submit: why, before they fill anything."""
    return {"type": "modal", "callback_id": actions.RETRY_MODAL, "title": _plain(TITLE), "close": _plain("Close"),
            "blocks": [section(f":no_entry: {reason}"),
                       context("Nothing was done, and nothing will be from this form.")]}


def form_unavailable(error: str) -> Message:
    """When Slack would not open the form: what to type instead (a message for the person, not a view)."""
    return message("I could not open the retry form",
                   [section(f":warning: Slack would not open the retry form ({escape(error)}), so nothing was "
                            f"done. Type `{COMMAND} <endpointId> <jobId>` instead, or try again.")])


def thread_request(user: str, endpoint: str, jobs: Sequence[str]) -> Message:
    """The first reply in a message's thread when someone retries the jobs it names (the message shortcut)."""
    what = f"job {code(jobs[0])}" if len(jobs) == 1 else f"{len(jobs)} jobs"
    return message(f"{mention(user)} asked to retry {what.replace('`', '')} on endpoint {endpoint}, found in this "
                   "message",
                   [section(f":arrows_counterclockwise: {mention(user)} asked to retry {what} on endpoint "
                            f"{code(endpoint)}, found in this message. The result follows in this thread.")])
