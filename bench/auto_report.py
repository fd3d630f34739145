"""The Markdown of the retry-policy sections (issue 20): the transient storm and the failing storm."""

from __future__ import annotations

import os

from bench.auto_storms import FailingStorm, TransientStorm, pct
from bench.auto_timeline import timeline_lines
from bench.config import (
    AUTO_DELAY,
    AUTO_DONE_AFTER,
    AUTO_ENDPOINTS,
    AUTO_LATENCY,
    AUTO_SPREAD,
    AUTO_STORM,
    FAILING_ATTEMPTS,
    FAILING_DELAY,
    FAILING_LATER,
    FAILING_SPREAD,
)
from bot.core.breaker import BREAKER_LAST, BREAKER_WINDOW
from bot.infra.config import Settings
from bot.infra.timing import REAL
from testkit.fakes.limits import SLACK_POST_PER_CHANNEL, RunPodLimits

FOLLOW_INTERVAL = Settings.follow_interval  # the app's default RUNPOD_FOLLOW_INTERVAL
AUTO_POLL = REAL.auto_poll  # how often an automatic retry asks RunPod whether its job ended


def check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def seconds(value: float | None, missing: str = "–") -> str:
    return missing if value is None else f"{value:.2f} s"


def pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.1f} / {values[1]:.1f} s"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) at the end"


def floor_count(elapsed: float) -> int:
    """The most posts Slack takes in one channel in `elapsed` seconds: its burst, then one a second."""
    return int(SLACK_POST_PER_CHANNEL.capacity + elapsed * SLACK_POST_PER_CHANNEL.per_second)


def policies_section(st: TransientStorm) -> list[str]:
    limit = RunPodLimits().ops["retry"]
    per = SLACK_POST_PER_CHANNEL
    late = st.late or [float("nan")]
    ratio = f"{st.ratio:.2f}" if st.ratio is not None else "–"
    done = (f"all {st.jobs} by {st.completed_after:.1f} s" if st.completed_after is not None
            else f"{st.completed}/{st.jobs} at {st.read_at:.0f} s")
    per_endpoint = AUTO_STORM // AUTO_ENDPOINTS
    in_time = len(st.late) == st.jobs and max(late) <= 1.0
    return [
        f"### Retry policies, transient storm: {st.jobs} CUDA out-of-memory failures on {AUTO_ENDPOINTS} endpoints, "
        f"retried once after {AUTO_DELAY:g} s",
        "",
        f"One fresh app process (SQLite, `RUNPOD_RETRY_TIME_SCALE=1`) with one policy (`max_attempts = 1`, "
        f"`delay = \"{AUTO_DELAY:g}s\"`, every endpoint). {st.jobs} failure webhooks, {per_endpoint} per endpoint, "
        f"sent evenly over {AUTO_SPREAD:g} s into one alert channel; RunPod answers each call in {AUTO_LATENCY:g} s "
        f"and enforces `/retry` {limit.requests} per {RunPodLimits().window:g} s and {limit.concurrent} at once per "
        f"endpoint; Slack takes {per.per_second:g} post a second per channel. After its retry each job completes. "
        "Late = the job's first `/retry` at RunPod − its webhook − the delay. Floor = when the last `/retry` could "
        f"reach RunPod at the earliest: each due at its webhook + {AUTO_DELAY:g} s, at most {limit.concurrent} in "
        f"flight per endpoint ({AUTO_LATENCY:g} s each), {limit.requests} per window; both from the first webhook.",
        "",
        "| webhooks answered 200 | requeued once / more than once | /retry calls (429s) | late p50 | p99 | max | "
        "all retries out | floor | × floor | alerts in Slack when the last retry went out | alerts saying "
        "completed | channel posts / updates by then | 429s from Slack |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {st.webhooks_ok}/{st.jobs} in {st.webhooks_in:.1f} s | {st.retried_once}/{st.jobs} / {st.retried_more} "
        f"| {st.retry_calls} ({st.runpod_429}) | {pct(late, 0.5):.2f} s | {pct(late, 0.99):.2f} s | "
        f"{max(late):.2f} s | {seconds(st.all_out)} | {st.floor:.2f} s | {ratio} | "
        f"{st.alerts_by_last_retry}/{st.jobs} ({st.posts_by_last_retry} posts) | {done} | "
        f"{st.posts_total} / {st.updates} | {st.slack_429} |",
        "",
        "Goals (issue 20):",
        "",
        f"- each job auto-retried exactly once: {st.retried_once}/{st.jobs} — "
        f"{check(st.retried_once == st.jobs and st.retried_more == 0)}",
        f"- the first retries within the delay + 1 s: late max {max(late):.2f} s — {check(in_time)}",
        f"- all within 1.3 × the floor RunPod's limits set: {ratio} × — "
        f"{check(st.ratio is not None and st.ratio <= 1.3)}",
        f"- the retries did not wait for Slack: the last went out with {st.alerts_by_last_retry} of {st.jobs} "
        f"alerts in Slack — {check(st.all_out is not None and st.alerts_by_last_retry < st.jobs)}",
        "",
        f"Every alert saying its job completed takes Slack's pace, so they are counted {AUTO_DONE_AFTER:.0f} s after "
        f"the first webhook: {st.completed}/{st.jobs} said so, {st.alerts_posted} alerts were in Slack. By then the "
        f"app had queued {st.posts_queued} posts for the one channel (the alerts and the replies in their threads): "
        f"Slack's floor for them at {per.per_second:g} a second is {st.posts_floor:.0f} s. Slack had taken "
        f"{st.posts_total} (its floor allows {floor_count(st.read_at)} in {st.read_at:.0f} s), and {st.updates} "
        f"edits (chat.update, 50 a minute). {st.refused} Slack calls refused. {load()}.",
        "",
        *timeline_lines(st.timeline),
    ]


