"""Classifying what RunPod answered into plain language. Pure: answers in, an Outcome out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from bot.core import words
from bot.core.answers import (
    RunPodBadResponse,
    RunPodError,
    RunPodRateLimited,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
)
from bot.core.words import state_sentence
from bot.core.worker_errors import error_summary

RETRYABLE = frozenset({"FAILED", "TIMED_OUT"})
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RETENTION_SECONDS = 30 * 60

_NOT_RETRYABLE_ADVICE = {
    "IN_QUEUE": "It is already queued: wait for it. I'll not retry a job that is still alive.",
    "IN_PROGRESS": "It is running right now: wait for it to finish.",
    "RUNNING": "It is running right now: wait for it to finish.",
    "COMPLETED": "It already completed: there is nothing to retry.",
    "CANCELLED": "A cancelled job cannot be retried; resubmit it if it is still needed.",
}

# How long RunPod keeps a finished job, in words (its docs speak of `/run` and `/runsync` jobs).
RETENTION_WORDS = ("RunPod forgets a finished job about 30 minutes after it ends (1 minute after, for a job that "
                   "was run synchronously); a forgotten job cannot be retried.")


class Kind(StrEnum):
    REQUEUED = "requeued"
    NOT_RETRYABLE = "not_retryable"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BAD_RESPONSE = "bad_response"
    STATUS = "status"


# Outcomes after which the same job may sensibly be tried again soon.
TRANSIENT = frozenset({Kind.RATE_LIMITED, Kind.SERVER_ERROR, Kind.TIMEOUT, Kind.UNREACHABLE})
# Outcomes that leave open whether RunPod acted on the request: a /status check settles it.
UNCERTAIN = frozenset({Kind.SERVER_ERROR, Kind.TIMEOUT, Kind.UNREACHABLE, Kind.BAD_RESPONSE})
ALIVE = frozenset({"IN_QUEUE", "IN_PROGRESS", "RUNNING"})


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    endpoint: str
    job: str
    summary: str
    advice: str
    http_status: int | None = None
    job_status: str | None = None
    body: Any = None
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.kind in (Kind.REQUEUED, Kind.STATUS)

    @property
    def may_have_taken_effect(self) -> bool:
        """RunPod requeued the job, or may have: its answer was lost or garbled and no /status check showed the job
        still failed. Only these count toward the hourly retry budget; a refusal does not, nor a call a /status
        check settled as not taken effect."""
        if self.kind is Kind.REQUEUED:
            return True
        return self.kind in UNCERTAIN and self.job_status not in RETRYABLE

    @property
    def headline(self) -> str:
        """The one sentence a person reads first. HTTP codes stay out of it: they label RunPod's answer."""
        return self.summary

    @property
    def answer_label(self) -> str:
        """What labels RunPod's own answer under the sentence: "RunPod's answer (HTTP 200)"."""
        return f"RunPod's answer (HTTP {self.http_status})" if self.http_status is not None else "RunPod's answer"


def state_words(status: str | None) -> str:
    """A job's state in words (the vocabulary's): "failed", "waiting in the queue", "in an unknown state"."""
    return words.state(status) if status else "in an unknown state"


def _ref(endpoint: str, job: str) -> str:
    return f"job `{job}` on endpoint `{endpoint}`"


def _status_command(endpoint: str, job: str) -> str:
    return f"`/runpod-retry status {endpoint} {job}`"


def _expired_or_unknown(endpoint: str, job: str, http_status: int | None, body: Any, short: str) -> Outcome:
    return Outcome(
        Kind.NOT_FOUND, endpoint, job,
        f"RunPod does not know {_ref(endpoint, job)}: the ID is wrong, or the job's result has expired",
        f"{RETENTION_WORDS} Check both IDs; if it expired, submit the job again with its original input.",
        http_status, None, body, short,
    )


