"""A failure alert as a small state machine. Pure: every transition returns a new Alert."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from bot.core import words
from bot.core.ids import is_valid_id
from bot.core.outcome import RETENTION_SECONDS, RETRYABLE, TRANSIENT, Kind, Outcome, state_sentence
from bot.core.worker_errors import MAX_DETAILS_CHARS, error_details, is_runpod_error

# An alert keeps the worker's whole error for its thread, up to this much (a longer one keeps its end).
MAX_ERROR_CHARS = MAX_DETAILS_CHARS
# The retry budget counts RunPod calls per job over this window (RUNPOD_RETRY_MAX_PER_JOB per hour).
BUDGET_WINDOW = 3600.0


class Phase(StrEnum):
    FAILED = "failed"              # needs a decision; Retry offered
    RETRYING = "retrying"          # someone clicked Retry; waiting for RunPod
    REQUEUED = "requeued"          # RunPod took the retry; the job is being followed
    COMPLETED = "completed"        # the retried job completed
    FAILED_AGAIN = "failed_again"  # the retried job failed again; Retry offered again
    REFUSED = "refused"            # RunPod refused or could not be asked; `note` says why
    UNKNOWN = "unknown"            # following stopped before the job ended


class AutoState(StrEnum):
    WAITING = "waiting"      # an automatic retry is due at `due`; Stop offered instead of Retry
    RETRYING = "retrying"    # sent by the policy; the job is followed
    COMPLETED = "completed"  # the job completed after an automatic retry
    SPENT = "spent"          # every automatic retry failed again: handed to people
    STOPPED = "stopped"      # someone pressed Stop: handed to people
    SKIPPED = "skipped"      # not retried (`note` says why): handed to people
    DRY_RUN = "dry_run"      # the policy only says what it would do


@dataclass(frozen=True)
class Auto:
    """A retry policy's hold on an alert (RUNPOD_RETRY_POLICIES)."""

    policy: str
    attempt: int             # the automatic retry shown, from 1 ...
    of: int                  # ... to the policy's max_attempts
    due: float               # when that retry goes (or went)
    state: AutoState = AutoState.WAITING
    note: str | None = None  # why it was handed to people, in words

    @property
    def active(self) -> bool:
        """The policy is still deciding: people are not asked yet."""
        return self.state in (AutoState.WAITING, AutoState.RETRYING)

    @property
    def handed_over(self) -> bool:
        return self.state in (AutoState.SPENT, AutoState.STOPPED, AutoState.SKIPPED)


@dataclass(frozen=True)
class Alert:
    endpoint: str
    job: str
    channel: str
    status: str                   # the failure status: FAILED or TIMED_OUT
    ended_at: float               # when it (last) failed: the retry deadline counts from here
    error: str | None = None
    delay_ms: float | None = None
    execution_ms: float | None = None
    ts: str | None = None         # the alert message
    thread_ts: str | None = None  # set when the alert itself sits in a thread
    phase: Phase = Phase.FAILED
    actor: str | None = None
    acted_at: float | None = None
    job_status: str | None = None
    note: str | None = None
    retry_offered: bool = True
    retries: int = 0
    retried_at: tuple[float, ...] = ()  # every retry call RunPod got for this job, for the hourly budget
    report_url: str | None = None       # where the last retry is reported, when not in this alert's thread
                                        # ("" when nothing can link there: a command's response_url)
    posting: bool = False         # its message is queued for Slack and `ts` not known yet
    thread_details: bool = True   # the thread (or `report_url`) holds what happened; not after an interrupted retry
    auto: Auto | None = None      # a retry policy retries it automatically (or did, or would)

    @property
    def deadline(self) -> float:
        return self.ended_at + RETENTION_SECONDS

    @property
    def reply_thread(self) -> str | None:
        """Where replies about this alert go: the alert's own thread, or the thread it sits in."""
        return self.thread_ts or self.ts

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Alert:
        data = json.loads(text)
        data["phase"] = Phase(data["phase"])
        data["retried_at"] = tuple(data.get("retried_at") or ())
        auto = data.get("auto")
        data["auto"] = Auto(**{**auto, "state": AutoState(auto["state"])}) if auto else None
        return cls(**data)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def trim_error(error: Any) -> str | None:
    """RunPod's error as text, cut to a size an alert keeps (tracebacks keep their last lines, where the cause is).
    runpod-python's JSON error keeps its JSON while it fits; past that it becomes its readable traceback, so that a
    cut never leaves broken JSON behind."""
    if error is None or error == "":
        return None
    text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)
    text = text.strip()
    if len(text) <= MAX_ERROR_CHARS:
        return text
    details = error_details(error) if is_runpod_error(error) or "\n" in text else None
    return details or text[: MAX_ERROR_CHARS - 1] + "…"


class BadJobBody(ValueError):
    """A webhook body that is not a RunPod job."""


def parse_job_body(body: Any) -> tuple[str, str]:
    """(job id, status) from a RunPod job JSON, validated."""
    if not isinstance(body, dict):
        raise BadJobBody("the body is not a JSON object")
    job, status = body.get("id"), body.get("status")
    if not isinstance(job, str) or not is_valid_id(job):
        raise BadJobBody("`id` is missing or not a valid job ID")
    if not isinstance(status, str) or not status or len(status) > 40:
        raise BadJobBody("`status` is missing")
    return job, status.upper()


def new_alert(endpoint: str, body: dict[str, Any], channel: str, now: float) -> Alert:
    job, status = parse_job_body(body)
    return Alert(endpoint=endpoint, job=job, channel=channel, status=status, ended_at=now,
                 error=trim_error(body.get("error")), delay_ms=_number(body.get("delayTime")),
                 execution_ms=_number(body.get("executionTime")), job_status=status)