def breaker_section(fs: FailingStorm) -> list[str]:
    trip = seconds(fs.tripped_after, "did not trip")
    ok_trip = fs.tripped_after is not None
    return [
        f"### Retry policies, failing storm: {fs.jobs} failures on one endpoint, every automatic retry failing again",
        "",
        f"A second fresh app process, the same limits, one policy (`max_attempts = {FAILING_ATTEMPTS}`, "
        f"`delay = \"{FAILING_DELAY:g}s\"`) on one endpoint. {fs.jobs} failure webhooks sent evenly over "
        f"{FAILING_SPREAD:g} s, and once the breaker has tripped {FAILING_LATER} more; each retried job fails again at "
        "RunPod's first status answer. The breaker trips "
        f"when half or more of the endpoint's last {BREAKER_LAST} automatic retries failed again within "
        f"{BREAKER_WINDOW / 60:.0f} minutes. The trip time is the pause the app stored; times from the first webhook.",
        "",
        "| webhooks answered 200 | 5th failed again recorded | tripped | failed again by then | automatic retries "
        "before the trip (second attempts) | after the trip | next attempts the pause stopped | failures after the "
        "trip / retried / alert says not retried | breaker notices in the channel (first at) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {fs.webhooks_ok}/{fs.jobs + FAILING_LATER} | {seconds(fs.fifth_failed_again)} | {trip} | "
        f"{fs.failed_again_by_trip} | "
        f"{fs.retries_before} ({fs.second_attempts}) | {fs.retries_after} | {fs.handed_over} | {fs.later_failures} / "
        f"{fs.later_retried} / {fs.later_told_paused} | {fs.notices} ({seconds(fs.notice_after)}) |",
        "",
        f"The breaker's reason, as told: \"{fs.reason}\".",
        "",
        "Where the time to the trip goes, for the 5 failed-again results the breaker counted (median / max): "
        f"webhook → its first `/retry` {pair(fs.to_retry)} (the delay is {FAILING_DELAY:g} s); `/retry` → RunPod's "
        f"first `/status` answering FAILED {pair(fs.to_status)} (the workflow asks every {AUTO_POLL:g} s once its "
        f"send step is done, {pair(fs.send_tail)} after the `/retry` (the step ends once the retry is "
        f"concluded, after its alert is in Slack), the follow every {FOLLOW_INTERVAL:g} s); that `/status` → "
        "the failed-again recorded, "
        f"which the breaker counts, {pair(fs.to_recorded)} (the workflow reads RunPod's answer itself, not the "
        "alert, so Slack's pace is not in it).",
        "",
        *late_lines(fs),
        "Goals (issue 20):",
        "",
        f"- the breaker trips within its window: {trip} after the first webhook, "
        f"{fs.failed_again_by_trip} failed again by then — {check(ok_trip and fs.failed_again_by_trip >= 5)}",
        f"- no automatic retry after the trip: {fs.retries_after}; failures after it retried: {fs.later_retried} — "
        f"{check(ok_trip and fs.retries_after == 0 and fs.later_retried == 0)}",
        f"- the alert channel told exactly once: {fs.notices} — {check(fs.notices == 1)}",
        f"- every later failure's alert says it was not retried automatically: {fs.later_told_paused}/"
        f"{fs.later_failures} — {check(ok_trip and fs.later_told_paused == fs.later_failures)}",
        "",
        f"{load()}.",
        "",
    ]


def late_lines(fs: FailingStorm) -> list[str]:
    if not fs.late_retries:
        return []
    told = "; ".join(f"{job}: `/retry` {after:+.2f} s, its check {seconds(checked)}"
                     for job, after, checked in fs.late_retries)
    before = sum(1 for _, _, checked in fs.late_retries if checked is not None and checked <= 0)
    why = (": the pause landed between those attempts' check and their `/retry` (bot/work/auto.py's `send` looks "
           "at the pause first, and again only after waiting in `claim_let_go` for the previous attempt's follow)"
           ) if before else ""
    return [f"The automatic retries RunPod took after the trip, from the trip (the send step that let each go, "
            f"which checks first, from the trip, from the engine's records): {told}. {before} of "
            f"{len(fs.late_retries)} were let go by a check "
            f"before the pause was stored{why}.", ""]


__all__ = ["breaker_section", "policies_section"]