def classify_error(endpoint: str, job: str, error: RunPodError) -> Outcome:
    """Any RunPod failure, in plain words. Used for retries, status checks and polling alike."""
    ref = _ref(endpoint, job)
    status, short, body = error.status, error.excerpt, error.body
    check = _status_command(endpoint, job)
    detail = f": {short}" if short else ""
    if isinstance(error, RunPodTimeout):
        return Outcome(Kind.TIMEOUT, endpoint, job, f"RunPod did not answer in time about {ref}",
                       f"The request may or may not have reached RunPod. Check with {check} before trying "
                       "again.")
    if isinstance(error, RunPodUnreachable):
        # A connection dropped after the request was sent may still have changed the job: never say "nothing".
        return Outcome(Kind.UNREACHABLE, endpoint, job,
                       f"Could not reach RunPod about {ref}: the connection failed or was dropped",
                       "RunPod or the network is having trouble. If the connection dropped mid-request, the request "
                       f"may still have reached RunPod: check with {check} before trying again.")
    if isinstance(error, RunPodBadResponse):
        return Outcome(Kind.BAD_RESPONSE, endpoint, job,
                       f"RunPod answered about {ref}, but not with JSON{detail}",
                       f"The request may have gone through. Check with {check}.", status, None, None, short)
    if isinstance(error, RunPodRateLimited):
        if error.op == "retry":
            # A retry's 429s are waited out until the job's retry window closes: trying again later is no use.
            return Outcome(Kind.RATE_LIMITED, endpoint, job,
                           f"RunPod kept rate-limiting requests for {ref} until its retry window had closed",
                           f"Nothing was changed, and the job can no longer be retried: RunPod forgets a finished job "
                           f"{words.RETENTION_MINUTES} minutes after it ends. Submit it again with its original input "
                           "if it is still needed.", status, None, body, short)
        return Outcome(Kind.RATE_LIMITED, endpoint, job,
                       f"RunPod is rate-limiting requests and still refused after several tries, for {ref}",
                       "Nothing was changed. Wait a minute and try again.", status, None, body, short)
    if status in (401, 403):
        return Outcome(Kind.UNAUTHORIZED, endpoint, job, f"RunPod refused the API key for endpoint `{endpoint}`",
                       "The key is wrong, expired or revoked, or has no access to this endpoint. Check "
                       "`RUNPOD_API_KEY` (or this endpoint's entry in `RUNPOD_ENDPOINT_KEYS`).",
                       status, None, body, short)
    if status == 404:
        return _expired_or_unknown(endpoint, job, status, body, short)
    if status is not None and status >= 500:
        # Like a timeout, a server error after a retry was sent does not prove the retry did not happen.
        advice = (f"It is on RunPod's side, and the retry may still have gone through: check with {check} before "
                  "trying again." if error.op == "retry" else
                  f"It is on RunPod's side. Try again in a minute; {check} shows the job's state.")
        return Outcome(Kind.SERVER_ERROR, endpoint, job, f"RunPod had a server error about {ref}{detail}",
                       advice, status, None, body, short)
    # RunPod does not document why it answers 400 to a retry: say only what is known, and how to learn more.
    return Outcome(Kind.REFUSED, endpoint, job, f"RunPod refused the request for {ref}{detail}",
                   f"RunPod did not say why beyond its answer below. {check} shows the job's state.",
                   status, None, body, short)


def classify_retry(endpoint: str, job: str, answer: RunPodReply | RunPodError,
                   probe: RunPodReply | RunPodError | None = None, *, ran_since: bool = False) -> Outcome:
    """What a `/retry` answer means. `probe` is the `/status` answer fetched after a refusal, if any; `ran_since`,
    that the probe shows the job ran again after the failure being retried (`bot.core.alerts.ran_since`)."""
    if isinstance(answer, RunPodReply):
        now = answer.job_status or "unknown"
        where = "" if now == "unknown" else f": it {state_sentence(now)}"
        return Outcome(Kind.REQUEUED, endpoint, job,
                       f"Job `{job}` on endpoint `{endpoint}` was {words.REQUEUED}{where}",
                       "Same job ID, same input, old output removed. I'll follow it and post here when it ends.",
                       answer.http_status, now, answer.body)
    outcome = classify_error(endpoint, job, answer)
    if probe is None:
        return outcome
    if outcome.kind in UNCERTAIN:
        return _settle_uncertain(outcome, answer, probe, ran_since)
    if outcome.kind is not Kind.REFUSED:
        return outcome
    if isinstance(probe, RunPodError):
        if probe.status == 404:
            return _expired_or_unknown(endpoint, job, answer.status, answer.body, answer.excerpt)
        return outcome
    state = probe.job_status
    if state in RETRYABLE:
        # Refused although RunPod itself shows the job as retryable: say exactly that, and no rule that is not true.
        return replace(outcome, job_status=state, summary=(
            f"RunPod refused to retry job `{job}` on endpoint `{endpoint}`, though it shows the job as "
            f"{state_words(state)} (a {state_words(state)} job can normally be retried)"
            + (f": {answer.excerpt}" if answer.excerpt else "")),
            advice=("RunPod did not explain the refusal beyond its answer below (HTTP "
                    f"{answer.status}). Try once more in a minute; if it refuses again, ask RunPod's support what this "
                    "answer means for this job, and resubmit the job with its original input if it is still needed."))
    return Outcome(
        Kind.NOT_RETRYABLE, endpoint, job,
        f"Not retried: job `{job}` on endpoint `{endpoint}` {'already ' if state == 'COMPLETED' else ''}"
        f"{state_sentence(state)}, and only a failed or timed-out job can be retried",
        _NOT_RETRYABLE_ADVICE.get(state or "", f"{_status_command(endpoint, job)} shows its details."),
        answer.status, state, answer.body if answer.body is not None else probe.body, answer.excerpt,
    )


