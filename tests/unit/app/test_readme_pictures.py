"""The README's pictures of health answers and of a traceback's alert say what the builders say."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core import messages
from bot.core.alerts import new_alert
from bot.core.health import parse_health, read_health
from testkit.fakes.worker_shapes import RUNPOD_DOCS_HEALTH, TORCH_OOM_TRACEBACK

README = " ".join((Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8").split())
ZERO = {"idle": 0, "initializing": 0, "ready": 0, "running": 0, "throttled": 0, "unhealthy": 0}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_health_pictures_lead_with_the_builders_verdicts():
    for body in ({"jobs": {"inQueue": 0}, "workers": ZERO}, RUNPOD_DOCS_HEALTH,
                 {"jobs": {"inQueue": 6}, "workers": ZERO | {"throttled": 3}}):
        reading = read_health(parse_health("abc123xyz4567", body, 0.0))
        assert f"{reading.headline}." in README
        if reading.advice:
            assert flat(reading.advice) in README


def test_the_traceback_alert_picture_says_what_the_alert_says():
    alert = new_alert("abc123xyz4567", {"id": "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1", "status": "FAILED",
                                        "error": TORCH_OOM_TRACEBACK}, "C1", 0.0)
    msg = messages.alert_message(alert, 60.0)
    notification = re.sub(r"60902e6c-\S+-u1", "60902e6c-…-u1", msg["text"]).split(" Retry before")[0]
    assert flat(notification) in README
    assert "The worker's whole error (its traceback) is in the thread." in README


def test_the_partial_retry_all_picture_says_what_the_grouped_alert_says():
    import calendar

    from bot.core.groups import JobResult, Storm, StormJob

    t0 = calendar.timegm((2026, 12, 6, 3, 12, 0))
    storm = Storm("abc123xyz4567", "CALERTS", t0, t0 + 60, ts="1.0", retry_by="UDANA", retry_at=t0 + 120)
    for i in range(37):
        storm.jobs[f"job-{i:02d}"] = StormJob("FAILED", "CUDA out of memory" if i < 24 else "Worker lost", t0 + i)
    storm.requested = list(storm.jobs)
    for i, job in enumerate(storm.jobs):
        if i >= 30:
            storm.results[job] = JobResult(job, "not_found", 404, None, "RunPod no longer knows this job")
            continue
        storm.results[job] = JobResult(job, "requeued", 200, "IN_QUEUE")
        if i < 26:
            storm.finals[job] = "COMPLETED" if i < 24 else "FAILED"
    blocks = str(messages.storm_alert(storm, t0 + 180)["blocks"]).replace("*", "")
    shown = flat(re.sub(r"<!date\^\d+\^[^|]*\|([^>]*)>", r"\1", blocks))
    title = "37 jobs failed on endpoint abc123xyz4567 · 30 requeued · 24 completed · 2 failed again · 7 not retried"
    for line in (title,
                 "Retry all was asked for every job of this alert: 30 requeued, 7 not retried",
                 "24 completed · :red_circle: 2 failed again",
                 "Every requeued job is followed to its end; these numbers keep up."):
        assert line in shown, line
    assert "Progress:" not in shown and "(all sent)" not in shown
    for line in (title, "Retry all was asked for every job of this alert: 30 requeued, 7 not retried",
                 "Every requeued job is followed to its end; these numbers keep up."):
        assert line in README, line
    assert "(all sent)" not in README


def test_the_auto_retried_alert_picture_says_what_the_alert_says():
    import calendar

    from bot.core.alerts import AutoState, auto_moved, auto_planned
    from bot.core.messages.auto_alert import auto_line, auto_waiting_line
    from bot.core.words import without_dates

    def shown(text: str | None) -> str:
        return flat(without_dates(text or "").replace("`", "").replace(":bust_in_silhouette: ", "")
                    .replace(":test_tube: ", ""))

    at = calendar.timegm((2026, 12, 6, 3, 13, 0))
    alert = new_alert("abc123xyz4567", {"id": "job-1", "status": "FAILED", "error": "CUDA out of memory"}, "C1", at)
    waiting = auto_planned(alert, "oom-once", 1, 2, at)
    assert shown(auto_waiting_line(waiting)) in README
    spent = auto_moved(waiting, AutoState.SPENT, "All 2 automatic retries failed again, policy `oom-once`")
    assert shown(auto_line(spent)).split(" Over to you")[0] in README
    dry = auto_planned(alert, "timeouts-watch", 1, 1, calendar.timegm((2026, 12, 6, 3, 14, 0)), dry_run=True)
    assert shown(auto_line(dry)) in README
