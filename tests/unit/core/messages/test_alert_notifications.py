"""An alert's notification text (what a phone shows) and its Retry once the per-job budget frees up (pure)."""

from __future__ import annotations

import re

from bot.core import actions, messages
from bot.core.alerts import Alert, Phase, called, next_retry_at
from testkit.harness import assert_valid, buttons, message_text

EP = "ep1"
ALERTS = "CALERTS"
DATE = re.compile(r"<!date\^(\d+)\^")


def test_notification_texts_for_every_phase_say_what_happened_first():
    now = 1_000_000.0
    base = Alert(EP, "job-1", ALERTS, "TIMED_OUT", now - 60, error="Traceback …\nworker lost <!channel>", ts="1.2")
    refused_alert = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.REFUSED,
                          note="RunPod refused the API key for endpoint `ep1`", actor="U1", acted_at=now)
    cases = [
        # A traceback's notification reads as its last meaningful line, never "Traceback …".
        (base, "TIMED OUT: job job-1 on ep1: worker lost &lt;!channel&gt;. Retry before"),
        (Alert(EP, "job-1", ALERTS, "FAILED", now - 3600, ts="1.2"), "FAILED: job job-1 on ep1. Too late to retry."),
        (Alert(EP, "job-1", ALERTS, "FAILED", now, ts="1.2", phase=Phase.FAILED_AGAIN, error="OOM again",
               actor="U1", acted_at=now), "FAILED again after a retry: job job-1 on ep1: OOM again. Retry before"),
        (Alert(EP, "job-1", ALERTS, "FAILED", now, ts="1.2", phase=Phase.COMPLETED, actor="U1", acted_at=now),
         "Completed after a retry: job job-1 on ep1"),
        (refused_alert, "Not retried: job job-1 on ep1: RunPod refused the API key for endpoint ep1. Retry before"),
        # A note that is itself an outcome's "Not retried: …" summary is not said twice.
        (Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.REFUSED, actor="U1", acted_at=now,
               note="Not retried: job `job-1` on endpoint `ep1` is waiting in the queue"),
         "Not retried: job job-1 on endpoint ep1 is waiting in the queue. Retry before"),
    ]
    for alert, starts in cases:
        msg = messages.alert_message(alert, now)
        assert msg["text"].startswith(starts), msg["text"]
        assert "<!channel>" not in msg["text"]
        assert_valid(msg)


def test_the_budget_frees_up_and_retry_comes_back_with_the_time_it_does():
    now = 10_000_000.0
    alert = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", phase=Phase.FAILED_AGAIN, actor="U1",
                  acted_at=now - 600, retried_at=(now - 3000, now - 600))
    assert next_retry_at(alert, now, 2) == now - 3000 + 3600

    blocked = messages.alert_message(alert, now, max_retries=2)
    assert actions.RETRY not in buttons(blocked)
    [at] = [int(n) for n in DATE.findall(messages.retry_block(alert, now, max_retries=2) or "")]
    assert at == int(now + 600)
    assert "Retry limit reached (2 retries per job per hour); next allowed at" in message_text(blocked)
    assert actions.RETRY in buttons(messages.alert_message(alert, now + 601, max_retries=2))
    assert actions.RETRY in buttons(messages.alert_message(alert, now, max_retries=3))
    assert called(alert, now).retried_at[-1] == now
    late = Alert(EP, "job-1", ALERTS, "FAILED", now - 60, ts="1.2", retried_at=(now - 100,))
    assert "after RunPod forgets the job" in (messages.retry_block(late, now, max_retries=1) or "")

