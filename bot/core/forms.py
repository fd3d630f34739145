"""The retry form (a modal): where it was opened from, carried in its `private_metadata`, and reading a submission
into a Retry, or into errors shown next to the fields they are about. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.actions import ENDPOINT_BLOCK, ENDPOINT_INPUT, JOBS_BLOCK, JOBS_INPUT
from bot.core.commands import Retry, UsageError, parse_job_list
from bot.core.ids import id_problem, shorten

MAX_METADATA = 3000   # Slack's limit on a view's private_metadata
MAX_ERROR = 1000      # an error shown under a field stays short
SOURCES = ("command", "shortcut")
_CHANNEL = re.compile(r"[A-Z0-9]{1,40}")
_TS = re.compile(r"\d{1,12}\.\d{1,8}")
_CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Origin:
    """Where the form was opened: the channel (and, from the shortcut, the message whose thread gets the results),
    and the response_url of the command or shortcut that opened it (the way to answer where the app cannot post)."""

    channel: str
    source: str = "command"
    thread_ts: str | None = None
    response_url: str | None = None

    def encode(self) -> str:
        data = {"c": self.channel, "s": self.source, "t": self.thread_ts, "r": self.response_url}
        text = json.dumps({k: v for k, v in data.items() if v}, separators=(",", ":"))
        if len(text) > MAX_METADATA:  # only a freak response_url is that long: the answer falls back to posting
            text = json.dumps({k: v for k, v in data.items() if v and k != "r"}, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: Any) -> Origin | None:
        """The origin from a submitted view's private_metadata; None when it is not one this app wrote."""
        try:
            data = json.loads(text) if isinstance(text, str) and text else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        channel, source, thread_ts, url = data.get("c"), data.get("s", "command"), data.get("t"), data.get("r")
        if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel) or source not in SOURCES:
            return None
        if thread_ts is not None and not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)):
            return None
        if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            url = None
        return cls(channel, source, thread_ts, url)


def submitted(values: Any) -> tuple[str, str]:
    """(endpoint, job IDs as typed) from a submitted view's `state.values`: the endpoint from the select or the text
    field, whichever the form had."""
    values = values if isinstance(values, dict) else {}
    endpoint_field = (values.get(ENDPOINT_BLOCK) or {}).get(ENDPOINT_INPUT) or {}
    option = endpoint_field.get("selected_option") or {}
    endpoint = option.get("value") if isinstance(option, dict) else None
    endpoint = endpoint if isinstance(endpoint, str) else endpoint_field.get("value")
    jobs = ((values.get(JOBS_BLOCK) or {}).get(JOBS_INPUT) or {}).get("value")
    return (endpoint if isinstance(endpoint, str) else "").strip(), jobs if isinstance(jobs, str) else ""


_PROBLEM_LINE = re.compile(r"• (job|endpoint) ID (“.*?”): it (contains|is) (.*)")
NAMED = 3   # IDs named in one line of a form error before "and N more"


def _one_line_per_problem(text: str) -> str:
    """The same problem for many IDs, said once: "job IDs “a”, “b”, “c” and 7 more: they contain '!'"."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    order: list[tuple[str, str, str] | str] = []
    for line in text.split("\n"):
        match = _PROBLEM_LINE.fullmatch(line)
        if match is None:
            order.append(line)
            continue
        key = (match.group(1), match.group(3), match.group(4))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(match.group(2))
    lines = []
    for item in order:
        if isinstance(item, str):
            lines.append(item)
            continue
        kind, verb, rest = item
        ids = groups[item]
        if len(ids) == 1:
            lines.append(f"• {kind} ID {ids[0]}: it {verb} {rest}")
            continue
        named = ", ".join(ids[:NAMED]) + (f" and {len(ids) - NAMED} more" if len(ids) > NAMED else "")
        plural = {"contains": "contain", "is": "are"}[verb]
        lines.append(f"• {len(ids)} {kind} IDs ({named}): they {plural} {rest}")
    return "\n".join(lines)


def _plain(problem: str) -> str:
    """A usage problem as the plain text Slack shows under a field (it does not render `code`), each problem said
    once however many IDs have it."""
    text = _CODE.sub(lambda m: f"“{m.group(1)}”", problem)
    text = text.replace("Nothing was retried. Fix these IDs and try again:\n", "Fix these IDs:\n")
    return shorten(_one_line_per_problem(text), MAX_ERROR)


def check_form(endpoint: str, jobs: str, allowed: Sequence[str] = ()) -> Retry | dict[str, str]:
    """The form's fields read with the command's grammar: a Retry, or {block_id: what is wrong} for Slack to show
    next to each field (`response_action: errors`). `allowed` is RUNPOD_RETRY_ENDPOINTS (empty: any)."""
    errors: dict[str, str] = {}
    if not endpoint:
        errors[ENDPOINT_BLOCK] = "Choose or type the endpoint ID."
    elif (problem := id_problem(endpoint)) is not None:
        errors[ENDPOINT_BLOCK] = _plain(f"That is not an endpoint ID: {problem}.")
    elif allowed and endpoint not in allowed:
        errors[ENDPOINT_BLOCK] = (f"This app is not set up to call endpoint “{shorten(endpoint)}”. Choose one of: "
                                  f"{shorten(', '.join(allowed), 300)}.")
    if not jobs.strip():
        errors[JOBS_BLOCK] = "Enter at least one job ID."
    if errors:
        return errors
    try:
        return parse_job_list(endpoint, jobs)
    except UsageError as exc:
        return {JOBS_BLOCK: _plain(exc.problem)}
