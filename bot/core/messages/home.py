"""The Home tab, for the person looking at it: recent failures not retried yet (with Retry), jobs being followed,
the last attempts, each endpoint's retry success over a day, and what this person may do."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core import actions, words
from bot.core.commands import COMMAND
from bot.core.health import Health, unlikely_reason
from bot.core.ids import shorten
from bot.core.messages.auto import home_auto_blocks
from bot.core.messages.blocks import (
    button,
    code,
    confirm_dialog,
    context,
    count,
    escape,
    header,
    link,
    mention,
    section,
    slack_time,
    window_text,
)
from bot.core.messages.history import history_message
from bot.core.outcome import state_words
from bot.core.policies import Pause, Policy
from bot.core.worker_errors import error_summary

MAX_HOME_BLOCKS = 100
MAX_FAILURES = 20
MAX_FOLLOWED = 15
MAX_STATS = 30
UPDATED = "home_updated"  # block_id of the "updated at" line, which alone changes every redraw


@dataclass(frozen=True)
class Access:
    """What the viewer may do. `may` is None when their user-group membership could not be checked."""

    may: bool | None
    channels: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    who_may: str = ""
    max_per_job: int = 3


@dataclass(frozen=True)
class Failure:
    endpoint: str
    job: str
    status: str
    error: str | None
    seen_at: float
    deadline: float
    blocked: str | None = None  # why Retry is not offered, in words; None offers it
    alert_url: str | None = None


@dataclass(frozen=True)
class Followed:
    endpoint: str
    job: str
    user: str
    started: float
    url: str | None = None


@dataclass(frozen=True)
class EndpointStats:
    endpoint: str
    sent: int          # retries sent to RunPod
    requeued: int      # retries RunPod took
    completed: int     # retried jobs that then completed
    failed_again: int  # retried jobs that failed or timed out again


def access_text(access: Access) -> str:
    where = ("in any channel" if not access.channels
             else "in " + ", ".join(f"<#{c}>" for c in access.channels[:10]))
    which = ("on any endpoint" if not access.endpoints
             else "on endpoints " + ", ".join(code(shorten(e)) for e in access.endpoints[:10]))
    if access.may is None:
        return (":grey_question: *I could not check your user-group membership with Slack just now*, so the Retry "
                "buttons are hidden; this tab tries again when it is next drawn.")
    if not access.may:
        ask = f" Ask one of: {access.who_may}." if access.who_may else ""
        return f":no_entry: *You may not retry RunPod jobs*: you are not on the list of people who may.{ask}"
    return (f":white_check_mark: *You may retry RunPod jobs* {where}, {which}. One job is retried at most "
            f"{access.max_per_job} times an hour; every attempt is recorded.")


def _failure_block(failure: Failure) -> dict[str, Any]:
    error = error_summary(failure.error)
    why = f": {escape(error)}" if error else ""
    alert = f" · {link(failure.alert_url, 'its alert')}" if failure.alert_url else ""
    can = failure.blocked or words.retry_until(failure.deadline)
    block = section(f":red_circle: {code(failure.job)} on {code(failure.endpoint)} {state_words(failure.status)} at "
                    f"{slack_time(failure.seen_at)}{why}\n{can}{alert}")
    if failure.blocked is None:
        block["accessory"] = button("Retry", actions.RETRY, actions.job_value(failure.endpoint, failure.job),
                                    style="primary", confirm=confirm_dialog(
                                        "Retry this job?", f"Requeue job `{shorten(failure.job, 120)}` on endpoint "
                                        f"`{shorten(failure.endpoint, 60)}` with its original input. Its old output "
                                        "is removed.", "Retry"))
    return block


def _sections(lines: Sequence[str], per_section: int = 6) -> list[dict[str, Any]]:
    """Lines in sections few enough to stay under a section's 3000 characters (each line is well under 500)."""
    return [section("\n".join(lines[i:i + per_section])) for i in range(0, len(lines), per_section)]


