"""Block Kit action IDs and button values, defined once. Values are untrusted: decoding re-validates."""

from __future__ import annotations

from bot.core.ids import is_valid_id
from bot.core.policies import EVERY_ENDPOINT

RETRY = "runpod_retry"
STATUS = "runpod_status"
RETRY_ALL = "runpod_retry_all"
STORM_STATUS = "runpod_storm_status"
CONFIRM_FAILED = "runpod_confirm_failed"
CANCEL_FAILED = "runpod_cancel_failed"
# Automatic retries: an alert's Stop (value: endpoint/job), and the kill switch's Pause and Resume (value: a scope,
# an endpoint ID or "*" for every endpoint).
AUTO_STOP = "auto_stop"
AUTO_PAUSE = "auto_pause"
AUTO_RESUME = "auto_resume"

ALL = (RETRY, STATUS, RETRY_ALL, STORM_STATUS, CONFIRM_FAILED, CANCEL_FAILED, AUTO_STOP, AUTO_PAUSE, AUTO_RESUME)

# The message shortcut "Retry RunPod jobs" (manifest.yml `features.shortcuts[].callback_id`) and the retry form
# (a modal) it and an empty `/runpod-retry` open: its callback ID, and its fields' block and action IDs.
SHORTCUT = "runpod_retry_shortcut"
RETRY_MODAL = "runpod_retry_modal"
ENDPOINT_BLOCK = "endpoint"
ENDPOINT_INPUT = "endpoint_input"
JOBS_BLOCK = "jobs"
JOBS_INPUT = "jobs_input"


def job_value(endpoint: str, job: str) -> str:
    return f"{endpoint}/{job}"


def parse_job_value(value: object) -> tuple[str, str] | None:
    """(endpoint, job) from a button value, or None when it is not two valid IDs."""
    if not isinstance(value, str) or len(value) > 2000:
        return None
    endpoint, sep, job = value.partition("/")
    if not sep or not is_valid_id(endpoint) or not is_valid_id(job):
        return None
    return endpoint, job


def storm_value(endpoint: str, storm_id: str) -> str:
    """A grouped alert's buttons name the endpoint and the storm (its start in ms)."""
    return job_value(endpoint, storm_id)


def parse_storm_value(value: object) -> tuple[str, str] | None:
    target = parse_job_value(value)
    if target is None or not (target[1].isascii() and target[1].isdigit()):
        return None
    return target


def window_value(endpoint: str, seconds: int) -> str:
    return f"{endpoint}/{seconds}"


def parse_window_value(value: object) -> tuple[str, int] | None:
    if not isinstance(value, str) or len(value) > 200:
        return None
    endpoint, sep, seconds = value.partition("/")
    if not sep or not is_valid_id(endpoint) or not (seconds.isascii() and seconds.isdigit()):
        return None
    if not 0 < int(seconds) <= 86400:
        return None
    return endpoint, int(seconds)


def parse_scope_value(value: object) -> str | None:
    """A Pause or Resume button's scope: an endpoint ID, or "*" for every endpoint; None when it is neither."""
    if not isinstance(value, str):
        return None
    return value if value == EVERY_ENDPOINT or is_valid_id(value) else None
