"""The terminal's words (pure): advice in terminal terms, exit codes by what happened, and a retry that
RunPod throttled until its window closed says so instead of "wait a minute and try again"."""

from __future__ import annotations

from bot.core import terminal
from bot.core.answers import RunPodHTTPError, RunPodRateLimited, RunPodReply
from bot.core.outcome import classify_error, classify_retry
from bot.core.terminal import Exit


def test_throttled_past_the_retry_window_says_the_window_closed_not_wait_a_minute():
    outcome = classify_error("ep1", "j", RunPodRateLimited("429", op="retry", status=429))

    for text in (outcome.advice, terminal.advice(outcome), "\n".join(terminal.outcome_lines(outcome))):
        assert "Wait a minute" not in text and "try again" not in text.lower()
        assert "can no longer be retried" in text
    assert "until its retry window had closed" in outcome.summary
    assert terminal.retry_exit(outcome) is Exit.NOT_RETRIED


def test_a_status_check_throttled_still_says_wait_a_minute():
    outcome = classify_error("ep1", "j", RunPodRateLimited("429", op="status", status=429))
    assert "Wait a minute" in outcome.advice


def test_slack_commands_become_terminal_commands_and_markup_goes():
    text = terminal.plain("Check with `/runpod-retry status ep1 j-1` or `/runpod-retry ep1 j-1`; "
                          "<https://x.slack.com/archives/C1/p1|its thread> at <!date^1700000000^{time}|22:13 UTC>.")
    assert text == ("Check with python -m bot status ep1 j-1 or python -m bot retry ep1 j-1; its thread "
                    "(https://x.slack.com/archives/C1/p1) at 22:13 UTC.")


def test_exit_codes_by_what_happened_unknown_wins():
    requeued = classify_retry("ep1", "a", RunPodReply(200, {"id": "a", "status": "IN_QUEUE"}, 0.1))
    refused = classify_retry("ep1", "b", RunPodHTTPError("400", op="retry", status=400),
                             RunPodReply(200, {"id": "b", "status": "COMPLETED"}, 0.1))
    lost = classify_retry("ep1", "c", RunPodHTTPError("502", op="retry", status=502, body_excerpt="502 Bad Gateway"),
                          RunPodHTTPError("502", op="status", status=502))
    codes = [terminal.retry_exit(o) for o in (requeued, refused, lost)]
    assert codes == [Exit.REQUEUED, Exit.NOT_RETRIED, Exit.UNKNOWN]
    assert terminal.overall(codes) is Exit.UNKNOWN
    assert terminal.overall(codes[:2]) is Exit.NOT_RETRIED and terminal.overall(codes[:1]) is Exit.REQUEUED
    assert terminal.outcome_json(lost)["may_have_gone_through"] is True
    assert terminal.outcome_json(refused)["reason"].startswith("Not retried: job b on endpoint ep1 already completed")


def test_a_refusal_says_not_retried_once():
    refused = classify_retry("ep1", "b", RunPodHTTPError("400", op="retry", status=400),
                             RunPodReply(200, {"id": "b", "status": "COMPLETED"}, 0.1))
    first = terminal.outcome_lines(refused)[0]
    assert first.startswith("not retried: job b on endpoint ep1 already completed")
    assert first.lower().count("not retried") == 1
