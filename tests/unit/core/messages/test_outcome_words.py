"""Outcome icons, "already retried" naming the viewer, every recorded outcome in plain words, RunPod advice without
jargon, singular and plural, and every newer message builder inside Slack's limits (pure)."""

from __future__ import annotations

import re

from bot.core import messages
from bot.core.alerts import Alert
from bot.core.groups import JobResult, Storm, StormJob, Tally
from bot.core.outcome import Kind, Outcome, classify_retry, classify_status
from bot.runpod import RunPodHTTPError, RunPodReply
from testkit.harness import assert_valid, blocks_text, buttons, message_text

EP = "ep1"
ALERTS = "CALERTS"
DATE = re.compile(r"<!date\^(\d+)\^")


def test_outcome_icons():
    def status(state: str) -> Outcome:
        return classify_status(EP, "j", RunPodReply(200, {"id": "j", "status": state}, 0.1))

    assert messages.outcome_icon(status("FAILED")) == ":red_circle:"
    assert messages.outcome_icon(status("TIMED_OUT")) == ":red_circle:"
    assert messages.outcome_icon(status("COMPLETED")) == ":white_check_mark:"
    assert messages.outcome_icon(status("IN_QUEUE")) == ":hourglass_flowing_sand:"
    requeued = classify_retry(EP, "j", RunPodReply(200, {"id": "j", "status": "IN_QUEUE"}, 0.1))
    assert messages.outcome_icon(requeued) == ":hourglass_flowing_sand:"
    gone = classify_retry(EP, "j", RunPodHTTPError("404", op="retry", status=404))
    assert messages.outcome_icon(gone) == ":x:"
    flaky = classify_retry(EP, "j", RunPodHTTPError("502", op="retry", status=502))
    assert messages.outcome_icon(flaky) == ":warning:"


def test_already_claimed_names_the_viewer_as_you_and_others_by_mention():
    mine = messages.already_claimed(EP, "j1", "U7", 1_700_000_000, viewer="U7", where="https://x/archives/C/p1")
    theirs = messages.already_claimed(EP, "j1", "U7", 1_700_000_000, viewer="U8")
    assert mine["text"].startswith("You already retried job j1") and "<https://x/archives/C/p1|that thread>" in \
        blocks_text(mine)
    assert theirs["text"].startswith("Someone else already retried") and "<@U7> already retried" in \
        blocks_text(theirs)
    assert "the thread where it was asked" in blocks_text(theirs)
    running = messages.retry_all_running("U7", 1_700_000_000, viewer="U7")
    assert "You started *Retry all*" in blocks_text(running)
    for msg in (mine, theirs, running):
        assert_valid(msg)


def test_every_recorded_outcome_has_plain_words_and_the_longest_history_is_valid():
    for code in [k.value for k in Kind] + ["refused:access", "refused:budget", "refused:duplicate",
                                           "refused:completed", "refused:shutdown", "refused:error"]:
        icon, words = messages.attempt_words(code, "COMPLETED")
        assert icon.startswith(":") and words and "_" not in words and "{" not in words, (code, words)
    rows = [{"at": 1_700_000_000 + n, "user": f"U{n}", "channel": "C" + "9" * 20, "source": "retry_all",
             "endpoint": "e" * 128, "job": "j" * 128, "outcome": "not_found", "job_status": None}
            for n in range(50)]
    msg = messages.history_message(rows, 50)
    assert_valid(msg)
    assert all(len(b["fields"]) <= 10 for b in msg["blocks"] if b.get("fields"))


def test_no_jargon_in_runpod_advice():
    gone = classify_retry(EP, "j", RunPodHTTPError("404", op="retry", status=404))
    assert "/runsync" not in gone.advice and "/run`" not in gone.advice and "30 minutes" in gone.advice
    from bot.work import follow
    assert "TTL" not in open(follow.__file__, encoding="utf-8").read()


def test_every_new_message_is_valid_block_kit():
    now = 1_700_000_000.0
    storm = Storm("e" * 128, ALERTS, now, now, {f"j{n}": StormJob("FAILED", "boom", now) for n in range(6)},
                  singles=4)
    storm.requested = list(storm.jobs)
    results = [JobResult("j" * 128, "not_found", 404, None, "RunPod does not know it " * 20)]
    built = [
        messages.alert_message(Alert("e" * 128, "j" * 128, ALERTS, "FAILED", now, ts="1.2"), now, enabled=False),
        messages.alert_undelivered(EP, "j" * 128, "FAILED", "x" * 5000, "C" + "1" * 20),
        messages.alert_undelivered(EP, "j1", "FAILED", None, "C1", count=300),
        messages.already_completed(EP, "j" * 128, "U1", now, viewer="U2", where="https://x/archives/C/p1"),
        messages.already_completed(EP, "j1", None, None),
        messages.failed_running(EP, 1000, "U1", now, viewer="U1", where="https://x/archives/C/p1"),
        messages.bulk_final("U1", EP, Tally(3, answered=3, completed=3), []),
        messages.bulk_summary(EP, results, "f.json", can_attach=False, finals={}, table=False)[0],
        messages.storm_alert(storm, now, enabled=False),
        messages.storm_alert(storm, now),
        messages.usage_error("x" * 4000, "`/runpod-retry history [N]`"),
    ]
    for msg in built:
        assert_valid(msg)
    assert "Retry before" not in message_text(built[-2])
    pinging = Storm(EP, ALERTS, now, now, {f"j{n}": StormJob("FAILED", "<!channel> boom", now) for n in range(6)})
    assert "<!channel>" not in messages.storm_alert(pinging, now)["text"]
    assert buttons(built[-3]) == {}


def test_one_job_is_one_job_not_one_jobs():
    one = Tally(1, answered=1, completed=1)
    assert "1 job requeued on endpoint" in message_text(messages.bulk_parent("U1", EP, one, []))
    assert message_text(messages.bulk_final("U1", EP, one, [])).startswith("Bulk retry finished: 1 job requeued")
    assert "Retrying 1 job on endpoint" in message_text(messages.failed_started(EP, 1))
    assert "Retrying 3 jobs on endpoint" in message_text(messages.failed_started(EP, 3))

