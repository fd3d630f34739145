"""The app's vocabulary, defined once: a job's states, what a retry did, counts, times and deadlines, the retry limit.

Every surface (alerts, grouped alerts, bulk tallies, the command's replies, the Home tab, history, the terminal) says
these things with these words, so a reader meets one word per concept: "requeued", never "RunPod took it" in one
place and "back in the queue" in another. Pure: no I/O.

Times: in a Slack message body a time is a date token (`<!date^UNIX^{time}|03:42 UTC>`) that each reader sees in
their own zone; in notification text and in a terminal, where tokens show raw, it is "03:42 UTC" (`without_dates`
turns the first into the second).
"""

from __future__ import annotations

import re
import time

# ---------------------------------------------------------------- a job's state, as RunPod reports it

# One wording per state, everywhere (RunPod's own names stay in its JSON).
_STATES = {
    "IN_QUEUE": "waiting in the queue",
    "IN_PROGRESS": "running",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "TIMED_OUT": "timed out",
}
UNKNOWN_STATE = "unknown"

# The same states as the rest of a sentence about the job: "job `j` failed", "job `j` is running".
_SENTENCES = {
    "IN_QUEUE": "is waiting in the queue",
    "IN_PROGRESS": "is running",
    "RUNNING": "is running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "was cancelled",
    "TIMED_OUT": "timed out",
}


def state(status: str | None) -> str:
    """A job's state in a word or two: "failed", "timed out", "waiting in the queue", "running", "completed"."""
    if not status:
        return UNKNOWN_STATE
    return _STATES.get(status.upper(), f"in state {status}")


def state_sentence(status: str | None) -> str:
    """The state as the rest of a sentence about the job: "failed", "is running", "was cancelled"."""
    if not status:
        return "is in an unknown state"
    return _SENTENCES.get(status.upper(), f"is in state {status}")


# ---------------------------------------------------------------- what a retry did to a job

REQUEUED = "requeued"            # RunPod accepted the retry: same job ID, same input, back in its queue
NOT_RETRIED = "not retried"      # refused, by the app's rules or by RunPod, or never sent
STILL_RUNNING = "still running"  # requeued and not ended yet
COMPLETED = "completed"
UNKNOWN = "unknown"              # whether the retry went through, or how the job ended, is not known
CHECK_STATUS = "check its status"
# A retry whose answer was lost or garbled, and no status check showed the job still failed: it may have happened.
UNKNOWN_RETRY = f"{UNKNOWN}, may have gone through"
# Who retried a job, when a retry policy did (RUNPOD_RETRY_POLICIES): audited, shown and counted under this name.
POLICY_ACTOR = "policy:"
REQUEUED_SENTENCE = "was requeued (same job ID, same input, old output removed)"


def again(status: str | None) -> str:
    """A retried job that failed once more: "failed again", "timed out again"."""
    return f"{state(status or 'FAILED')} again"


def not_retried(why: str) -> str:
    """"not retried: <why>", said once however the reason was worded."""
    why = why.strip()
    while why.lower().startswith(NOT_RETRIED + ":"):
        why = why[len(NOT_RETRIED) + 1:].strip()
    return f"{NOT_RETRIED}: {why}" if why else NOT_RETRIED


# ---------------------------------------------------------------- counts


def count(n: int, word: str, words: str | None = None) -> str:
    """"1 job", "3 jobs": a number with its noun, singular or plural (`words` where "s" will not do)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def jobs(n: int) -> str:
    return count(n, "job")


def were(n: int) -> str:
    return "was" if n == 1 else "were"


# ---------------------------------------------------------------- times and deadlines

RETENTION_MINUTES = 30
_DATE_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def duration(seconds: float) -> str:
    """How long following lasted, in words a person reads at a glance ("45 seconds", "1 hour")."""
    if seconds < 60:
        return f"{seconds:g} second" + ("" if seconds == 1 else "s")
    if seconds < 3600:
        minutes = round(seconds / 60)
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    hours = round(seconds / 3600, 1)
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def utc(epoch: float) -> str:
    """"03:42 UTC": a time where Slack cannot show each reader their own zone (notifications, terminals, logs)."""
    return time.strftime("%H:%M UTC", time.gmtime(epoch))


def slack_time(epoch: float, fmt: str = "{time}") -> str:
    """A time in a message body: each reader sees it in their own zone; the fallback is `utc`."""
    return f"<!date^{int(epoch)}^{fmt}|{utc(epoch)}>"


def when(epoch: float, *, plain: bool = False) -> str:
    """A time as the surface can show it: a date token in a Slack body, "03:42 UTC" where `plain`."""
    return utc(epoch) if plain else slack_time(epoch)


def without_dates(text: str) -> str:
    """Date tokens as their "03:42 UTC" fallback, for text shown where Slack does not render them."""
    return _DATE_TOKEN.sub(r"\1", text)


def retry_until(deadline: float, *, plain: bool = False) -> str:
    """Until when a failed job can be retried: the exact time, never "about 30 minutes"."""
    return f"Can be retried until {when(deadline, plain=plain)} ({RETENTION_MINUTES} minutes after it ended)."


def too_late() -> str:
    return (f"RunPod has probably removed this job by now ({RETENTION_MINUTES} minutes after it ended): it cannot be "
            "retried.")


# ---------------------------------------------------------------- the retry limit (RUNPOD_RETRY_MAX_PER_JOB)


def retry_limit(limit: int, next_at: float, deadline: float | None = None, *, plain: bool = False) -> str:
    """The one wording of the hourly retry limit, always with when the next retry is allowed. `deadline`: when RunPod
    forgets the job; past it, the next allowed time would be no use, and that is said instead."""
    reached = f"Retry limit reached ({count(limit, 'retry', 'retries')} per job per hour)"
    if deadline is not None and next_at >= deadline:
        return (f"{reached}; the next would be allowed at {when(next_at, plain=plain)}, after RunPod forgets the "
                f"job at {when(deadline, plain=plain)}, so it cannot be retried again.")
    return f"{reached}; next allowed at {when(next_at, plain=plain)}."


def next_allowed(times: list[float] | tuple[float, ...], limit: int, window: float) -> float | None:
    """When the limit allows another retry, given the times of the retries in the last `window` seconds; None when it
    allows one now."""
    recent = sorted(times)
    if limit <= 0 or len(recent) < limit:
        return None
    return recent[len(recent) - limit] + window