def ran_since(alert: Alert, body: dict[str, Any]) -> bool:
    """RunPod's job JSON shows a run after the failure the alert records: another error, or another run time. Only
    a retry runs a failed job again, so a retry whose own answer was lost went through when this is True, even if
    the job has failed once more."""
    error, ran = trim_error(body.get("error")), _number(body.get("executionTime"))
    return ((error is not None and alert.error is not None and error != alert.error)
            or (ran is not None and alert.execution_ms is not None and ran != alert.execution_ms))


def retried_beyond(body: dict[str, Any], known: int) -> bool:
    """RunPod's job JSON counts more retries (`retries`) than the `known` ones made before the retry in question: that
    retry went through, whatever the job has done since. For a job with no alert of its own to compare runs with (a
    member of a grouped alert)."""
    retries = _number(body.get("retries"))
    return retries is not None and retries > known


def retrying(alert: Alert, user: str, now: float) -> Alert:
    return replace(alert, phase=Phase.RETRYING, actor=user, acted_at=now, note=None, retry_offered=False,
                   thread_details=True)


def requeued(alert: Alert, user: str, now: float, job_status: str | None) -> Alert:
    return replace(alert, phase=Phase.REQUEUED, actor=user, acted_at=now, job_status=job_status or "IN_QUEUE",
                   retries=alert.retries + 1, note=None, retry_offered=False)


def refused(alert: Alert, outcome: Outcome) -> Alert:
    return replace(alert, phase=Phase.REFUSED, note=outcome.summary,
                   job_status=outcome.job_status or alert.job_status,
                   # A fixed API key or a passing fault makes the next click work: keep the button for those.
                   retry_offered=outcome.kind in TRANSIENT or outcome.kind is Kind.UNAUTHORIZED
                   or outcome.job_status in RETRYABLE)


def called(alert: Alert, now: float) -> Alert:
    """RunPod took (or may have taken) a retry of this job: it counts toward the hourly budget, as the store's count
    does (`Outcome.may_have_taken_effect`); a refusal does not."""
    return replace(alert, retried_at=(*[t for t in alert.retried_at if now - t < BUDGET_WINDOW], now))


def next_retry_at(alert: Alert, now: float, limit: int) -> float | None:
    """When the hourly budget allows this job another retry; None when it allows one now."""
    return words.next_allowed([t for t in alert.retried_at if now - t < BUDGET_WINDOW], limit, BUDGET_WINDOW)


def progressed(alert: Alert, job_status: str) -> Alert:
    return replace(alert, job_status=job_status)


def finished(alert: Alert, body: dict[str, Any], now: float) -> Alert:
    """The retried job reached a terminal state."""
    status = str(body.get("status", "")).upper()
    execution = _number(body.get("executionTime"))
    if status == "COMPLETED":
        return replace(alert, phase=Phase.COMPLETED, job_status=status, execution_ms=execution,
                       delay_ms=_number(body.get("delayTime")), retry_offered=False, note=None)
    # The retried run's own figures only: the first run's queue wait beside the retry's run time would mislead.
    return replace(alert, phase=Phase.FAILED_AGAIN if status in RETRYABLE else Phase.UNKNOWN,
                   job_status=status, status=status if status in RETRYABLE else alert.status,
                   error=trim_error(body.get("error")) or alert.error, ended_at=now,
                   execution_ms=execution, delay_ms=_number(body.get("delayTime")), retry_offered=status in RETRYABLE,
                   note=None if status in RETRYABLE else f"it {state_sentence(status or None)}")


def failed_again_outside(alert: Alert, body: dict[str, Any], now: float) -> Alert:
    """A new failure webhook for a job whose alert was already settled (retried elsewhere, then failed)."""
    return replace(finished(alert, body, now), phase=Phase.FAILED_AGAIN)


def interrupted(alert: Alert) -> Alert:
    """The app failed unexpectedly mid-retry: never leave the alert saying "retrying" forever."""
    return replace(alert, phase=Phase.REFUSED, retry_offered=True, thread_details=False,
                   note="The app hit an unexpected error while retrying (it is in the app's log), so it is not known "
                        "whether RunPod got the retry. Press Status before retrying")


def expired(alert: Alert) -> Alert:
    """Past the retry deadline: RunPod has forgotten the job, so the alert stops offering Retry."""
    return replace(alert, retry_offered=False)


def gave_up(alert: Alert, note: str) -> Alert:
    return replace(alert, phase=Phase.UNKNOWN, note=f"I stopped following it: {note}", retry_offered=False)


def auto_planned(alert: Alert, policy: str, attempt: int, of: int, due: float, *, dry_run: bool = False) -> Alert:
    """A retry policy matched: an automatic retry is due at `due` (or, in a dry run, would be)."""
    return replace(alert, auto=Auto(policy, attempt, of, due, AutoState.DRY_RUN if dry_run else AutoState.WAITING))


def auto_moved(alert: Alert, state: AutoState, note: str | None = None) -> Alert:
    """The policy's next step: sent, completed, or handed to people (spent, stopped, skipped: Retry is theirs)."""
    if alert.auto is None:
        return alert
    alert = replace(alert, auto=replace(alert.auto, state=state, note=note))
    if state in (AutoState.SPENT, AutoState.STOPPED, AutoState.SKIPPED) and alert.phase in (Phase.FAILED,
                                                                                           Phase.FAILED_AGAIN):
        alert = replace(alert, retry_offered=True)
    return alert