# How an answer was lost, in words rather than the outcome's code name.
_LOST = {Kind.SERVER_ERROR: "a server error", Kind.TIMEOUT: "no answer in time",
         Kind.UNREACHABLE: "a dropped connection", Kind.BAD_RESPONSE: "an answer that was not JSON"}


def _settle_uncertain(outcome: Outcome, answer: RunPodError, probe: RunPodReply | RunPodError,
                      ran_since: bool) -> Outcome:
    """RunPod's answer to /retry was lost or garbled; /status shows whether the retry took effect."""
    endpoint, job = outcome.endpoint, outcome.job
    if isinstance(probe, RunPodError):
        return outcome
    state = probe.job_status
    if state in ALIVE:
        return Outcome(
            Kind.REQUEUED, endpoint, job,
            f"RunPod's answer to the retry was lost ({_LOST[outcome.kind]}), but job `{job}` on "
            f"endpoint `{endpoint}` {state_sentence(state).replace('is ', 'is now ', 1)}: the retry went through",
            "I'll follow it and post here when it ends. The JSON below is its current status.",
            answer.status, state, probe.body, answer.excerpt)
    if state == "COMPLETED":
        # Only a failed or timed-out job is retried: completed now, it was requeued and ran. RunPod's final answer
        # is its ending.
        return Outcome(
            Kind.REQUEUED, endpoint, job,
            f"RunPod's answer to the retry was lost ({outcome.kind.value.replace('_', ' ')}), but job `{job}` on "
            f"endpoint `{endpoint}` {state_sentence(state)} since: the retry went through",
            "RunPod's final answer is below.", answer.status, state, probe.body, answer.excerpt)
    if state in RETRYABLE and ran_since:
        # Failed again, but after another run: the retry went through, and this is how the job ended.
        return Outcome(
            Kind.REQUEUED, endpoint, job,
            f"RunPod's answer to the retry was lost ({_LOST[outcome.kind]}), but job `{job}` on endpoint "
            f"`{endpoint}` ran again since and {words.again(state)}: the retry went through",
            "RunPod's final answer is below.", answer.status, state, probe.body, answer.excerpt)
    if state in RETRYABLE:
        return replace(outcome, job_status=state, advice=(
            f"RunPod still shows the job as {state_words(state)}, so the retry has not taken effect (yet). Wait a "
            f"minute, then check with {_status_command(endpoint, job)} before retrying again."))
    return replace(outcome, job_status=state,
                   advice=f"RunPod now shows the job as {state_words(state)}. Nothing more to do here.")


def classify_status(endpoint: str, job: str, answer: RunPodReply | RunPodError) -> Outcome:
    """What a `/status` answer says about a job."""
    if isinstance(answer, RunPodError):
        return classify_error(endpoint, job, answer)
    state = answer.job_status
    summary = f"Job `{job}` on endpoint `{endpoint}` {state_sentence(state)}"
    error = answer.body.get("error")
    if state in RETRYABLE:
        said = error_summary(error)  # a traceback by its exception line, runpod-python's JSON by type and message
        if said:
            summary += f": {said}"
        # A status answer does not say when the job ended, so no deadline is promised here.
        advice = (f"It can be retried with `/runpod-retry {endpoint} {job}` until RunPod forgets it, "
                  f"{words.RETENTION_MINUTES} minutes after it ended.")
    elif state in TERMINAL:
        advice = "Nothing to do."
    else:
        advice = "It is still alive; check again later."
    return Outcome(Kind.STATUS, endpoint, job, summary, advice, answer.http_status, state, answer.body)


def seconds_text(milliseconds: Any) -> str | None:
    """`1437` ms as `1.4 s`; None when RunPod gave nothing usable."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)) or milliseconds < 0:
        return None
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