def _stats_line(stats: EndpointStats, health: Health | None) -> str:
    ended = stats.completed + stats.failed_again
    line = (f"{code(shorten(stats.endpoint))}: {count(stats.sent, 'retry', 'retries')} sent, {stats.requeued} "
            f"{words.REQUEUED}; {stats.completed} completed, {stats.failed_again} failed again")
    if ended:
        line += f" ({round(100 * stats.completed / ended)}% of those that ended completed)"
    reason = unlikely_reason(health) if health is not None else None
    line += "."
    if reason:
        line += f" :warning: Now {reason}."
    return line


def home_view(viewer: str, now: float, access: Access, failures: Sequence[Failure], following: Sequence[Followed],
              attempts: Sequence[dict[str, Any]], stats: Sequence[EndpointStats], *, more_failures: int = 0,
              health: Sequence[Health] = (), window: float = 30 * 60, refresh: float = 10.0,
              kept: float = 15 * 60, policies: Sequence[Policy] = (), pauses: Sequence[Pause] = ()) -> dict[str, Any]:
    """The Home tab for `viewer`, within Slack's 100 blocks whatever the numbers. Automatic retries (when retry
    policies are set up) come first after the viewer's access: what a person may want to stop at 3 a.m."""
    blocks: list[dict[str, Any]] = [header(":arrows_counterclockwise: RunPod Retry"), section(access_text(access)),
                                    *home_auto_blocks(policies, pauses, now, may=access.may is True),
                                    {"type": "divider"},
                                    section(f"*Failures not retried yet* (seen in the last {int(window // 60)} "
                                            "minutes, newest first)")]
    shown = list(failures[:MAX_FAILURES])
    blocks.extend(_failure_block(f) for f in shown)
    more = more_failures + len(failures) - len(shown)
    if not shown:
        blocks.append(context("None: every failure RunPod reported to this app recently was retried, or there was "
                              "none."))
    elif more:
        blocks.append(context(f"…and {more} more. `{COMMAND} failed <endpointId>` lists and retries them per "
                              "endpoint."))
    blocks += [{"type": "divider"}, section("*Retried jobs being followed now*")]
    if following:
        lines = [f":hourglass_flowing_sand: {code(f.job)} on {code(f.endpoint)}, retried by {mention(f.user)} at "
                 f"{slack_time(f.started)}" + (f" · {link(f.url, 'thread')}" if f.url else "")
                 for f in following[:MAX_FOLLOWED]]
        if len(following) > MAX_FOLLOWED:
            lines.append(f"…and {len(following) - MAX_FOLLOWED} more.")
        blocks.extend(_sections(lines))
    else:
        blocks.append(context("None right now."))
    blocks += [{"type": "divider"}, section("*Last attempts*, newest first, in your time zone")]
    if attempts:
        blocks.extend(history_message(attempts, len(attempts))["blocks"][1:])
    else:
        blocks.append(context("No retry attempts recorded yet."))
    blocks += [{"type": "divider"}, section("*Retry success by endpoint*, last 24 hours")]
    snapshots = {h.endpoint: h for h in health}
    if stats:
        lines = [_stats_line(s, snapshots.get(s.endpoint)) for s in stats[:MAX_STATS]]
        if len(stats) > MAX_STATS:
            lines.append(f"…and {len(stats) - MAX_STATS} more endpoints.")
        blocks.extend(_sections(lines))
    else:
        blocks.append(context("No retries in the last 24 hours."))
    blocks = blocks[:MAX_HOME_BLOCKS - 1]
    # The promise is what the app keeps: redrawn for `kept` seconds after the tab is opened, then left as it is.
    blocks.append({**context(f"Updated {slack_time(now, '{date_short_pretty} {time}')}. Kept current (at most every "
                             f"{refresh:g} seconds) for {window_text(kept)} after you open this tab; after that, "
                             "reopen the tab to refresh it."),
                   "block_id": UPDATED})
    return {"type": "home", "blocks": blocks}


def home_key(view: dict[str, Any]) -> str:
    """What the view shows, apart from when it was drawn: two views with the same key need not be published twice."""
    shown = [b for b in view.get("blocks") or [] if b.get("block_id") != UPDATED]
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()
