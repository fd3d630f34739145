"""The bulk run's words (pure): every job in one count and the counts add up, titles that are true, a lost 502 is
"unknown" in plain words, and the final tally sent where there is no thread mentions the person once."""

from __future__ import annotations

from bot.core import messages
from bot.core.answers import RunPodHTTPError, RunPodReply
from bot.core.groups import JobResult, Tally
from bot.core.outcome import classify_retry
from testkit.harness import message_text

EP = "ep1"


def requeued(job: str) -> JobResult:
    return JobResult.of(classify_retry(EP, job, RunPodReply(200, {"id": job, "status": "IN_QUEUE"}, 0.1)))


def lost(job: str) -> JobResult:
    html = "<html><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    return JobResult.of(classify_retry(EP, job, RunPodHTTPError("502", op="retry", status=502, body_excerpt=html),
                                       RunPodHTTPError("502", op="status", status=502)))


def test_every_job_is_in_one_count_and_the_counts_add_up():
    results = {r.job: r for r in [requeued("a"), requeued("b"), requeued("c"), lost("d"),
                                  JobResult("e", "refused:budget", detail="retry limit reached")]}
    jobs = ["a", "b", "c", "d", "e", "f"]  # "f" has no answer yet
    t = Tally.of(jobs, results, {"a": "COMPLETED", "b": "FAILED"})
    assert (t.completed, t.failed_again, t.running, t.not_retried, t.unknown, t.waiting) == (1, 1, 1, 1, 1, 1)
    assert t.completed + t.failed_again + t.running + t.other + t.not_retried + t.unknown + t.waiting == t.total
    assert t.requeued == 3 and not t.sent
    text = messages.tally_text(t)
    assert "1 not answered yet" in text and "1 unknown, may have gone through (check its status)" in text


def test_a_lost_502_is_unknown_in_plain_words_never_html():
    result = lost("d")
    assert result.unknown and not result.requeued
    assert result.detail == "RunPod had a server error (HTTP 502 Bad Gateway)"
    row = messages.job_outcome_words(result, None)
    assert row == "unknown, may have gone through: RunPod had a server error (HTTP 502 Bad Gateway); check its status"
    assert "nginx" not in str(result.as_json()) and result.as_json()["may_have_gone_through"] is True


def test_titles_say_what_is_true():
    sending = Tally(42, answered=10, completed=0, running=10)
    done = Tally(42, answered=42, not_retried=12, completed=28, failed_again=2)
    assert "*Retrying 42 jobs* on endpoint `ep1`" in message_text(messages.bulk_parent("U1", EP, sending, []))
    title = message_text(messages.bulk_parent("U1", EP, done, ["j1", "j2"]))
    assert "*30 of 42 jobs requeued · 12 not retried* on endpoint `ep1`, requested by <@U1>" in title
    assert "Retried 42" not in title and "all sent" not in title


def test_the_final_tally_without_a_thread_mentions_the_person_once():
    t = Tally(3, answered=3, completed=1, failed_again=2)
    final = messages.bulk_final("U1", EP, t, ["j1", "j2"])
    assert final["text"].startswith("<@U1>: 2 jobs you retried failed again.")
    assert message_text({"blocks": final["blocks"]}).count("<@U1>") == 2  # the mention, and "requested by"
    quiet = messages.bulk_final("U1", EP, Tally(1, answered=1, completed=1), [])
    assert not quiet["text"].startswith("<@U1>")


def test_the_readme_shows_a_bulk_run_with_every_kind_of_row_drawn_by_the_real_builders():
    from pathlib import Path

    from bot.app.docs import bulk_picture

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")
    picture = bulk_picture()
    assert picture in readme.split("### Many jobs at once", 1)[1].split("### ", 1)[0]
    for row in ("requeued, completed", "requeued, failed again", "requeued, still running", "requeued, cancelled",
                "not retried: RunPod does not know it", "unknown, may have gone through", "not retried: Retry limit"):
        assert row in picture, row
    assert "@dana, job `job-7` you retried" in picture and "<html" not in picture
