"""What a failure alert says while a retry policy holds it (RUNPOD_RETRY_POLICIES), and when the policy lets go."""

from __future__ import annotations

from bot.core.alerts import Alert, Auto, AutoState, Phase
from bot.core.breaker import BREAKER
from bot.core.messages.blocks import Message, code, escape, link, message, section, slack_time
from bot.core.policies import Pause

NOT_AUTO = "Not retried automatically: "  # how the alert says why a policy let go of a failure it matched


def auto_waiting_line(alert: Alert) -> str:
    auto = alert.auto
    assert auto is not None
    return (f"Auto-retrying ({auto.attempt} of {auto.of}) at {slack_time(auto.due)}, policy `{escape(auto.policy)}`. "
            "Nobody needs to act; press Stop to decide yourself instead.")


def auto_line(alert: Alert) -> str | None:
    """What the retry policy did or would do, under the alert's state line; None when it has nothing to add."""
    auto = alert.auto
    if auto is None or auto.state is AutoState.WAITING:
        return None
    policy = f"policy `{escape(auto.policy)}`"
    if auto.state is AutoState.DRY_RUN:
        return (f":test_tube: Dry run: {policy} would retry this automatically at {slack_time(auto.due)} "
                f"({auto.attempt} of {auto.of}). It did nothing: the decision is yours.")
    if auto.state is AutoState.RETRYING:
        if alert.phase is Phase.FAILED_AGAIN:
            return f"Automatic retry {auto.attempt} of {auto.of} ({policy}) failed again; deciding what comes next…"
        return f"Automatic retry {auto.attempt} of {auto.of}, {policy}."
    if auto.state is AutoState.COMPLETED:
        return f"Completed after automatic retry {auto.attempt} of {auto.of}, {policy}."
    return f":bust_in_silhouette: {auto.note or 'The automatic retries stopped'}. Over to you: Retry or Status below."


def auto_paused_note(pause: Pause) -> str:
    """Why a matched failure was not retried automatically: its endpoint (or every endpoint) is paused."""
    where = "every endpoint" if pause.scope == "*" else f"endpoint `{escape(pause.scope)}`"
    until = f"until {slack_time(pause.until)}" if pause.until is not None else "until someone resumes them"
    by = f"by the breaker ({pause.reason})" if pause.by == BREAKER else f"by <@{pause.by}>"
    return f"{NOT_AUTO}automatic retries on {where} are paused {until}, {by}"


def auto_spent_note(attempts: int) -> str:
    tries = "The automatic retry" if attempts == 1 else f"All {attempts} automatic retries"
    return f"{tries} failed again"


def auto_stop_too_late(endpoint: str, job: str, auto: Auto | None) -> Message:
    """Stop pressed when the policy no longer waits: it already sent the retry, or already let go."""
    ref = f"job {code(job)} on endpoint {code(endpoint)}"
    if auto is None or auto.handed_over:
        text = f"Nothing to stop: the automatic retries of {ref} already stopped. The alert offers Retry."
    elif auto.state is AutoState.RETRYING:
        text = (f"Too late to stop: the automatic retry {auto.attempt} of {auto.of} of {ref} was already sent. "
                "The alert shows how it ends.")
    else:
        text = f"Nothing to stop: {ref} is not waiting for an automatic retry."
    return message(text.replace("`", ""), [section(text)])


def auto_handed_over(alert: Alert, where: str | None) -> Message:
    """A new message in the alert's thread, also shown in the channel, so that people are notified (an edit of the
    alert notifies nobody): the policy let go of a failure, and why."""
    auto = alert.auto
    note = auto.note if auto is not None and auto.note else "The automatic retries stopped"
    alert_ref = link(where, "The alert") if where else "The alert"
    text = (f":rotating_light: Job {code(alert.job)} on endpoint {code(alert.endpoint)} needs a person. {note}. "
            f"{alert_ref} offers Retry and Status again.")
    fallback = f"Job {alert.job} on {alert.endpoint} needs a person: {note}"
    return {**message(fallback.replace("`", ""), [section(text)]), "reply_broadcast": True}
